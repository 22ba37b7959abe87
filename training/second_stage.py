"""Fit the second stage (`clausework.model.second_stage`) on the inner out-of-fold candidates.

Called by `training.model.fit` once the first stage's calibrators, presence models and thresholds
are chosen. Every training contract's candidates come from an inner fold model that never saw it
(`Oof`), so the trees learn from candidates as a new contract's look:
1. the reranker (gradient-boosted trees) on every unit candidate, label "matches a gold context";
2. its probabilities for each contract again, cross-fitted over the inner folds (a contract is
   reranked by trees that did not learn from it), as input to
3. the stacked presence model, label "the contract has the category"; its decision threshold is
   the one that maximises detection F1 on its own inner cross-fitted probabilities.
Both are then exported as numpy node arrays (`clausework.model.trees.Trees`). The cross-fitted
probabilities are returned too: `training.model` chooses the span thresholds the second stage
decides with on them (the first stage's were chosen for the calibrated probabilities alone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingClassifier

from clausework.model.embedded import EmbeddedExtractor
from clausework.model.second_stage import DenseScore, blend
from clausework.model.trees import Trees

if TYPE_CHECKING:
    from training.model import Oof

log = logging.getLogger("training")

BLEND = 0.5
DETECT_GRID = np.arange(0.10, 0.90, 0.02)


def boosted(leaves: int, min_leaf: int, rounds: int) -> HistGradientBoostingClassifier:
    """The tree learner of both models (the settings of the probe, docs/quality.md "Round-2 levers")."""
    return HistGradientBoostingClassifier(
        max_iter=rounds,
        learning_rate=0.05,
        max_leaf_nodes=leaves,
        min_samples_leaf=min_leaf,
        l2_regularization=1.0,
        random_state=0,
    )


def reranker() -> HistGradientBoostingClassifier:
    return boosted(31, 40, 300)


def stacker() -> HistGradientBoostingClassifier:
    return boosted(15, 20, 200)


def export(model: HistGradientBoostingClassifier) -> Trees:
    """The fitted binary classifier's trees as flat node arrays (no categorical splits are used)."""
    features, thresholds, lefts, rights, values, roots = [], [], [], [], [], []
    depth = offset = 0
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits cannot be exported")
        leaf = nodes["is_leaf"].astype(bool)
        own = np.arange(len(nodes)) + offset
        features.append(np.where(leaf, 0, nodes["feature_idx"]))
        thresholds.append(np.where(leaf, np.inf, nodes["num_threshold"]))
        lefts.append(np.where(leaf, own, nodes["left"].astype(np.int64) + offset))
        rights.append(np.where(leaf, own, nodes["right"].astype(np.int64) + offset))
        values.append(np.where(leaf, nodes["value"], 0.0))
        roots.append(offset)
        depth = max(depth, int(nodes["depth"].max()))
        offset += len(nodes)
    return Trees(
        feature=np.concatenate(features).astype(np.int32),
        threshold=np.concatenate(thresholds).astype(np.float64),
        left=np.concatenate(lefts).astype(np.int32),
        right=np.concatenate(rights).astype(np.int32),
        value=np.concatenate(values).astype(np.float64),
        roots=np.asarray(roots, dtype=np.int32),
        baseline=float(np.ravel(model._baseline_prediction)[0]),
        depth=depth,
        n_features=int(model.n_features_in_),
    )


def cross_fitted(
    make: Callable[[], HistGradientBoostingClassifier],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.bool_],
    fold: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """Each row's probability from a model fitted on the other inner folds' rows."""
    out = np.zeros(len(x))
    for f in np.unique(fold):
        held = fold == f
        out[held] = make().fit(x[~held], y[~held]).predict_proba(x[held])[:, 1]
    return out


def detection_f1(predicted: npt.NDArray[np.bool_], gold: npt.NDArray[np.bool_]) -> float:
    return float(2 * (predicted & gold).sum() / max(1, predicted.sum() + gold.sum()))


@dataclass
class Fitted:
    """The second stage's arrays and metadata, and its cross-fitted view of the training contracts."""

    arrays: dict[str, npt.NDArray[Any]]
    metadata: dict[str, Any]
    probabilities: list[dict[str, list[float]]]  # per `oof` item: blended (reranked) or calibrated
    presence: list[dict[str, float]]  # per `oof` item: stacked presence probability


def fit_second_stage(
    oof: Sequence[Oof],
    inner: Sequence[int],
    first: EmbeddedExtractor,
    dense: Sequence[dict[str, list[DenseScore]]] | None = None,
) -> Fitted:
    """The second stage fitted on the out-of-fold candidates of `oof` (`inner[i]`: the inner fold of
    `oof[i]`) and the fitted first stage `first`; `dense`: each item's cross-fitted dense scores
    (`training.dense`), or None for a reranker without them."""
    categories = first.categories
    firsts = [first.first_stage(o.evidence) for o in oof]
    denses = dense if dense is not None else [None] * len(oof)
    rows = [first.rerank_inputs(o.evidence, p, q, d) for o, (p, q), d in zip(oof, firsts, denses, strict=True)]
    reranked_names = list(rows[0]) if rows else []
    x_parts, y_parts, fold_parts = [], [], []
    for o, f, r in zip(oof, inner, rows, strict=True):
        for name in reranked_names:
            x_parts.append(r[name])
            y_parts.append(np.array([bool(m) for m in o.matches[name]], dtype=bool))
            fold_parts.append(np.full(len(r[name]), f))
    x, y, fold = np.vstack(x_parts), np.concatenate(y_parts), np.concatenate(fold_parts)
    log.info("second stage: reranker on %d candidates (%d match)", len(y), int(y.sum()))
    crossed = cross_fitted(reranker, x, y, fold)
    rerank_model = reranker().fit(x, y)

    presence_x, presence_y, presence_fold = [], [], []
    blended: list[dict[str, list[float]]] = []
    cursor = 0
    for o, f, r, (p, q) in zip(oof, inner, rows, firsts, strict=True):
        reranked: dict[str, list[float]] = {}
        for name in reranked_names:
            reranked[name] = crossed[cursor : cursor + len(r[name])].tolist()
            cursor += len(r[name])
        blended.append({**p, **{n: blend(BLEND, v, p[n]) for n, v in reranked.items()}})
        presence_x.append(first.presence_inputs(o.evidence, p, q, reranked))
        presence_y.append(np.array([c in o.contract.gold for c in categories]))
        presence_fold.append(np.full(len(categories), f))
    px, py, pfold = np.vstack(presence_x), np.concatenate(presence_y), np.concatenate(presence_fold)
    stacked = cross_fitted(stacker, px, py, pfold)
    detect = float(max(DETECT_GRID, key=lambda t: detection_f1(stacked >= t, py)))
    stack_model = stacker().fit(px, py)
    first_stage_f1 = detection_f1(np.array([q[c] >= first.detect(c) for _, q in firsts for c in categories]), py)
    chosen = {
        "detect": round(detect, 3),
        "blend": BLEND,
        "inner_detection_f1": round(detection_f1(stacked >= detect, py), 4),
        "inner_detection_f1_first_stage": round(first_stage_f1, 4),
        "reranker_rounds": int(rerank_model.n_iter_),
        "presence_rounds": int(stack_model.n_iter_),
    }
    log.info("second stage: %s", chosen)
    arrays = {**export(rerank_model).arrays("rerank"), **export(stack_model).arrays("stack")}
    n = len(categories)
    presence = [dict(zip(categories, stacked[i * n : (i + 1) * n].tolist(), strict=True)) for i in range(len(oof))]
    return Fitted(arrays, chosen, blended, presence)
