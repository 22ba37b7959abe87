"""Fit the embedded model on a set of contracts: classifiers, rankers, calibrators and thresholds.

`fit()` is what both `training.train` (all contracts) and `training.crossval` (each outer fold's
training contracts) call, so cross-validated numbers measure exactly the shipped procedure:

1. unit classifiers and span rankers (logistic regression) are fitted on an inner 3-fold split and
   score the held-out inner fold: out-of-fold scores for every training contract;
2. per-category calibrators (logistic regression on score, rank, gap to the best, length) are fitted
   on those out-of-fold scores, and the decision threshold and per-contract cap are chosen on them;
3. classifiers and rankers are refitted on all training contracts;
4. the dense scores (`training.dense`: a logistic regression per category on the embeddings of its
   best units) and the second stage (`training.second_stage`: a reranker and a stacked presence
   model, trees) are fitted on the same out-of-fold candidates, given the first stage's calibrated
   view of them (the reranker learns from the dense scores cross-fitted).
The inner split groups contracts as the outer one does (`training.groups.cv_groups`).
Nothing of a test contract is seen: not its labels, nor its text (vocabularies come from training text).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from clausework.model.embedded import (
    CALIBRATION_FEATURES,
    POOLS,
    PRESENCE_FEATURES,
    DocumentFeatures,
    EmbeddedExtractor,
    Evidence,
    Scored,
    calibration_features,
    featurize,
    keep_spans,
    presence_features,
)
from clausework.model.features import CsrRows, Vectorizer
from training.data import Contract, folds, jaccard, words
from training.dense import CachedEncoder, fit_dense
from training.extent import fit_extent
from training.groups import cv_groups
from training.second_stage import fit_second_stage

log = logging.getLogger("training")

VERSION = "2.3.0"
# span thresholds tried, for the first stage and again for the second
THRESHOLD_GRID = np.arange(0.10, 0.61, 0.05).tolist()
SPAN_CATEGORIES = ["Document Name", "Parties", "Agreement Date", "Effective Date"]
# Effective Date is also a unit category: a third of its labels are whole sentences.
UNIT_EXCLUDED = {"Document Name", "Parties", "Agreement Date"}


@dataclass(frozen=True)
class Params:
    unit_vocabulary: int = 60_000
    unit_min_df: int = 3
    unit_c: float = 4.0
    rank_vocabulary: int = 40_000
    rank_min_df: int = 2
    rank_c: float = 0.5
    calibration_c: float = 1.0
    doc_c: float = 16.0
    inner_folds: int = 3
    # units whose words are mostly inside a label of at least this many words count as positives
    fragment_containment: float = 0.8
    fragment_min_words: int = 5


@dataclass
class Prepared:
    """A contract with its weight-free features and training labels."""

    contract: Contract
    features: DocumentFeatures
    unit_labels: npt.NDArray[np.bool_]  # (n_units, n_unit_categories)
    pool_labels: dict[str, npt.NDArray[np.bool_]]  # pool -> (n_candidates, n_span_categories)


def unit_categories(categories: Sequence[str]) -> list[str]:
    return [c for c in categories if c not in UNIT_EXCLUDED]


def prepare(contract: Contract, categories: Sequence[str], params: Params) -> Prepared:
    """Features of the text (exactly as at run time) and which units/candidates match labels."""
    features = featurize(contract.text)
    text = contract.text
    unit_cats = unit_categories(categories)
    unit_words = [words(text[u.start : u.end]) for u in features.units]
    labels = np.zeros((len(features.units), len(unit_cats)), dtype=bool)
    for column, category in enumerate(unit_cats):
        for gold in contract.gold_words.get(category, []):
            for row, unit in enumerate(unit_words):
                common = len(unit & gold)
                if not common:
                    continue
                if common / len(unit | gold) >= 0.5 or (
                    len(unit) >= params.fragment_min_words and common / len(unit) >= params.fragment_containment
                ):
                    labels[row, column] = True
    pool_labels = {}
    for pool, (candidates, _rows, _keys) in features.pools.items():
        cand_words = [words(text[c.start : c.end]) for c in candidates]
        matrix = np.zeros((len(candidates), len(SPAN_CATEGORIES)), dtype=bool)
        for column, category in enumerate(SPAN_CATEGORIES):
            if POOLS[category] != pool:
                continue
            golds = contract.gold_words.get(category, [])
            for row, cw in enumerate(cand_words):
                matrix[row, column] = any(jaccard(cw, g) >= 0.5 for g in golds)
        pool_labels[pool] = matrix
    return Prepared(contract, features, labels, pool_labels)


def _csr(rows: CsrRows) -> sparse.csr_matrix:
    return sparse.csr_matrix((rows.data, rows.indices, rows.indptr), shape=(rows.n_rows, rows.n_cols))


def _logistic(
    x: sparse.csr_matrix, y: npt.NDArray[np.bool_], c: float, l1: bool = False
) -> tuple[npt.NDArray[np.float32], float]:
    if y.sum() == 0:
        return np.zeros(x.shape[1], dtype=np.float32), -10.0
    if y.all():
        return np.zeros(x.shape[1], dtype=np.float32), 10.0
    model = LogisticRegression(C=c, solver="liblinear", max_iter=300, l1_ratio=1.0 if l1 else 0.0, random_state=0)
    model.fit(x, y)
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def _blob(vocabulary: Sequence[str]) -> npt.NDArray[np.uint8]:
    return np.frombuffer("\n".join(vocabulary).encode("utf-8"), dtype=np.uint8).copy()


def fit_raw(
    docs: Sequence[Prepared], categories: Sequence[str], params: Params, unit_vectorizer: Vectorizer | None = None
) -> dict[str, npt.NDArray[Any]]:
    """Unit classifiers and span rankers on `docs`: the weight arrays of the artefact."""
    unit_cats = unit_categories(categories)
    if unit_vectorizer is None:
        unit_vectorizer = Vectorizer.fit(
            (row for d in docs for row in d.features.unit_rows), params.unit_min_df, params.unit_vocabulary
        )
    x = _csr(unit_vectorizer.transform(row for d in docs for row in d.features.unit_rows))
    y = np.vstack([d.unit_labels for d in docs])
    unit_w = np.zeros((x.shape[1], len(unit_cats)), dtype=np.float32)
    unit_b = np.zeros(len(unit_cats), dtype=np.float32)
    for column in range(len(unit_cats)):
        unit_w[:, column], unit_b[column] = _logistic(x, y[:, column], params.unit_c)

    rank_vectorizer = Vectorizer.fit(
        (row for d in docs for _c, rows, _k in d.features.pools.values() for row in rows),
        params.rank_min_df,
        params.rank_vocabulary,
    )
    rank_w = np.zeros((len(rank_vectorizer.vocabulary), len(SPAN_CATEGORIES)), dtype=np.float32)
    rank_b = np.zeros(len(SPAN_CATEGORIES), dtype=np.float32)
    for column, category in enumerate(SPAN_CATEGORIES):
        pool = POOLS[category]
        rx = _csr(rank_vectorizer.transform((row for d in docs for row in d.features.pools[pool][1]), binary=True))
        ry = np.concatenate([d.pool_labels[pool][:, column] for d in docs])
        rank_w[:, column], rank_b[column] = _logistic(rx, ry, params.rank_c)
    # whole-document presence classifiers (L1: a few dozen telling terms per category)
    doc_x = _csr(unit_vectorizer.transform([t for row in d.features.unit_rows for t in row] for d in docs))
    doc_idx: list[npt.NDArray[np.int32]] = []
    doc_val: list[npt.NDArray[np.float32]] = []
    doc_b = np.zeros(len(categories), dtype=np.float32)
    for column, category in enumerate(categories):
        y = np.array([category in d.contract.gold for d in docs])
        weights, doc_b[column] = _logistic(doc_x, y, params.doc_c, l1=True)
        nonzero = np.flatnonzero(weights).astype(np.int32)
        doc_idx.append(nonzero)
        doc_val.append(weights[nonzero])
    return {
        "doc_idx": np.concatenate(doc_idx),
        "doc_val": np.concatenate(doc_val).astype(np.float32),
        "doc_ptr": np.cumsum([0] + [len(i) for i in doc_idx]).astype(np.int64),
        "doc_b": doc_b,
        "unit_vocab": _blob(unit_vectorizer.vocabulary),
        "unit_idf": unit_vectorizer.idf,
        "unit_w": unit_w,
        "unit_b": unit_b,
        "rank_vocab": _blob(rank_vectorizer.vocabulary),
        "rank_w": rank_w,
        "rank_b": rank_b,
    }


def base_metadata(categories: Sequence[str], answer_formats: dict[str, str]) -> dict[str, Any]:
    """Metadata with neutral calibration (probability = sigmoid(score)), used to score raw models."""
    identity = [0.0] * CALIBRATION_FEATURES
    identity[0] = 1.0
    return {
        "version": VERSION,
        "categories": list(categories),
        "unit_categories": unit_categories(categories),
        "span_categories": SPAN_CATEGORIES,
        "answer_formats": answer_formats,
        "calibration": {c: identity for c in categories},
        "thresholds": {c: 0.5 for c in categories},
        "max_spans": {c: 1 for c in categories},
        "presence": {c: [1.0] + [0.0] * (PRESENCE_FEATURES - 1) for c in categories},
        "detect": {c: 0.5 for c in categories},
    }


@dataclass
class Oof:
    """Out-of-fold candidates of one contract, with the labels (indices) each one matches."""

    contract: Contract
    evidence: Evidence
    matches: dict[str, list[list[int]]]  # per category, per candidate of `scored`

    @property
    def scored(self) -> dict[str, list[Scored]]:
        return self.evidence.scored


def _matches(contract: Contract, scored: dict[str, list[Scored]]) -> dict[str, list[list[int]]]:
    """For each candidate, the labels it matches (word Jaccard >= 0.5), in the contract's gold order."""
    out = {}
    for category, candidates in scored.items():
        golds = contract.gold_words.get(category, [])
        matched = []
        for s in candidates:
            ws = words(contract.text[s.start : s.end])
            matched.append([i for i, g in enumerate(golds) if jaccard(ws, g) >= 0.5])
        out[category] = matched
    return out


