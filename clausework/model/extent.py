"""The span-extent model: should a kept unit candidate grow into the unit before or after it?

A CUAD label often spans more than one of `segmentation`'s units (a lead-in and its list, a sentence
cut at a semicolon), and a unit that is only part of a label fails the scorer's word Jaccard >= 0.5.
On folds 0-3, 419 of the 2,283 decided unit candidates that match no label would match with one of
the four extents below (`python -m training.extent_ceiling`). For each decided single-unit candidate
this model scores four extents (the unit alone, with the previous unit, with the next, with both) by
the probability that the span matches a label, from the neighbours' scores for the category, their
lengths against the category's typical label length and the punctuation and line breaks at the
joins; the best extent replaces the unit if it beats the unit alone by `margin`. Gradient-boosted
trees (`trees.Trees`), trained by `training.extent` on the inner out-of-fold candidates; the row
layout here is the one definition training and run time share.

Measured (docs/quality.md "The span-extent model"; `python -m training.crossval --folds 5
--holdout-fold 4 --without-extent`): +0.004 span F1, +0.006 AUPR over all 419 contracts, about a
quarter of what a perfect choice among the four extents would give; ~0.02 s per 30-page contract.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from clausework.model.trees import Trees

if TYPE_CHECKING:
    from clausework.model.embedded import Scored

# (units taken in before, units taken in after): the first is the unit alone
EXTENTS = ((0, 0), (1, 0), (0, 1), (1, 1))
EXTENT_COLUMNS = (
    "category",
    "before",
    "after",
    "logit",
    "probability",
    "previous logit",
    "next logit",
    "second previous logit",
    "second next logit",
    "lowest logit taken in",
    "log words",
    "log previous words",
    "log next words",
    "log extent words",
    "log extent words over typical",
    "ends with a period",
    "ends with ; or :",
    "ends without punctuation",
    "previous ends with :",
    "previous ends with a period",
    "next starts lowercase",
    "next starts with an enumerator",
    "line breaks before",
    "line breaks after",
)
NO_NEIGHBOUR = -20.0
_ENUMERATOR = re.compile(r"\s*(?:\(?[a-zA-Z0-9]{1,4}[.)]|[-\u2022*])\s")


@dataclass(frozen=True)
class Extent:
    """The trees and what training chose with them."""

    trees: Trees
    margin: float  # how much more probable than the unit alone a longer extent must be
    typical_words: dict[str, float]  # per category: the median word count of its training labels


def _last(text: str) -> str:
    stripped = text.rstrip()
    return stripped[-1] if stripped else ""


def _breaks(text: str, start: int, end: int) -> int:
    return min(3, text.count("\n", start, end))


def extent_rows(
    text: str,
    category_index: int,
    column: int,
    index: int,
    probability: float,
    typical_words: float,
    unit_bounds: Sequence[tuple[int, int]],
    unit_logits: npt.NDArray[np.float32],
) -> npt.NDArray[np.float64]:
    """One row per extent in `EXTENTS` for unit `index`, a candidate of the category at `column`."""
    n_units = len(unit_bounds)

    def logit(i: int) -> float:
        return float(unit_logits[i, column]) if 0 <= i < n_units else NO_NEIGHBOUR

    def count(i: int) -> int:
        if not 0 <= i < n_units:
            return 0
        start, end = unit_bounds[i]
        return len(text[start:end].split())

    words = {i: count(i) for i in (index - 1, index, index + 1)}

    start, end = unit_bounds[index]
    own = text[start:end]
    last = _last(own)
    previous = text[unit_bounds[index - 1][0] : unit_bounds[index - 1][1]] if index > 0 else ""
    following = text[unit_bounds[index + 1][0] : unit_bounds[index + 1][1]] if index + 1 < n_units else ""
    first_next = following.lstrip()[:1]
    shared = (
        logit(index),
        probability,
        logit(index - 1),
        logit(index + 1),
        logit(index - 2),
        logit(index + 2),
    )
    joins = (
        last == ".",
        last in ";:",
        last.isalnum() or last == ",",
        _last(previous) == ":",
        _last(previous) == ".",
        first_next.islower(),
        bool(_ENUMERATOR.match(following)),
        _breaks(text, unit_bounds[index - 1][1], start) if index > 0 else 3,
        _breaks(text, end, unit_bounds[index + 1][0]) if index + 1 < n_units else 3,
    )
    out = np.zeros((len(EXTENTS), len(EXTENT_COLUMNS)), dtype=np.float64)
    for row, (before, after) in enumerate(EXTENTS):
        taken = [i for i in (index - 1 if before else None, index + 1 if after else None) if i is not None]
        total = words[index] + sum(words[i] for i in taken)
        out[row] = (
            category_index,
            before,
            after,
            *shared,
            min((logit(i) for i in taken), default=logit(index)),
            math.log1p(words[index]),
            math.log1p(words[index - 1]),
            math.log1p(words[index + 1]),
            math.log1p(total),
            math.log((1 + total) / (1 + typical_words)),
            *joins,
        )
    return out


def possible(index: int, n_units: int) -> list[bool]:
    """Which extents exist for unit `index` (none before the first unit or after the last)."""
    return [index - before >= 0 and index + after < n_units for before, after in EXTENTS]


def extent_span(unit_bounds: Sequence[tuple[int, int]], index: int, extent: tuple[int, int]) -> tuple[int, int]:
    """The (start, end) offsets of unit `index` grown by `extent` (units before, units after)."""
    before, after = extent
    return unit_bounds[index - before][0], unit_bounds[index + after][1]


def grow(
    text: str,
    decided: Sequence[tuple[Scored, float]],
    choices: Mapping[int, tuple[int, tuple[int, int]]],
    unit_bounds: Sequence[tuple[int, int]],
) -> list[tuple[Scored, float]]:
    """`decided` with each chosen candidate (position -> its unit index and extent) grown, in order,
    unless the growth would overlap another kept span of its category. Confidences stay."""
    out = list(decided)
    for position, (index, extent) in choices.items():
        if extent == EXTENTS[0]:
            continue
        s, p = out[position]
        start, end = extent_span(unit_bounds, index, extent)
        if any(
            o.category == s.category and o.start < end and start < o.end
            for k, (o, _) in enumerate(out)
            if k != position
        ):
            continue
        out[position] = (replace(s, start=start, end=end, n_words=len(text[start:end].split())), p)
    return out


def choose(probabilities: npt.NDArray[np.float64], allowed: Sequence[bool], margin: float) -> int:
    """The extent to emit: the most probable allowed one if it beats the unit alone by `margin`."""
    best = max((i for i, ok in enumerate(allowed) if ok), key=lambda i: probabilities[i])
    return best if probabilities[best] > probabilities[0] + margin else 0


def typical_words(gold_words: Mapping[str, Sequence[int]], categories: Sequence[str]) -> dict[str, float]:
    """The median label length per category (1 word where a category has no labels)."""
    return {c: float(np.median(gold_words[c])) if gold_words.get(c) else 1.0 for c in categories}
