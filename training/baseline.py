"""The floor: a TF-IDF + logistic-regression sentence classifier, cross-validated like the model.

    python -m training.baseline --folds 5

Naive sentence splitting (after . ! ? followed by whitespace), scikit-learn TfidfVectorizer on word
uni+bigrams, one logistic regression per category, a sentence is a clause when its probability is at
least --threshold (default 0.5, the classifier's default decision; 0.2 trades precision for
recall). Same folds (`training.groups.cv_folds`), same scorer, so docs/quality.md can put the two
side by side; `--holdout-fold N` also scores fold N and the other folds on their own, as
`training.crossval` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from training.crossval import check_holdout, print_line, print_table, run_scorer, score_subset, summary
from training.data import DEFAULT_CUAD, DEFAULT_SCORER, ROOT, categories, jaccard, load_corpus, words
from training.groups import cv_folds

log = logging.getLogger("training")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[tuple[int, int]]:
    spans = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if text[start : match.start()].strip():
            spans.append((start, match.start()))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cuad-dir", type=Path, default=DEFAULT_CUAD)
    parser.add_argument("--scorer", type=Path, default=DEFAULT_SCORER)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "baseline")
    parser.add_argument("--holdout-fold", type=int, default=None, help="also score this fold on its own")
    args = parser.parse_args(argv)
    check_holdout(args.holdout_fold, args.folds, None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    contracts = load_corpus(args.cuad_dir)
    cats = categories(args.cuad_dir)
    assignment = cv_folds(contracts, args.folds)
    spans = [sentences(c.text) for c in contracts]
    texts = [[c.text[a:b] for a, b in s] for c, s in zip(contracts, spans, strict=True)]
    labels = []
    for contract, doc in zip(contracts, texts, strict=True):
        matrix = np.zeros((len(doc), len(cats)), dtype=bool)
        for row, sentence in enumerate(doc):
            ws = words(sentence)
            for column, category in enumerate(cats):
                matrix[row, column] = any(jaccard(ws, g) >= 0.5 for g in contract.gold_words.get(category, []))
        labels.append(matrix)
    predictions: dict[str, list[dict[str, object]]] = {}
    for fold in range(args.folds):
        train = [i for i, f in enumerate(assignment) if f != fold]
        test = [i for i, f in enumerate(assignment) if f == fold]
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)
        x = vectorizer.fit_transform([s for i in train for s in texts[i]])
        y = np.vstack([labels[i] for i in train])
        xt = vectorizer.transform([s for i in test for s in texts[i]])
        probabilities = np.zeros((xt.shape[0], len(cats)))
        for column in range(len(cats)):
            if y[:, column].any():
                model = LogisticRegression(C=4.0, solver="liblinear", random_state=0).fit(x, y[:, column])
                probabilities[:, column] = model.predict_proba(xt)[:, 1]
        offset = 0
        for i in test:
            clauses: list[dict[str, object]] = []
            for row, sentence in enumerate(texts[i]):
                for column in np.nonzero(probabilities[offset + row] >= args.threshold)[0].tolist():
                    confidence = float(probabilities[offset + row, column])
                    clauses.append({"category": cats[column], "text": sentence, "confidence": confidence})
            predictions[contracts[i].id] = clauses
            offset += len(texts[i])
        log.info("fold %d/%d done (%.0f s)", fold + 1, args.folds, time.monotonic() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "predictions.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for contract in contracts:
            handle.write(json.dumps({"id": contract.id, "clauses": predictions[contract.id]}) + "\n")
    labels_path = args.cuad_dir / "labels.jsonl"
    result = run_scorer(args.scorer, labels_path, path)
    (args.out / "scores.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print_table(result)
    if args.holdout_fold is not None:
        held = {c.id for c, f in zip(contracts, assignment, strict=True) if f == args.holdout_fold}
        rest = {c.id for c in contracts} - held
        held_result = score_subset(args.scorer, labels_path, path, held, args.out, "holdout")
        rest_result = score_subset(args.scorer, labels_path, path, rest, args.out, "development")
        record = {"fold": args.holdout_fold, "holdout": summary(held_result), "development": summary(rest_result)}
        (args.out / "holdout.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print_line(f"all {args.folds} folds", result)
        print_line(f"development folds (all but {args.holdout_fold})", rest_result)
        print_line(f"set-aside fold {args.holdout_fold}", held_result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