def _new_matches(matches: list[list[int]]) -> list[bool]:
    """Calibration labels: a candidate is right if it matches a label no better-ranked candidate took.

    The scorer counts a second span on the same label as a false positive, so "The Company" after
    "Company" must learn a low probability even though both match.
    """
    used: set[int] = set()
    out = []
    for matched in matches:
        fresh = next((g for g in matched if g not in used), None)
        if fresh is not None:
            used.add(fresh)
        out.append(fresh is not None)
    return out


def fit_calibration(oof: Sequence[Oof], categories: Sequence[str], c: float) -> dict[str, list[float]]:
    """Per-category logistic calibrator on out-of-fold candidates; a pooled one where data is thin."""
    per: dict[str, tuple[list[npt.NDArray[np.float64]], list[bool]]] = {cat: ([], []) for cat in categories}
    for item in oof:
        for category in categories:
            per[category][0].append(calibration_features(item.scored[category]))
            per[category][1].extend(_new_matches(item.matches[category]))

    def fit(x: npt.NDArray[np.float64], y: npt.NDArray[np.bool_]) -> list[float]:
        model = LogisticRegression(C=c, max_iter=1000)
        model.fit(x[:, :-1], y)
        return [*model.coef_[0].tolist(), float(model.intercept_[0])]

    pooled_x = np.vstack([np.vstack(per[cat][0]) for cat in categories if cat not in SPAN_CATEGORIES])
    pooled_y = np.concatenate([np.asarray(per[cat][1], dtype=bool) for cat in categories if cat not in SPAN_CATEGORIES])
    pooled = fit(pooled_x, pooled_y)
    out = {}
    for category in categories:
        x = np.vstack(per[category][0])
        y = np.asarray(per[category][1], dtype=bool)
        out[category] = fit(x, y) if y.sum() >= 10 and (~y).sum() >= 10 else pooled
    return out


