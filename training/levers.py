"""Second-stage levers for the embedded model, probed on the fold models' held-out candidates.

    python -m training.levers [--folds 0,1]

Why a probe: building a lever into `training.model` (fitted on the inner out-of-fold candidates of
every outer fold) costs a full cross-validation run to measure. This measures the same idea on
candidates the fold models already produce, honestly: every contract of the listed folds is scored
by its fold model (`training.heldout`, trained on the other folds), and each second stage is
cross-fitted between the listed folds (fitted on the other listed folds' contracts, applied to this
one's), so no contract is decoded by anything that saw its labels. The set-aside fold 4 is refused.
With folds 0 and 1 a stage learns from about 83 contracts, a quarter of what it would get in
training: a lever that pays here is worth building; its size here is not the built figure.

Rows, each scored by ../shared/eval/score_cuad.py on exactly these contracts:
- `fold models`: the shipped decision (presence, threshold, cap) on the fold models' calibrated
  probabilities;
- `reranker`: scikit-learn's HistGradientBoosting over each unit candidate's scores for every unit
  category (Cap on Liability vs Uncapped Liability), its neighbours' scores for its category, its
  relative position, rank, gap to the best, length, presence and the calibrated probability; its
  probability replaces the calibrated one, the decision rule stays; `blend` averages the two;
- `stacked presence`: a second presence model over every category's presence log-odds at once (what
  else the contract has) beside the category's own evidence, its threshold chosen by an inner
  3-fold split of the training side;
- `tail k`: after the decision, each present clause category's next k non-overlapping candidates
  at 0.2x their probability, ranked below every decided span (AUPR counts them; span precision
  pays for them);
- `co-occurrence rule`: a category whose parents all went undetected is dropped (Competitive
  Restriction Exception without Non-Compete, Exclusivity or No-Solicit of Customers; Non-Transferable
  License without License Grant; Uncapped Liability without Cap on Liability).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GroupKFold, cross_val_predict

from clausework.model.embedded import POOLS, EmbeddedExtractor, Scored, keep_spans
from training.crossval import prediction_line, run_scorer
from training.data import DEFAULT_CUAD, DEFAULT_SCORER, jaccard, words
from training.heldout import FoldModels

HOLDOUT_FOLD = 4
TAIL_SCALE = 0.2
BLEND = 0.5
PARENTS = {
    "Competitive Restriction Exception": ("Non-Compete", "Exclusivity", "No-Solicit of Customers"),
    "Non-Transferable License": ("License Grant",),
    "Uncapped Liability": ("Cap on Liability",),
}
Decided = list[tuple[Scored, float]]
Probabilities = dict[str, list[float]]


def log_odds(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


@dataclass
class Category:
    """One category of one contract: the fold model's candidates and what is known of them."""

    candidates: list[Scored]
    probabilities: list[float]
    presence: float
    matches: list[bool]  # the candidate matches a gold context (word Jaccard >= 0.5)
    rows: list[list[float]]  # reranker inputs, unit categories only


@dataclass
class Held:
    """A contract of a listed fold, as its fold model sees it."""

    id: str
    fold: int
    text: str
    gold: set[str]
    model: EmbeddedExtractor
    categories: dict[str, Category]


