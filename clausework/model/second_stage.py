"""The model's second stage: decisions that see more than one candidate and one category at a time.

The first stage (`embedded`) scores each candidate with its category's own classifier and calibrates
it with what that category alone knows. Two gradient-boosted tree models (`trees.Trees`, trained by
`training.second_stage` on the inner out-of-fold candidates) then read across categories:
- the **reranker** sees a unit candidate's scores for every unit category (Cap on Liability vs
  Uncapped Liability), its neighbours' scores for its category, its relative position, rank, gap to
  the best, length and the first stage's probability and presence; its probability is blended with
  the calibrated one (`blend`); span categories (names, titles, dates) keep theirs;
- the **stacked presence** model decides whether the contract has a category from every category's
  presence evidence at once (Competitive Restriction Exception comes with Non-Compete, Exclusivity or
  No-Solicit of Customers; Uncapped Liability with Cap on Liability) beside its own best candidates.

With a dense model (`training.dense`), a reranker row also carries the candidate's dense scores
(`DENSE_COLUMNS`, `DenseScore`; NO_DENSE for the others) for each category's `DENSE_TOP` best units:
a per-category logistic regression on the unit's sentence embedding, and its cosine similarity to the
category's nearest training labels (the label bank; a unit that reads like a labelled clause).

Probed before building (docs/quality.md "Round-2 levers"): stacked presence +0.017 detection F1 and
+0.014 span F1, the blended reranker +0.011 AUPR. Span thresholds are chosen again for the second
stage's probabilities. The row layouts here are the one definition both training and run time use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from clausework.model.trees import Trees

if TYPE_CHECKING:
    from clausework.model.embedded import Scored

# the first columns of a reranker row; one column per unit category's logit follows
RERANK_COLUMNS = (
    "category",
    "logit",
    "gap to best",
    "rank",
    "log words",
    "calibrated",
    "presence log-odds",
    "document logit",
    "position",
    "previous unit logit",
    "next unit logit",
    "best other category logit",
    "margin over other categories",
    "candidates above threshold",
)
# appended to a reranker row when the model has dense scores (after the unit categories' logits)
DENSE_COLUMNS = (
    "dense logit",
    "dense gap to best",
    "dense rank",
    "nearest label similarity",
    "mean similarity to the nearest labels",
)
# the first columns of a presence row; one column per category's first-stage presence log-odds follows
PRESENCE_COLUMNS = (
    "category",
    "presence log-odds",
    "best calibrated",
    "second calibrated",
    "document logit",
    "best reranked",
    "second reranked",
    "detect log-odds",
)
NO_NEIGHBOUR = -20.0
NO_DENSE = -20.0  # the dense score of a candidate outside its category's DENSE_TOP units


@dataclass(frozen=True)
class DenseScore:
    """What the dense model says of one candidate (NO_DENSE where it has nothing to say)."""

    logit: float = NO_DENSE  # the category's logistic regression on the unit's embedding
    nearest: float = NO_DENSE  # cosine similarity to the most similar training label of the category
    nearest_mean: float = NO_DENSE  # mean cosine similarity to its NEAREST most similar labels


NEAREST = 3


def nearest_similarities(vector: npt.NDArray[np.float32], bank: npt.NDArray[np.float32]) -> tuple[float, float]:
    """(best, mean of the NEAREST best) cosine similarity of a unit-norm vector to a bank of them."""
    if not len(bank):
        return NO_DENSE, NO_DENSE
    similarities = bank @ vector
    top = np.sort(similarities)[-NEAREST:]
    return float(top[-1]), float(top.mean())


ODDS_FLOOR = 1e-4


def log_odds(p: float) -> float:
    p = min(max(p, ODDS_FLOOR), 1 - ODDS_FLOOR)
    return math.log(p / (1 - p))


def rerank_rows(
    category_index: int,
    column: int,
    candidates: Sequence[Scored],
    probabilities: Sequence[float],
    presence: float,
    threshold: float,
    unit_logits: npt.NDArray[np.float32],
    unit_of: Mapping[int, int],
    dense: Sequence[DenseScore] | None = None,
) -> npt.NDArray[np.float64]:
    """Reranker inputs for one unit category's candidates (sorted best first) in one contract;
    `dense`: each candidate's dense scores, or None for a model without."""
    n_units, n_columns = unit_logits.shape
    width = len(RERANK_COLUMNS) + n_columns
    out = np.zeros((len(candidates), width + (len(DENSE_COLUMNS) if dense is not None else 0)), dtype=np.float64)
    if not candidates:
        return out
    if dense is not None:
        scored = [d.logit for d in dense if d.logit != NO_DENSE]
        best = max(scored, default=NO_DENSE)
        order = sorted(scored, reverse=True)
        for row, d in enumerate(dense):
            own = (d.logit, d.logit - best, order.index(d.logit)) if d.logit != NO_DENSE else (NO_DENSE, NO_DENSE, -1)
            out[row, width:] = (*own, d.nearest, d.nearest_mean)
    top = max(s.logit for s in candidates)
    above = sum(p >= threshold for p in probabilities)
    for rank, (s, p) in enumerate(zip(candidates, probabilities, strict=True)):
        i = unit_of[s.start]
        scores = unit_logits[i]
        others = float(np.delete(scores, column).max()) if n_columns > 1 else NO_NEIGHBOUR
        out[rank, : len(RERANK_COLUMNS)] = (
            category_index,
            s.logit,
            s.logit - top,
            rank,
            math.log1p(s.n_words),
            p,
            log_odds(presence),
            s.doc_logit,
            i / max(1, n_units),
            float(unit_logits[i - 1, column]) if i > 0 else NO_NEIGHBOUR,
            float(unit_logits[i + 1, column]) if i + 1 < n_units else NO_NEIGHBOUR,
            others,
            s.logit - others,
            above,
        )
        out[rank, len(RERANK_COLUMNS) : width] = scores
    return out


def presence_rows(
    presence: Sequence[float],
    probabilities: Sequence[Sequence[float]],
    reranked: Sequence[Sequence[float]],
    doc_logits: Sequence[float],
    detect: Sequence[float],
) -> npt.NDArray[np.float64]:
    """Stacked presence inputs, one row per category (all in the model's category order)."""
    everything = [log_odds(p) for p in presence]
    out = np.zeros((len(presence), len(PRESENCE_COLUMNS) + len(presence)), dtype=np.float64)
    for index in range(len(presence)):
        p = [*sorted(probabilities[index], reverse=True), 0.0, 0.0]
        q = [*sorted(reranked[index], reverse=True), 0.0, 0.0]
        own = (index, everything[index], p[0], p[1], doc_logits[index], q[0], q[1], log_odds(detect[index]))
        out[index, : len(PRESENCE_COLUMNS)] = own
        out[index, len(PRESENCE_COLUMNS) :] = everything
    return out


def blend(weight: float, reranked: Sequence[float], calibrated: Sequence[float]) -> list[float]:
    """A candidate's second-stage probability: `weight` x the reranker's + the rest x the calibrated."""
    return [weight * q + (1 - weight) * p for q, p in zip(reranked, calibrated, strict=True)]


@dataclass(frozen=True)
class SecondStage:
    """The two tree models and the decision constants chosen with them in training."""

    reranker: Trees
    presence: Trees
    detect: float  # a category is reported when its stacked presence probability reaches this
    blend: float  # weight of the reranker's probability against the calibrated one
    thresholds: dict[str, float]  # per category: what a second (third...) span's probability must reach