def fit_presence(
    oof: Sequence[Oof], probabilities: Sequence[dict[str, list[float]]], categories: Sequence[str], c: float
) -> dict[str, list[float]]:
    """Per-category logistic model of "the contract has this category" from its best candidates."""
    xs = {
        cat: np.vstack([presence_features(o.scored[cat], p[cat]) for o, p in zip(oof, probabilities, strict=True)])
        for cat in categories
    }
    ys = {cat: np.array([cat in o.contract.gold for o in oof]) for cat in categories}

    def fit(x: npt.NDArray[np.float64], y: npt.NDArray[np.bool_]) -> list[float]:
        model = LogisticRegression(C=c, max_iter=1000)
        model.fit(x[:, :-1], y)
        return [*model.coef_[0].tolist(), float(model.intercept_[0])]

    pooled_cats = [cat for cat in categories if cat not in SPAN_CATEGORIES]
    pooled = fit(np.vstack([xs[cat] for cat in pooled_cats]), np.concatenate([ys[cat] for cat in pooled_cats]))
    out = {}
    for category in categories:
        y = ys[category]
        if (~y).sum() < 10:  # (almost) always present: Parties, Document Name
            rate = min(max(float(y.mean()), 0.01), 0.99)
            out[category] = [0.0] * (PRESENCE_FEATURES - 1) + [math.log(rate / (1 - rate))]
        elif y.sum() < 10:
            out[category] = pooled
        else:
            out[category] = fit(xs[category], y)
    return out