def held_out(folds: FoldModels, listed: list[int]) -> list[Held]:
    out = []
    categories = folds.categories
    for doc in folds.docs:
        fold = folds.fold_of(doc.contract.id)
        if fold not in listed:
            continue
        model = folds.model(fold)
        text, features = doc.contract.text, doc.features
        scored = model.score(text, features)
        # the whole unit x category score matrix (the reranker's cross-category inputs)
        unit_categories = model._units.categories
        logits = model._units.logits(features.unit_rows, binary=False) if features.units else np.zeros((0, 1))
        unit_of = {u.start: i for i, u in enumerate(features.units)}
        per = {}
        for category, candidates in scored.items():
            probabilities = model.calibrated(category, candidates).tolist() if candidates else []
            presence = model.presence(category, candidates, probabilities) if candidates else 0.0
            golds = doc.contract.gold_words.get(category, [])
            matches = [any(jaccard(words(text[s.start : s.end]), g) >= 0.5 for g in golds) for s in candidates]
            rows: list[list[float]] = []
            if category not in POOLS and candidates:
                column = unit_categories.index(category)
                top = max(s.logit for s in candidates)
                above = sum(p >= model.threshold(category) for p in probabilities)
                for rank, (s, p) in enumerate(zip(candidates, probabilities, strict=True)):
                    i = unit_of[s.start]
                    others = float(np.delete(logits[i], column).max())
                    rows.append(
                        [
                            categories.index(category),
                            s.logit,
                            s.logit - top,
                            rank,
                            math.log1p(s.n_words),
                            p,
                            log_odds(presence),
                            s.doc_logit,
                            i / max(1, len(features.units)),
                            float(logits[i - 1, column]) if i > 0 else -20.0,
                            float(logits[i + 1, column]) if i + 1 < len(logits) else -20.0,
                            others,
                            s.logit - others,
                            above,
                            *logits[i].tolist(),
                        ]
                    )
            per[category] = Category(candidates, probabilities, presence, matches, rows)
        out.append(Held(doc.contract.id, fold, text, set(doc.contract.gold), model, per))
    return out


def boosted(leaves: int, min_leaf: int, rounds: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        max_iter=rounds,
        learning_rate=0.05,
        max_leaf_nodes=leaves,
        min_samples_leaf=min_leaf,
        l2_regularization=1.0,
        categorical_features=[0],
        random_state=0,
    )


def rerank(held: list[Held]) -> dict[str, Probabilities]:
    """Cross-fitted reranker probabilities per contract and unit category."""
    out: dict[str, Probabilities] = {}
    for fold in sorted({h.fold for h in held}):
        train = [c for h in held if h.fold != fold for c in h.categories.values() if c.rows]
        x = np.array([r for c in train for r in c.rows])
        y = np.array([m for c in train for m in c.matches])
        model = boosted(31, 40, 300).fit(x, y)
        for h in held:
            if h.fold == fold:
                out[h.id] = {
                    name: model.predict_proba(np.array(c.rows))[:, 1].tolist()
                    for name, c in h.categories.items()
                    if c.rows
                }
    return out


def presence_rows(h: Held, reranked: Probabilities, categories: list[str]) -> list[list[float]]:
    everything = [log_odds(h.categories[c].presence) for c in categories]
    rows = []
    for index, name in enumerate(categories):
        c = h.categories[name]
        p = [*sorted(c.probabilities, reverse=True), 0.0, 0.0]
        q = [*sorted(reranked.get(name, [0.0]), reverse=True), 0.0, 0.0]
        doc_logit = c.candidates[0].doc_logit if c.candidates else 0.0
        own = [index, everything[index], p[0], p[1], doc_logit, q[0], q[1], log_odds(h.model.detect(name))]
        rows.append(own + everything)
    return rows


def stacked_presence(
    held: list[Held], reranked: dict[str, Probabilities], categories: list[str]
) -> dict[str, dict[str, bool]]:
    """Cross-fitted presence decisions from every category's evidence at once."""
    rows = {h.id: presence_rows(h, reranked[h.id], categories) for h in held}
    out: dict[str, dict[str, bool]] = {}
    for fold in sorted({h.fold for h in held}):
        train = [h for h in held if h.fold != fold]
        x = np.array([r for h in train for r in rows[h.id]])
        y = np.array([name in h.gold for h in train for name in categories])
        groups = np.repeat(np.arange(len(train)), len(categories))
        inner = cross_val_predict(boosted(15, 20, 200), x, y, groups=groups, cv=GroupKFold(3), method="predict_proba")
        threshold = max(np.arange(0.1, 0.9, 0.02), key=lambda t: f1(inner[:, 1] >= t, y))
        model = boosted(15, 20, 200).fit(x, y)
        print(f"stacked presence, fold {fold}: threshold {threshold:.2f} (inner split)", file=sys.stderr)
        for h in held:
            if h.fold == fold:
                p = model.predict_proba(np.array(rows[h.id]))[:, 1]
                out[h.id] = {name: bool(p[i] >= threshold) for i, name in enumerate(categories)}
    return out


