"""Cross-validate the embedded model on the CUAD dev split and score it with the CUAD scorer.

    python -m training.crossval --folds 5

Group k-fold (`training.groups`: contracts of the same filer, or sharing label text, stay in one
fold). Each fold runs the full training
procedure of `training.model.fit` (including its inner CV for calibration and thresholds) on the
other folds, quantises the weights as `training.train` does (`training.heldout`, which caches the fold
models for other evaluations), and extracts clauses from the held-out
contracts with `EmbeddedExtractor.extract` — the production code path. Predictions of all folds are
written as one JSONL and scored by score_cuad.py; the scores, answer accuracy and the data hash are
written next to the committed artefact (crossval.json).

    python -m training.crossval --folds 5 --holdout-fold 4

also scores the set-aside fold 4 on its own and the development folds (all but 4) on their own,
beside the pooled k-fold figure. Development runs (`--only 0,1`) refuse to include the set-aside
fold, so that it stays a final check.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clausework.answers import clean
from clausework.clauses import ClauseSpan
from clausework.model.embedded import MODEL_DIR
from training.data import DEFAULT_CUAD, DEFAULT_SCORER, ROOT, Contract, labels_sha256
from training.heldout import FoldModels

log = logging.getLogger("training")
TYPED = [
    "Agreement Date",
    "Effective Date",
    "Expiration Date",
    "Governing Law",
    "Renewal Term",
    "Notice Period to Terminate Renewal",
]


def prediction_line(contract_id: str, text: str, spans: list[ClauseSpan]) -> dict[str, Any]:
    return {
        "id": contract_id,
        "clauses": [
            {
                "category": s.category,
                "text": text[s.char_start : s.char_end],
                "confidence": s.confidence,
                "answer": s.answer,
                "char_start": s.char_start,
                "char_end": s.char_end,
            }
            for s in spans
        ],
    }


def run_scorer(scorer: Path, labels: Path, predictions: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(scorer), str(labels), str(predictions), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def score_subset(scorer: Path, labels: Path, predictions: Path, ids: set[str], out: Path, name: str) -> dict[str, Any]:
    """Score only the contracts in `ids` (labels and predictions filtered to them, in out/)."""
    for source, target in ((labels, out / f"labels-{name}.jsonl"), (predictions, out / f"predictions-{name}.jsonl")):
        lines = source.read_text(encoding="utf-8").splitlines()
        target.write_text("".join(x + "\n" for x in lines if json.loads(x)["id"] in ids), encoding="utf-8")
    return run_scorer(scorer, out / f"labels-{name}.jsonl", out / f"predictions-{name}.jsonl")


def summary(result: dict[str, Any]) -> dict[str, Any]:
    return {"contracts": result["contracts"], "detection": result["detection"], "spans": result["spans"]}


def print_line(title: str, result: dict[str, Any]) -> None:
    d, s = result["detection"], result["spans"]
    print(
        f"{title}: {result['contracts']} contracts, detection F1={d['f1']:.3f}, "
        f"span F1={s['f1']:.3f}, span AUPR={s['aupr']:.3f}"
    )


def check_holdout(holdout: int | None, folds: int, only: list[int] | None) -> None:
    """The set-aside fold is a fold index and is not scored in development (`--only`) runs."""
    if holdout is None:
        return
    if not 0 <= holdout < folds:
        raise SystemExit(f"--holdout-fold {holdout}: folds are 0..{folds - 1}")
    if only is not None and holdout in only:
        raise SystemExit(f"fold {holdout} is set aside (--holdout-fold): score it only in a full run")


def answer_accuracy(contracts: list[Contract], predictions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """For typed categories: how often the best predicted clause's answer equals the CUAD answer."""
    out: dict[str, Any] = {}
    for category in TYPED:
        right = total = 0
        for contract in contracts:
            gold = contract.answers.get(category)
            clauses = [c for c in predictions[contract.id]["clauses"] if c["category"] == category]
            if gold is None or not clauses:
                continue
            best = max(clauses, key=lambda c: c["confidence"])
            total += 1
            right += clean(best["answer"]).lower() == clean(gold).lower()
        out[category] = {"accuracy": round(right / total, 3) if total else None, "n": total}
    return out


def print_table(result: dict[str, Any]) -> None:
    for category, value in result["per_category_f1"].items():
        print(f"{value:6.3f}  {category}")
    d, s = result["detection"], result["spans"]
    print(f"detection P={d['precision']:.3f} R={d['recall']:.3f} F1={d['f1']:.3f}")
    print(
        f"spans P={s['precision']:.3f} R={s['recall']:.3f} F1={s['f1']:.3f} "
        f"AUPR={s['aupr']:.3f} P@80R={s['precision_at_80_recall']:.3f}"
    )


@dataclass(frozen=True)
class Ablation:
    """The same fold models decoding every contract again with parts of the model switched off."""

    flag: str  # the argparse dest of its option, also its key in the record
    name: str  # out/.../ablation-<name>.jsonl, and the scored subset's name
    parts: tuple[str, ...]  # the EmbeddedExtractor attributes set to None
    off: str  # what the printed line says is off