def choose_thresholds(
    oof: Sequence[Oof],
    probabilities: Sequence[dict[str, list[float]]],
    extractor: EmbeddedExtractor,
    categories: Sequence[str],
) -> tuple[dict[str, float], dict[str, float], dict[str, int], dict[str, Any]]:
    """Cap per contract from label counts; one presence and one span threshold for all categories,
    chosen to maximise detection F1 + span F1 + span AUPR out of fold.

    With calibrated probabilities shared thresholds are near-optimal for pooled (micro) metrics, and
    they do not overfit rare categories the way per-category thresholds would.
    """
    max_spans = {}
    for category in categories:
        counts = sorted(len(o.contract.gold.get(category, [])) for o in oof if category in o.contract.gold)
        max_spans[category] = max(1, counts[int(0.9 * (len(counts) - 1))]) if counts else 1
    presence = [
        {c: extractor.presence(c, o.scored[c], p[c]) for c in categories}
        for o, p in zip(oof, probabilities, strict=True)
    ]
    results = {}
    best = (-1.0, 0.5, 0.5)
    for detect in np.arange(0.20, 0.71, 0.05).tolist():
        for threshold in THRESHOLD_GRID:
            scores = evaluate_oof(oof, probabilities, presence, categories, detect, threshold, max_spans)
            results[f"{detect:.2f}/{threshold:.2f}"] = scores
            objective = scores["detection_f1"] + scores["span_f1"] + scores["span_aupr"]
            if objective > best[0]:
                best = (objective, detect, threshold)
    _, detect, threshold = best
    thresholds = refine_thresholds(oof, probabilities, presence, categories, detect, threshold, max_spans)
    chosen = {
        "detect": round(detect, 3),
        "threshold": round(threshold, 3),
        "oof": results[f"{detect:.2f}/{threshold:.2f}"],
        "per_category": {c: round(t, 3) for c, t in thresholds.items() if t != threshold},
    }
    rounded = {c: round(t, 3) for c, t in thresholds.items()}
    return {c: round(detect, 3) for c in categories}, rounded, max_spans, chosen


def choose_span_thresholds(
    oof: Sequence[Oof],
    probabilities: Sequence[dict[str, list[float]]],
    presence: Sequence[dict[str, float]],
    categories: Sequence[str],
    detect: float,
    max_spans: dict[str, int],
) -> tuple[float, dict[str, float]]:
    """The second stage's span thresholds, on its cross-fitted probabilities and presence: the
    shared one that maximises span F1 + AUPR, then each large category's own (`refine_thresholds`)."""

    def objective(t: float) -> float:
        scores = evaluate_oof(oof, probabilities, presence, categories, detect, t, max_spans)
        return scores["span_f1"] + scores["span_aupr"]

    threshold = max(THRESHOLD_GRID, key=objective)
    thresholds = refine_thresholds(oof, probabilities, presence, categories, detect, threshold, max_spans)
    return round(threshold, 3), {c: round(t, 3) for c, t in thresholds.items()}