def f1(predicted: npt.NDArray[np.bool_], gold: npt.NDArray[np.bool_]) -> float:
    return float(2 * (predicted & gold).sum() / max(1, predicted.sum() + gold.sum()))


def decide(h: Held, probabilities: Probabilities | None = None, present: dict[str, bool] | None = None) -> Decided:
    """The shipped decision rule, with probabilities and presence optionally replaced."""
    out: Decided = []
    for name, c in h.categories.items():
        if not c.candidates:
            continue
        if not (present[name] if present is not None else c.presence >= h.model.detect(name)):
            continue
        p = probabilities[name] if probabilities is not None and name in probabilities else c.probabilities
        out.extend(keep_spans(c.candidates, p, h.model.threshold(name), h.model.max_spans(name)))
    return out


def with_tail(h: Held, decided: Decided, probabilities: Probabilities, k: int) -> Decided:
    """Each present clause category's next k non-overlapping candidates, at TAIL_SCALE x probability."""
    out = list(decided)
    for name in {s.category for s, _ in decided} - set(POOLS):
        c = h.categories[name]
        p = probabilities.get(name, c.probabilities)
        added = 0
        for s, q in sorted(zip(c.candidates, p, strict=True), key=lambda sq: -sq[1]):
            if added == k:
                break
            if not any(t.category == name and s.start < t.end and t.start < s.end for t, _ in out):
                out.append((s, q * TAIL_SCALE))
                added += 1
    return out


def co_occurrence(decided: Decided) -> Decided:
    present = {s.category for s, _ in decided}
    return [(s, p) for s, p in decided if not (s.category in PARENTS and present.isdisjoint(PARENTS[s.category]))]


def blend(h: Held, reranked: Probabilities) -> Probabilities:
    return {
        name: [BLEND * a + (1 - BLEND) * b for a, b in zip(q, h.categories[name].probabilities, strict=True)]
        for name, q in reranked.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", default="0,1", help="outer folds to probe on (at least two; never 4)")
    args = parser.parse_args()
    listed = [int(f) for f in args.folds.split(",")]
    if HOLDOUT_FOLD in listed or len(listed) < 2:
        raise SystemExit(f"--folds {args.folds}: at least two folds, and fold {HOLDOUT_FOLD} stays set aside")
    folds = FoldModels()
    held = held_out(folds, listed)
    reranked = rerank(held)
    present = stacked_presence(held, reranked, folds.categories)
    blended = {h.id: blend(h, reranked[h.id]) for h in held}
    rows: list[tuple[str, Callable[[Held], Decided]]] = [
        ("fold models", lambda h: decide(h)),
        ("co-occurrence rule", lambda h: co_occurrence(decide(h))),
        ("reranker", lambda h: decide(h, reranked[h.id])),
        ("blend", lambda h: decide(h, blended[h.id])),
        ("stacked presence", lambda h: decide(h, None, present[h.id])),
        ("stacked presence + blend", lambda h: decide(h, blended[h.id], present[h.id])),
        (
            "stacked presence + blend, tail 1",
            lambda h: with_tail(h, decide(h, blended[h.id], present[h.id]), blended[h.id], 1),
        ),
        (
            "stacked presence + blend, tail 3",
            lambda h: with_tail(h, decide(h, blended[h.id], present[h.id]), blended[h.id], 3),
        ),
    ]
    labels = {json.loads(x)["id"]: x for x in (DEFAULT_CUAD / "labels.jsonl").read_text(encoding="utf-8").splitlines()}
    print(f"{len(held)} contracts of folds {args.folds}, each scored by its fold model\n")
    print("| lever | detection F1 | span F1 | span AUPR |\n| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        gold_path = Path(tmp) / "labels.jsonl"
        gold_path.write_text("".join(labels[h.id] + "\n" for h in held), encoding="utf-8")
        for name, decide_with in rows:
            lines = [prediction_line(h.id, h.text, h.model.finish(h.text, decide_with(h))) for h in held]
            path = Path(tmp) / "predictions.jsonl"
            path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
            r = run_scorer(DEFAULT_SCORER, gold_path, path)
            print(
                f"| {name} | {r['detection']['f1']:.3f} | {r['spans']['f1']:.3f} | {r['spans']['aupr']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown, as scripts/eval_llm.py does
