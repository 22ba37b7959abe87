"""Fit the span-extent model (`clausework.model.extent`) on the inner out-of-fold candidates.

Called by `training.model.fit` after the second stage. Rows: for each training contract and each
unit category its labels have, the `EXTENT_CANDIDATES` most probable candidates (by the second
stage's cross-fitted probability, as run time ranks the ones it keeps), one row per possible extent,
label "this extent matches a label of the category" (word Jaccard >= 0.5, as the scorer counts).
The margin a longer extent must win by is chosen on the trees' own cross-fitted probabilities, and
the log reports how many candidates match as units, with the oracle extent and with the chosen one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingClassifier

from clausework.model.embedded import POOLS, EmbeddedExtractor
from clausework.model.extent import EXTENTS, choose, extent_rows, extent_span, possible, typical_words
from training.data import jaccard, words
from training.second_stage import boosted, cross_fitted, export

if TYPE_CHECKING:
    from training.model import Oof

log = logging.getLogger("training")

EXTENT_CANDIDATES = 3
MARGIN_GRID = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)


def extent_learner() -> HistGradientBoostingClassifier:
    return boosted(31, 40, 300)


@dataclass
class Rows:
    """Training rows, one block of `len(EXTENTS)` per candidate (impossible extents masked)."""

    x: npt.NDArray[np.float64]  # (candidates * len(EXTENTS), columns)
    y: npt.NDArray[np.bool_]
    allowed: npt.NDArray[np.bool_]
    fold: npt.NDArray[np.int64]


def extent_training_rows(
    oof: Sequence[Oof], inner: Sequence[int], probabilities: Sequence[dict[str, list[float]]], first: EmbeddedExtractor
) -> tuple[Rows, dict[str, float]]:
    typical = typical_words(
        {c: [len(g) for o in oof for g in o.contract.gold_words.get(c, [])] for c in first.categories}, first.categories
    )
    columns = {c: i for i, c in enumerate(first.unit_categories)}
    xs: list[npt.NDArray[np.float64]] = []
    ys: list[bool] = []
    allowed: list[bool] = []
    folds: list[int] = []
    for o, f, probs in zip(oof, inner, probabilities, strict=True):
        evidence, text = o.evidence, o.contract.text
        units = evidence.unit_bounds
        for category, golds in o.contract.gold_words.items():
            if category in POOLS or category not in columns:
                continue
            ranked = sorted(zip(evidence.scored[category], probs[category], strict=True), key=lambda sp: -sp[1])
            for s, p in ranked[:EXTENT_CANDIDATES]:
                index = evidence.unit_of[s.start]
                xs.append(
                    extent_rows(
                        text,
                        first.categories.index(category),
                        columns[category],
                        index,
                        p,
                        typical[category],
                        units,
                        evidence.unit_logits,
                    )
                )
                exists = possible(index, len(units))
                allowed.extend(exists)
                for extent, ok in zip(EXTENTS, exists, strict=True):
                    start, end = extent_span(units, index, extent) if ok else (0, 0)
                    ys.append(ok and any(jaccard(words(text[start:end]), g) >= 0.5 for g in golds))
                folds.extend([f] * len(EXTENTS))
    rows = Rows(
        np.vstack(xs) if xs else np.zeros((0, 0)),
        np.array(ys, dtype=bool),
        np.array(allowed, dtype=bool),
        np.array(folds, dtype=np.int64),
    )
    return rows, typical


def matched(rows: Rows, probabilities: npt.NDArray[np.float64], margin: float) -> int:
    """How many candidates the extents `choose` picks from `probabilities` make match."""
    n = len(EXTENTS)
    total = 0
    for start in range(0, len(rows.y), n):
        pick = choose(probabilities[start : start + n], rows.allowed[start : start + n].tolist(), margin)
        total += bool(rows.y[start + pick])
    return total


def fit_extent(
    oof: Sequence[Oof], inner: Sequence[int], probabilities: Sequence[dict[str, list[float]]], first: EmbeddedExtractor
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
    """The extent model's arrays ("extent_*") and metadata (margin, typical words, inner-CV counts)."""
    rows, typical = extent_training_rows(oof, inner, probabilities, first)
    n = len(EXTENTS)
    keep = rows.allowed
    crossed = np.zeros(len(rows.y))
    crossed[keep] = cross_fitted(extent_learner, rows.x[keep], rows.y[keep], rows.fold[keep])
    margin = max(MARGIN_GRID, key=lambda m: (matched(rows, crossed, m), m))
    model = extent_learner().fit(rows.x[keep], rows.y[keep])
    blocks = rows.y.reshape(-1, n)
    counts = {
        "candidates": len(blocks),
        "match_as_units": int(blocks[:, 0].sum()),
        "match_with_the_best_extent": int(blocks.any(axis=1).sum()),
        "match_as_chosen": matched(rows, crossed, margin),
    }
    log.info("extent model: margin %.2f, %s", margin, counts)
    metadata = {"margin": margin, "typical_words": typical, "inner_cv": counts, "rounds": int(model.n_iter_)}
    return export(model).arrays("extent"), metadata