def refine_thresholds(
    oof: Sequence[Oof],
    probabilities: Sequence[dict[str, list[float]]],
    presence: Sequence[dict[str, float]],
    categories: Sequence[str],
    detect: float,
    threshold: float,
    max_spans: dict[str, int],
    min_labels: int = 150,
) -> dict[str, float]:
    """Own span threshold for categories with enough out-of-fold labels (Parties, License Grant...).

    One pass of coordinate ascent on pooled span F1: a category's matches and predictions add up, so
    each category's best threshold is found with the others' counts held fixed.
    """
    grid = np.arange(0.10, 0.71, 0.05).tolist()
    counts: dict[str, dict[float, tuple[int, int]]] = {}
    labels = {c: sum(len(o.contract.gold.get(c, [])) for o in oof) for c in categories}
    n_gold = sum(labels.values())
    for category in categories:
        counts[category] = {}
        for t in grid if labels[category] >= min_labels else [threshold]:
            hits = predicted = 0
            for item, probs, present_p in zip(oof, probabilities, presence, strict=True):
                if present_p[category] < detect:
                    continue
                kept = keep_spans(item.scored[category], probs[category], t, max_spans[category])
                index = {id(s): i for i, s in enumerate(item.scored[category])}
                used: set[int] = set()
                for s, _ in sorted(kept, key=lambda sp: sp[0].start):
                    hit = next((g for g in item.matches[category][index[id(s)]] if g not in used), None)
                    if hit is not None:
                        used.add(hit)
                predicted += len(kept)
                hits += len(used)
            counts[category][t] = (hits, predicted)
    chosen = {c: threshold for c in categories}

    def f1(choice: dict[str, float]) -> float:
        hits = sum(counts[c][choice[c]][0] for c in categories)
        predicted = sum(counts[c][choice[c]][1] for c in categories)
        return 2 * hits / (predicted + n_gold) if predicted + n_gold else 0.0

    for category in sorted(categories, key=lambda c: -labels[c]):
        if labels[category] >= min_labels:
            chosen[category] = max(grid, key=lambda t: (f1({**chosen, category: t}), -abs(t - threshold)))
    return chosen


