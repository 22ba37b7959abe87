"""What the span-extent model leaves on the table, on its cross-validation fold models.

    python -m training.extent_ceiling [--only 0,1,2,3] [--out out/extent-ceiling]

Every contract of the chosen folds is decided by the fold model that never saw it, then scored by
score_cuad.py four ways: as decided (no extent model), with the fold model's extent model (what
`extract` returns), and with the ceiling of each extent set: every decided single-unit candidate
given the first extent, in the set's order, whose span matches a label of its category (word Jaccard
>= 0.5; the unit alone when it matches itself), under the extent model's rule that a growth onto
another kept span of the category is not made. The four extents of `clausework.model.extent` and
nine (up to two units each side). It also counts the decided unit candidates that match no label
and how many of those one extent would make match. Needs the fold models `training.crossval` caches.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from pathlib import Path
from typing import Any

from clausework.model.embedded import EmbeddedExtractor, Evidence, Scored, growable
from clausework.model.extent import EXTENTS, extent_span, grow
from training.crossval import prediction_line, score_subset, summary
from training.data import DEFAULT_CUAD, DEFAULT_SCORER, ROOT, Contract, jaccard, words
from training.heldout import FoldModels

NINE = tuple(itertools.product(range(3), range(3)))  # (before, after), the unit alone first
Decided = list[tuple[Scored, float]]


def matches(contract: Contract, scored: Scored) -> bool:
    """Whether the span matches a label of its category (word Jaccard >= 0.5; any label, used or not)."""
    span = words(contract.text[scored.start : scored.end])
    return any(jaccard(span, g) >= 0.5 for g in contract.gold_words.get(scored.category, []))


def matching_extent(
    contract: Contract, evidence: Evidence, scored: Scored, extents: tuple[tuple[int, int], ...]
) -> int:
    """The index in `extents` of the first extent whose span matches a label (0 if none does)."""
    golds = contract.gold_words.get(scored.category, [])
    index = evidence.unit_of[scored.start]
    for choice, (before, after) in enumerate(extents):
        if index - before < 0 or index + after >= len(evidence.unit_bounds):
            continue
        start, end = extent_span(evidence.unit_bounds, index, (before, after))
        span = words(contract.text[start:end])
        if any(jaccard(span, g) >= 0.5 for g in golds):
            return choice
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuad-dir", type=Path, default=DEFAULT_CUAD)
    parser.add_argument("--scorer", type=Path, default=DEFAULT_SCORER)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", default="0,1,2,3", help="the folds to decide (the set-aside fold 4 is not)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "extent-ceiling")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    selected = [int(f) for f in args.only.split(",")]
    models = FoldModels(args.cuad_dir, args.folds)
    runs: dict[str, dict[str, Any]] = {name: {} for name in ("as decided", "extent model", "ceiling, 4", "ceiling, 9")}
    counts = {
        "decided unit candidates": 0,
        "matching no label": 0,
        "made to match by one of 4": 0,
        "of 9": 0,
        "grown by the extent model": 0,
        "of them now matching": 0,
        "of them no longer matching": 0,
    }
    for fold in selected:
        extractor: EmbeddedExtractor = models.model(fold)
        for d in models.docs:
            contract = d.contract
            if models.fold_of(contract.id) != fold:
                continue
            evidence = extractor.evidence(contract.text, d.features)
            decided = extractor.decide(extractor.assess(evidence))
            units = growable(evidence, decided)
            four = {p: matching_extent(contract, evidence, decided[p][0], EXTENTS) for p in units}
            nine = {p: matching_extent(contract, evidence, decided[p][0], NINE) for p in units}
            extended = extractor.extend(contract.text, evidence, decided)
            for p in units:
                alone = matches(contract, decided[p][0])
                counts["decided unit candidates"] += 1
                counts["matching no label"] += not alone
                counts["made to match by one of 4"] += not alone and four[p] > 0
                counts["of 9"] += not alone and nine[p] > 0
                if extended[p][0] != decided[p][0]:
                    grown = matches(contract, extended[p][0])
                    counts["grown by the extent model"] += 1
                    counts["of them now matching"] += grown and not alone
                    counts["of them no longer matching"] += alone and not grown
            variants: dict[str, Decided] = {
                "as decided": decided,
                "extent model": extended,
                "ceiling, 4": grow(
                    contract.text, decided, {p: (units[p], EXTENTS[c]) for p, c in four.items()}, evidence.unit_bounds
                ),
                "ceiling, 9": grow(
                    contract.text, decided, {p: (units[p], NINE[c]) for p, c in nine.items()}, evidence.unit_bounds
                ),
            }
            for name, spans in variants.items():
                runs[name][contract.id] = prediction_line(
                    contract.id, contract.text, extractor.finish(contract.text, spans)
                )
    args.out.mkdir(parents=True, exist_ok=True)
    labels = args.cuad_dir / "labels.jsonl"
    print(f"folds {args.only}: {json.dumps(counts)}")
    for name, lines in runs.items():
        stem = name.replace(", ", "-").replace(" ", "-")
        path = args.out / f"{stem}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines.values()), encoding="utf-8")
        result = summary(score_subset(args.scorer, labels, path, set(lines), args.out, stem))
        spans = result["spans"]
        print(
            f"{name}: detection F1 {result['detection']['f1']:.4f}, span F1 {spans['f1']:.4f}, AUPR {spans['aupr']:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
