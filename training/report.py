"""Per-category and per-subset scores of cross-validation predictions, for docs/quality.md.

    python -m training.report out/crossval/predictions.jsonl out/baseline-t0.1/predictions.jsonl \
        [more baselines...] [--previous OLD_MODEL_PREDICTIONS]

Each category (and each subset of categories) is scored by the CUAD scorer itself, on labels and
predictions filtered to that category: detection F1 is then the scorer's `per_category_f1`, span F1
and AUPR are those of the category alone. Prints the markdown tables of docs/quality.md ("Where the
gain comes from" and "Per category"); the first predictions file is the model, the next ones
baselines (the subset table shows each; the per-category table the first). `--previous` adds an
earlier model's predictions beside the model's: its subset rows, and per category its span F1 and
the change. `--ids FILE` (a labels JSONL, e.g. out/crossval/labels-holdout.jsonl) restricts both to
those contracts. `--by-fold K` prints instead each outer fold's scores (`training.groups.cv_folds`,
as `training.crossval --folds K` splits), the model beside `--previous`: how steady a change is.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from training.data import DEFAULT_CUAD, DEFAULT_SCORER, from_record
from training.groups import cv_folds

SHORT_SPANS = ["Parties", "Document Name", "Agreement Date", "Effective Date"]
Scorer = Callable[[str, str, bool], dict[str, Any]]


def load_scorer(path: Path) -> Scorer:
    spec = importlib.util.spec_from_file_location("score_cuad", path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main: Scorer = module.main
    return main


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def filtered(
    labels: list[dict[str, Any]], predictions: list[dict[str, Any]], categories: Collection[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Labels and predictions restricted to `categories` (every contract kept)."""
    gold = [{**r, "clauses": {c: v for c, v in r["clauses"].items() if c in categories}} for r in labels]
    ids = {r["id"] for r in labels}
    pred = [
        {"id": p["id"], "clauses": [c for c in p.get("clauses", []) if c["category"] in categories]}
        for p in predictions
        if p["id"] in ids
    ]
    return gold, pred


def score(
    scorer: Scorer, labels: list[dict[str, Any]], predictions: list[dict[str, Any]], categories: Collection[str]
) -> dict[str, Any]:
    gold, pred = filtered(labels, predictions, categories)
    with tempfile.TemporaryDirectory() as tmp:
        gold_path, pred_path = Path(tmp) / "labels.jsonl", Path(tmp) / "predictions.jsonl"
        gold_path.write_text("".join(json.dumps(r) + "\n" for r in gold), encoding="utf-8")
        pred_path.write_text("".join(json.dumps(r) + "\n" for r in pred), encoding="utf-8")
        with contextlib.redirect_stdout(io.StringIO()):
            return scorer(str(gold_path), str(pred_path), True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("baseline", type=Path, nargs="+")
    parser.add_argument("--previous", type=Path, default=None, help="an earlier model's predictions, compared")
    parser.add_argument("--cuad-dir", type=Path, default=DEFAULT_CUAD)
    parser.add_argument("--scorer", type=Path, default=DEFAULT_SCORER)
    parser.add_argument("--ids", type=Path, default=None, help="a labels JSONL: score only its contracts")
    parser.add_argument("--by-fold", type=int, default=0, metavar="K", help="fold by fold, as crossval --folds K")
    args = parser.parse_args(argv)
    scorer = load_scorer(args.scorer)
    corpus = read_jsonl(args.cuad_dir / "labels.jsonl")
    labels = corpus
    if args.ids:
        keep = {r["id"] for r in read_jsonl(args.ids)}
        labels = [r for r in labels if r["id"] in keep]
    model = read_jsonl(args.model)
    if args.by_fold:
        return by_fold(scorer, corpus, labels, args.by_fold, model, read_jsonl(args.previous or args.model))
    baselines = [(f"baseline {path.parent.name}", read_jsonl(path)) for path in args.baseline]
    baseline = baselines[0][1]
    previous = read_jsonl(args.previous) if args.previous else None
    systems = [("embedded model", model)] + ([("previous model", previous)] if previous else []) + baselines
    counts: dict[str, int] = {}
    for record in labels:
        for category, value in record["clauses"].items():
            counts[category] = counts.get(category, 0) + len(value["contexts"])
    every = sorted(counts)
    sentence_like = [c for c in every if c not in SHORT_SPANS]
    print(f"{len(labels)} contracts")
    print("| subset | system | detection F1 | span F1 | span AUPR |")
    print("|---|---|---:|---:|---:|")
    for title, subset in (
        (f"{len(sentence_like)} sentence-like categories", sentence_like),
        ("Parties, Document Name, Agreement/Effective Date", SHORT_SPANS),
    ):
        n = sum(counts.get(c, 0) for c in subset)
        for index, (system, predictions) in enumerate(systems):
            head = f"{title} ({n:,} labels)" if index == 0 else ""
            cells = " | ".join(f"{v:.3f}" for v in headline(score(scorer, labels, predictions, subset)))
            print(f"| {head} | {system} | {cells} |")
    print()
    then = "| previous detection F1 | previous span F1 | span F1 change " if previous else ""
    print(f"| category | labels | detection F1 | span F1 {then}| baseline detection F1 | baseline span F1 |")
    print("|---|---:|---:|---:|" + ("---:|---:|---:|" if previous else "") + "---:|---:|")
    for category in sorted(every, key=lambda c: (-counts[c], c)):
        m, b = score(scorer, labels, model, [category]), score(scorer, labels, baseline, [category])
        was = ""
        if previous:
            o = score(scorer, labels, previous, [category])
            change = m["spans"]["f1"] - o["spans"]["f1"]
            was = f"{o['detection']['f1']:.3f} | {o['spans']['f1']:.3f} | {change:+.3f} | "
        print(
            f"| {category} | {counts[category]} | {m['detection']['f1']:.3f} | {m['spans']['f1']:.3f} | {was}"
            f"{b['detection']['f1']:.3f} | {b['spans']['f1']:.3f} |"
        )
    return 0


def headline(result: dict[str, Any]) -> tuple[float, float, float]:
    """A scorer result's detection F1, span F1 and span AUPR."""
    return result["detection"]["f1"], result["spans"]["f1"], result["spans"]["aupr"]


def by_fold(
    scorer: Scorer,
    corpus: list[dict[str, Any]],
    labels: list[dict[str, Any]],
    k: int,
    model: list[dict[str, Any]],
    previous: list[dict[str, Any]],
) -> int:
    """Each outer fold scored alone (folds of the whole `corpus`; contracts of `labels`): the model,
    the previous model and the change."""
    contracts = [from_record(r) for r in corpus]
    fold_of = dict(zip((c.id for c in contracts), cv_folds(contracts, k), strict=True))
    metrics = ("detection F1", "span F1", "span AUPR")
    print("| fold | contracts | " + " | ".join(f"{m} | previous | change" for m in metrics) + " |")
    print("|---:|---:|" + "---:|---:|---:|" * len(metrics))
    every = sorted({c for r in labels for c in r["clauses"]})
    for fold in range(k):
        ids = {r["id"] for r in labels if fold_of[r["id"]] == fold}
        subset = [r for r in labels if r["id"] in ids]
        ours, theirs = headline(score(scorer, subset, model, every)), headline(score(scorer, subset, previous, every))
        cells = [f"{a:.3f} | {b:.3f} | {a - b:+.3f}" for a, b in zip(ours, theirs, strict=True)]
        print(f"| {fold} | {len(ids)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