def evaluate_oof(
    oof: Sequence[Oof],
    probabilities: Sequence[dict[str, list[float]]],
    presence: Sequence[dict[str, float]],
    categories: Sequence[str],
    detect: float,
    threshold: float,
    max_spans: dict[str, int],
) -> dict[str, float]:
    """Detection F1, span F1 and AUPR of a decision rule, computed like the CUAD scorer."""
    tp = fp = fn = 0
    ranked: list[tuple[float, bool]] = []
    n_gold = 0
    for item, probs, present_p in zip(oof, probabilities, presence, strict=True):
        gold = item.contract.gold_words
        n_gold += sum(len(v) for v in gold.values())
        for category in categories:
            kept: list[tuple[Scored, float]] = []
            if present_p[category] >= detect:
                kept = keep_spans(item.scored[category], probs[category], threshold, max_spans[category])
            present = category in gold
            tp += bool(kept) and present
            fp += bool(kept) and not present
            fn += (not kept) and present
            if not kept:
                continue
            index = {id(s): i for i, s in enumerate(item.scored[category])}
            used: set[int] = set()
            for s, p in sorted(kept, key=lambda sp: sp[0].start):
                hit = next((g for g in item.matches[category][index[id(s)]] if g not in used), None)
                if hit is not None:
                    used.add(hit)
                ranked.append((p, hit is not None))
    ranked.sort(key=lambda r: -r[0])
    hits = 0
    aupr = previous_recall = 0.0
    for k, (_, ok) in enumerate(ranked, 1):
        hits += ok
        recall = hits / n_gold if n_gold else 0.0
        aupr += hits / k * (recall - previous_recall)
        previous_recall = recall

    def f1(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if p + r else 0.0

    span_p = hits / len(ranked) if ranked else 0.0
    span_r = hits / n_gold if n_gold else 0.0
    det_p = tp / (tp + fp) if tp + fp else 0.0
    det_r = tp / (tp + fn) if tp + fn else 0.0
    return {"detection_f1": f1(det_p, det_r), "span_f1": f1(span_p, span_r), "span_aupr": aupr}


def fit(
    docs: Sequence[Prepared],
    categories: Sequence[str],
    answer_formats: dict[str, str],
    params: Params,
    progress: Callable[[str], None] = log.info,
    encoder: CachedEncoder | None = None,
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
    """The artefact (arrays, metadata) trained on `docs`, with nested-CV calibration and thresholds."""
    started = time.monotonic()
    encoder = encoder or CachedEncoder()
    unit_vectorizer = Vectorizer.fit(
        (row for d in docs for row in d.features.unit_rows), params.unit_min_df, params.unit_vocabulary
    )
    contracts = [d.contract for d in docs]
    inner = folds(contracts, params.inner_folds, seed=29, groups=cv_groups(contracts))
    oof: list[Oof] = []
    oof_fold: list[int] = []
    for fold in range(params.inner_folds):
        train = [d for d, f in zip(docs, inner, strict=True) if f != fold]
        held = [d for d, f in zip(docs, inner, strict=True) if f == fold]
        arrays = fit_raw(train, categories, params, unit_vectorizer)
        raw = EmbeddedExtractor(arrays, base_metadata(categories, answer_formats), encoder)
        for d in held:
            evidence = raw.evidence(d.contract.text, d.features)
            oof.append(Oof(d.contract, evidence, _matches(d.contract, evidence.scored)))
            oof_fold.append(fold)
        progress(f"inner fold {fold + 1}/{params.inner_folds} done ({time.monotonic() - started:.0f} s)")
    metadata = base_metadata(categories, answer_formats)
    metadata["calibration"] = fit_calibration(oof, categories, params.calibration_c)
    probabilities = [{c: _calibrate(metadata["calibration"][c], o.scored[c]) for c in categories} for o in oof]
    metadata["presence"] = fit_presence(oof, probabilities, categories, params.calibration_c)
    arrays = fit_raw(docs, categories, params, unit_vectorizer)
    calibrated = EmbeddedExtractor(arrays, metadata, encoder)
    detect, thresholds, max_spans, chosen = choose_thresholds(oof, probabilities, calibrated, categories)
    metadata["detect"] = detect
    metadata["thresholds"] = thresholds
    metadata["max_spans"] = max_spans
    metadata["inner_cv"] = {"folds": params.inner_folds, **chosen}
    first = EmbeddedExtractor(arrays, metadata, encoder)
    dense_arrays, metadata["dense"], dense = fit_dense(oof, oof_fold, first, encoder)
    n_dense = len(metadata["dense"]["categories"])
    progress(f"dense model done ({time.monotonic() - started:.0f} s): {n_dense} categories")
    second = fit_second_stage(oof, oof_fold, first, dense)
    arrays.update(dense_arrays)
    threshold, second_thresholds = choose_span_thresholds(
        oof, second.probabilities, second.presence, categories, second.metadata["detect"], max_spans
    )
    metadata["second_stage"] = {**second.metadata, "threshold": threshold, "thresholds": second_thresholds}
    arrays.update(second.arrays)
    progress(f"second stage done ({time.monotonic() - started:.0f} s): {metadata['second_stage']}")
    with_second = EmbeddedExtractor(arrays, metadata, encoder)
    extent_arrays, metadata["extent"] = fit_extent(oof, oof_fold, second.probabilities, with_second)
    arrays.update(extent_arrays)
    progress(f"extent model done ({time.monotonic() - started:.0f} s): {metadata['extent']['inner_cv']}")
    metadata["params"] = json.loads(json.dumps(params.__dict__))
    progress(f"fit done ({time.monotonic() - started:.0f} s): {chosen}")
    return arrays, metadata


def _calibrate(weights: list[float], scored: list[Scored]) -> list[float]:
    z = calibration_features(scored) @ np.asarray(weights)
    return (1.0 / (1.0 + np.exp(-z))).tolist() if len(scored) else []


def quantize(arrays: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """int8 weights with a per-column scale: 4x smaller, scores change by < 1%."""
    out = dict(arrays)
    for name in ("unit_w", "rank_w", "dense_bank"):
        weights = arrays[name].astype(np.float32)
        scale = np.maximum(np.abs(weights).max(axis=0), 1e-8) / 127.0
        out[name] = np.clip(np.round(weights / scale[None, :]), -127, 127).astype(np.int8)
        out[name + "_scale"] = scale.astype(np.float32)
    out["unit_idf"] = arrays["unit_idf"].astype(np.float16)
    return out
