"""The dense scores of the second stage: a logistic regression per category on unit embeddings.

For each reranked category, the `DENSE_TOP` best units of a contract by first-stage score get an
embedding (`clausework.model.encoder`); a logistic regression learns, on the inner out-of-fold
candidates, which of those match a label. Its negatives are the units the sparse classifier already
ranks highest, so it learns what the n-grams miss. The reranker learns from its cross-fitted scores
(each contract scored by a regression fitted on the other inner folds), as it will meet them on a new
contract; the shipped regression is then fitted on all of them.

The label bank keeps every training label's embedding per category; a dense unit's similarity to its
category's nearest labels is a second score, cross-fitted the same way (a contract is compared with
the labels of the other inner folds only). Measured on branch dense-label-bank and again here: see
docs/quality.md "Dense scores".

Embeddings are cached on disk (`CachedEncoder`, keyed on the encoder's files), as the same units
recur in every fold model: embedding the dense units of all 419 contracts once takes ~10 min.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from clausework.model import encoder as encoder_module
from clausework.model.embedded import DENSE_TOP, EmbeddedExtractor
from clausework.model.encoder import ENCODER_DIR, MAX_TOKENS, Encoder, TextEncoder, default_encoder
from clausework.model.second_stage import NO_DENSE, DenseScore, nearest_similarities
from training.data import CACHE

if TYPE_CHECKING:
    from training.model import Oof

log = logging.getLogger("training")

DENSE_C = 1.0
MIN_POSITIVES = 20  # a category with fewer matching dense units gets no dense regression
MIN_LABELS = 5  # a category with fewer training labels gets no label bank


def encoder_key(directory: Path = ENCODER_DIR) -> str:
    """What an embedding depends on: the weights, the tokenizer, the forward pass and the cut."""
    digest = hashlib.sha256(str(MAX_TOKENS).encode())
    for path in (directory / "encoder.npz", directory / "tokenizer.json", Path(encoder_module.__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class CachedEncoder:
    """`Encoder` with a disk cache (sqlite, one row per text): training embeds each unit once."""

    def __init__(self, encoder: Encoder | None = None, path: Path | None = None) -> None:
        self.encoder = encoder or default_encoder()
        self.path = path or CACHE.parent / "embeddings" / f"{encoder_key()}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS embedding (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        keys = [hashlib.sha1(t.encode("utf-8")).digest() for t in texts]
        found: dict[bytes, npt.NDArray[np.float32]] = {}
        with self._lock, self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, blob in db.execute(f"SELECT key, vector FROM embedding WHERE key IN ({marks})", chunk):
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        unique = list({k: i for i, k in enumerate(keys) if k not in found}.values())  # each new text once
        if unique:
            vectors = self.encoder.encode([texts[i] for i in unique])
            rows = [(keys[i], v.astype(np.float32).tobytes()) for i, v in zip(unique, vectors, strict=True)]
            with self._lock, self._connect() as db:
                db.executemany("INSERT OR IGNORE INTO embedding VALUES (?, ?)", rows)
            found.update({keys[i]: v for i, v in zip(unique, vectors, strict=True)})
        dimension = self.encoder.dimension
        return np.vstack([found[k] for k in keys]) if keys else np.zeros((0, dimension), dtype=np.float32)


def _rows(
    oof: Sequence[Oof], categories: Sequence[str]
) -> dict[str, tuple[list[int], list[int], list[npt.NDArray[np.float32]], list[bool]]]:
    """Per category: (oof item, candidate rank, embedding, matches a label) of its dense candidates."""
    out: dict[str, tuple[list[int], list[int], list[npt.NDArray[np.float32]], list[bool]]] = {
        c: ([], [], [], []) for c in categories
    }
    for item, o in enumerate(oof):
        evidence = o.evidence
        for category in categories:
            items, ranks, vectors, labels = out[category]
            for rank, vector in evidence.dense_vectors(category):
                items.append(item)
                ranks.append(rank)
                vectors.append(vector)
                labels.append(bool(o.matches[category][rank]))
    return out


def _logistic(x: npt.NDArray[np.float32], y: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.float32], float]:
    """Weights for raw (unit-norm) embeddings; fitted on embeddings scaled to unit variance per dimension."""
    scale = math.sqrt(x.shape[1])
    model = LogisticRegression(C=DENSE_C, max_iter=2000)
    model.fit(x * scale, y)
    return (model.coef_[0] * scale).astype(np.float32), float(model.intercept_[0])


def fit_dense(
    oof: Sequence[Oof], inner: Sequence[int], first: EmbeddedExtractor, encoder: TextEncoder
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any], list[dict[str, list[DenseScore]]]]:
    """The dense model's arrays and metadata, and every oof item's cross-fitted dense scores."""
    categories = first.reranked_categories
    rows = _rows(oof, categories)
    folds = np.asarray(inner)
    crossed: list[dict[str, list[float]]] = [
        {c: [NO_DENSE] * len(o.evidence.scored[c]) for c in categories} for o in oof
    ]
    kept: list[str] = []
    weights: list[npt.NDArray[np.float32]] = []
    biases: list[float] = []
    summary: dict[str, Any] = {}
    for category in categories:
        items, ranks, vectors, labels = rows[category]
        y = np.asarray(labels, dtype=bool)
        if y.sum() < MIN_POSITIVES or (~y).sum() < MIN_POSITIVES:
            continue
        x = np.vstack(vectors)
        fold = folds[np.asarray(items)]
        z = np.zeros(len(y))
        for f in np.unique(fold):
            held = fold == f
            if y[~held].all() or not y[~held].any():
                continue
            w, b = _logistic(x[~held], y[~held])
            z[held] = x[held] @ w + b
        for item, rank, score in zip(items, ranks, z.tolist(), strict=True):
            crossed[item][category][rank] = score
        w, b = _logistic(x, y)
        kept.append(category)
        weights.append(w)
        biases.append(b)
        first_logits = [oof[i].evidence.scored[category][r].logit for i, r in zip(items, ranks, strict=True)]
        summary[category] = {
            "candidates": len(y),
            "match": int(y.sum()),
            # how well each score alone tells the matching units among these (cross-fitted)
            "auc_dense": round(float(roc_auc_score(y, z)), 3),
            "auc_first_stage": round(float(roc_auc_score(y, first_logits)), 3),
        }
    dimension = next((len(v) for o in oof for v in o.evidence.embeddings.values()), 0)
    bank_categories, banks, nearest = _nearest_labels(oof, folds, categories, encoder)
    arrays: dict[str, npt.NDArray[Any]] = {
        "dense_w": np.stack(weights, axis=1) if weights else np.zeros((dimension, 0), dtype=np.float32),
        "dense_b": np.asarray(biases, dtype=np.float32),
        "dense_bank": np.vstack(banks) if banks else np.zeros((0, dimension), dtype=np.float32),
        "dense_bank_ptr": np.cumsum([0] + [len(b) for b in banks]).astype(np.int64),
    }
    log.info("dense model: %d of %d categories, %d labels", len(kept), len(categories), len(arrays["dense_bank"]))
    metadata = {
        "categories": kept,
        "bank_categories": bank_categories,
        "top": DENSE_TOP,
        "max_tokens": MAX_TOKENS,
        "encoder": encoder_key(),
    }
    scores = [
        {c: [DenseScore(z, *nearest[i][c][r]) for r, z in enumerate(crossed[i][c])] for c in categories}
        for i in range(len(oof))
    ]
    return arrays, {**metadata, "inner_cv": summary}, scores


def _nearest_labels(
    oof: Sequence[Oof], folds: npt.NDArray[np.int64], categories: Sequence[str], encoder: TextEncoder
) -> tuple[list[str], list[npt.NDArray[np.float32]], list[dict[str, list[tuple[float, float]]]]]:
    """The label banks (per category with MIN_LABELS, every training label's embedding) and each oof
    item's dense candidates' similarities to the labels of the other inner folds (cross-fitted: a
    contract never meets its own labels, as a new contract will not)."""
    bank_categories: list[str] = []
    banks: list[npt.NDArray[np.float32]] = []
    nearest: list[dict[str, list[tuple[float, float]]]] = [
        {c: [(NO_DENSE, NO_DENSE)] * len(o.evidence.scored[c]) for c in categories} for o in oof
    ]
    for category in categories:
        labelled = [(i, text) for i, o in enumerate(oof) for text in o.contract.gold.get(category, [])]
        if len(labelled) < MIN_LABELS:
            continue
        bank = encoder.encode([text for _, text in labelled])
        owner_fold = folds[np.asarray([i for i, _ in labelled])]
        bank_categories.append(category)
        banks.append(bank)
        for i, o in enumerate(oof):
            others = bank[owner_fold != folds[i]]
            for rank, vector in o.evidence.dense_vectors(category):
                nearest[i][category][rank] = nearest_similarities(vector, others)
    return bank_categories, banks, nearest