ABLATIONS = (
    Ablation("first_stage_only", "first-stage", ("second_stage", "extent"), "second stage and extent model"),
    Ablation("without_extent", "without-extent", ("extent",), "extent model"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cuad-dir", type=Path, default=DEFAULT_CUAD)
    parser.add_argument("--scorer", type=Path, default=DEFAULT_SCORER)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "crossval")
    parser.add_argument(
        "--record", type=Path, default=MODEL_DIR / "crossval.json", help="where to write the metrics summary"
    )
    parser.add_argument("--only", default="", help="development: comma-separated folds to run (scored on those only)")
    parser.add_argument(
        "--holdout-fold",
        type=int,
        default=None,
        help="the set-aside fold: also scored on its own (full runs only; --only may not include it)",
    )
    parser.add_argument(
        "--first-stage-only",
        action="store_true",
        help="also decode every contract with its fold model's second stage (and extent model) off (the ablation)",
    )
    parser.add_argument(
        "--without-extent",
        action="store_true",
        help="also decode every contract with its fold model's extent model switched off (the ablation)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    only = [int(f) for f in args.only.split(",")] if args.only else None
    check_holdout(args.holdout_fold, args.folds, only)
    models = FoldModels(args.cuad_dir, args.folds)
    docs = models.docs
    predictions: dict[str, dict[str, Any]] = {}
    ablations = [a for a in ABLATIONS if getattr(args, a.flag)]
    ablated: dict[str, dict[str, dict[str, Any]]] = {a.flag: {} for a in ablations}
    per_fold: list[dict[str, Any]] = []
    selected = only if only is not None else list(range(args.folds))
    docs_run = [d for d in docs if models.fold_of(d.contract.id) in selected]
    for fold in selected:
        test = [d for d in docs if models.fold_of(d.contract.id) == fold]
        extractor = models.model(fold)
        metadata = extractor.metadata
        for d in test:
            spans = extractor.extract(d.contract.text)
            predictions[d.contract.id] = prediction_line(d.contract.id, d.contract.text, spans)
        for ablation in ablations:
            switched = copy.copy(extractor)
            for part in ablation.parts:
                setattr(switched, part, None)
            for d in test:
                spans = switched.extract(d.contract.text)
                ablated[ablation.flag][d.contract.id] = prediction_line(d.contract.id, d.contract.text, spans)
        inner = metadata["inner_cv"]
        per_fold.append(
            {"fold": fold, "contracts": len(test), "detect": inner["detect"], "threshold": inner["threshold"]}
        )
        log.info("fold %d/%d done (%.0f s)", fold + 1, args.folds, time.monotonic() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    predictions_path = args.out / "predictions.jsonl"
    with predictions_path.open("w", encoding="utf-8") as handle:
        for d in docs_run:
            handle.write(json.dumps(predictions[d.contract.id]) + "\n")
    labels_path = args.cuad_dir / "labels.jsonl"
    if args.only:
        ids = {d.contract.id for d in docs_run}
        result = score_subset(args.scorer, labels_path, predictions_path, ids, args.out, "subset")
    else:
        result = run_scorer(args.scorer, labels_path, predictions_path)
    (args.out / "scores.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print_table(result)
    ablation_summaries: dict[str, dict[str, Any]] = {}
    for ablation in ablations:
        path = args.out / f"ablation-{ablation.name}.jsonl"
        lines = "".join(json.dumps(ablated[ablation.flag][d.contract.id]) + "\n" for d in docs_run)
        path.write_text(lines, encoding="utf-8")
        ids = {d.contract.id for d in docs_run}
        ablation_result = score_subset(args.scorer, labels_path, path, ids, args.out, ablation.name)
        ablation_summaries[ablation.flag] = summary(ablation_result)
        print_line(f"the same fold models, {ablation.off} off", ablation_result)
    holdout: dict[str, Any] | None = None
    if args.holdout_fold is not None:
        held = {d.contract.id for d in docs if models.fold_of(d.contract.id) == args.holdout_fold}
        rest = {d.contract.id for d in docs} - held
        held_result = score_subset(args.scorer, labels_path, predictions_path, held, args.out, "holdout")
        rest_result = score_subset(args.scorer, labels_path, predictions_path, rest, args.out, "development")
        holdout = {
            "fold": args.holdout_fold,
            "holdout": summary(held_result),
            "development": {"folds": [f for f in selected if f != args.holdout_fold], **summary(rest_result)},
        }
        (args.out / "scores-holdout.json").write_text(json.dumps(held_result, indent=1) + "\n", encoding="utf-8")
        print_line(f"all {args.folds} folds", result)
        print_line(f"development folds (all but {args.holdout_fold})", rest_result)
        print_line(f"set-aside fold {args.holdout_fold}", held_result)
    answers = answer_accuracy([d.contract for d in docs_run], predictions)
    by_category_counts: dict[str, int] = defaultdict(int)
    for line in predictions.values():
        for clause in line["clauses"]:
            by_category_counts[clause["category"]] += 1
    record = {
        "model": f"embedded/cuad-sparse-lr@{per_fold and metadata['version']}",
        "command": f"python -m training.crossval --folds {args.folds}",
        "labels_sha256": labels_sha256(args.cuad_dir),
        "folds": args.folds,
        "grouping": "training.groups: normalised filer key, or label 8-word shingle overlap >= 0.5",
        "groups": len(set(models.groups.values())),
        "per_fold": per_fold,
        "detection": result["detection"],
        "spans": result["spans"],
        "per_category_f1": result["per_category_f1"],
        "answer_accuracy": answers,
        "seconds": round(time.monotonic() - started),
    }
    if holdout is not None:
        record["command"] += f" --holdout-fold {args.holdout_fold}"
        record["holdout"] = holdout
    for ablation in ablations:
        record["command"] += " --" + ablation.flag.replace("_", "-")
        record[ablation.flag] = ablation_summaries[ablation.flag]
    if args.only:
        args.record = args.out / "crossval-partial.json"
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(answers, indent=1))
    print(f"predictions: {predictions_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
