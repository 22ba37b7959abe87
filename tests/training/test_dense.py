"""The dense scores' training: the embedding cache, the cross-fitted per-category regressions and the
label bank's cross-fitted similarities."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("sklearn")

from clausework.model.embedded import DENSE_TOP, EmbeddedExtractor, Evidence, Scored
from clausework.model.encoder import Encoder, default_encoder
from clausework.model.second_stage import DenseScore
from training.data import Contract
from training.dense import MIN_LABELS, MIN_POSITIVES, CachedEncoder, _logistic, fit_dense
from training.model import Oof

CATEGORY, RARE = "Audit Rights", "Price Restrictions"


class Counting:
    """An encoder that counts the texts it is asked to embed."""

    dimension = 384

    def __init__(self) -> None:
        self.asked: list[str] = []

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.asked.extend(texts)
        return default_encoder().encode(texts)


def test_the_cache_embeds_each_text_once_and_returns_the_encoders_vectors(tmp_path: Path) -> None:
    counting = Counting()
    cached = CachedEncoder(cast(Encoder, counting), tmp_path / "e.sqlite")
    texts = ["Governing law.", "Audit rights.", "Governing law."]
    first = cached.encode(texts)
    assert sorted(counting.asked) == ["Audit rights.", "Governing law."]  # the repeat embedded once
    again = CachedEncoder(cast(Encoder, counting), tmp_path / "e.sqlite").encode(texts[::-1])
    assert len(counting.asked) == 2  # a new instance on the same file: nothing embedded again
    np.testing.assert_allclose(first, default_encoder().encode(texts), atol=1e-6)
    np.testing.assert_array_equal(again, first[::-1])


class Labels:
    """An encoder that knows the embedding of each synthetic label text."""

    dimension = 384

    def __init__(self) -> None:
        self.vectors: dict[str, npt.NDArray[np.float32]] = {}

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.vstack([self.vectors[t] for t in texts])


def synthetic(n: int, rng: np.random.Generator, labels: Labels) -> tuple[list[Oof], list[int]]:
    """n contracts of 5 candidate units each; in CATEGORY the unit at a random rank < DENSE_TOP
    matches, and its embedding leans towards one direction; each contract's CATEGORY label embeds
    exactly as its matching unit (`labels`); RARE matches in two contracts only and has 2 labels."""
    toward = np.zeros(384, dtype=np.float32)
    toward[0] = 1.0
    oof, inner = [], []
    for i in range(n):
        hit = int(rng.integers(DENSE_TOP))
        vectors = rng.normal(size=(5, 384)).astype(np.float32) * 0.05
        vectors[hit] += toward * 0.3
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        scored = {
            c: [Scored(c, 10 * u, 10 * u + 9, 1.0 - 0.1 * u, "unit", 9) for u in range(5)] for c in (CATEGORY, RARE)
        }
        evidence = Evidence(
            scored,
            np.zeros((5, 2), dtype=np.float32),
            {10 * u: u for u in range(5)},
            [(10 * u, 10 * u + 9) for u in range(5)],
            {u: vectors[u] for u in range(DENSE_TOP)},
        )
        matches = {
            CATEGORY: [[0] if u == hit else [] for u in range(5)],
            RARE: [[0] if i < 2 and u == 0 else [] for u in range(5)],
        }
        labels.vectors[f"label {i}"] = vectors[hit]
        gold = {CATEGORY: [f"label {i}"], **({RARE: [f"label {i}"]} if i < 2 else {})}
        oof.append(Oof(Contract(f"c{i}", f"F{i}_x", "", gold, {}), evidence, matches))
        inner.append(i % 3)
    return oof, inner


def test_dense_scores_are_cross_fitted_over_the_inner_folds() -> None:
    labels = Labels()
    oof, inner = synthetic(90, np.random.default_rng(0), labels)
    first = cast(EmbeddedExtractor, SimpleNamespace(reranked_categories=[CATEGORY, RARE]))
    arrays, metadata, scores = fit_dense(oof, inner, first, labels)
    crossed = [{c: [d.logit for d in row[c]] for c in row} for row in scores]
    assert metadata["categories"] == [CATEGORY]  # RARE has fewer than MIN_POSITIVES matches
    assert MIN_POSITIVES > 2
    assert arrays["dense_w"].shape == (384, 1)
    assert all(row[RARE] == [DenseScore()] * 5 for row in scores)  # nor MIN_LABELS labels
    assert MIN_LABELS > 2
    # beyond the DENSE_TOP best units there is no embedding, so no score
    assert all(row[CATEGORY][DENSE_TOP:] == [DenseScore()] * (5 - DENSE_TOP) for row in scores)
    # it learned: the matching unit outscores the others
    hits = [
        row[CATEGORY][next(r for r, m in enumerate(o.matches[CATEGORY]) if m)]
        for o, row in zip(oof, crossed, strict=True)
    ]
    misses = [
        s
        for o, row in zip(oof, crossed, strict=True)
        for r, s in enumerate(row[CATEGORY][:DENSE_TOP])
        if not o.matches[CATEGORY][r]
    ]
    assert np.mean(hits) > np.mean(misses) + 1.0
    # a contract of inner fold 0 is scored by a regression fitted on folds 1 and 2 only
    rows = [
        (o.evidence.embeddings[r], bool(o.matches[CATEGORY][r]))
        for o, f in zip(oof, inner, strict=True)
        if f != 0
        for r in range(DENSE_TOP)
    ]
    w, b = _logistic(np.vstack([v for v, _ in rows]), np.array([y for _, y in rows]))
    expected = [float(oof[0].evidence.embeddings[r] @ w + b) for r in range(DENSE_TOP)]
    np.testing.assert_allclose(crossed[0][CATEGORY][:DENSE_TOP], expected, rtol=1e-4)
    shipped = [
        float(oof[0].evidence.embeddings[r] @ arrays["dense_w"][:, 0] + arrays["dense_b"][0]) for r in range(DENSE_TOP)
    ]
    assert not np.allclose(shipped, expected, rtol=1e-4)  # the shipped regression saw contract 0


def test_label_similarities_are_cross_fitted_and_the_bank_keeps_every_label() -> None:
    """A contract's units are compared with the labels of the other inner folds only: its own label
    embeds exactly as its matching unit, so a leak would show as similarity 1."""
    labels = Labels()
    oof, inner = synthetic(30, np.random.default_rng(1), labels)
    first = cast(EmbeddedExtractor, SimpleNamespace(reranked_categories=[CATEGORY, RARE]))
    arrays, metadata, scores = fit_dense(oof, inner, first, labels)
    assert metadata["bank_categories"] == [CATEGORY]
    assert arrays["dense_bank"].shape == (30, 384)
    assert arrays["dense_bank_ptr"].tolist() == [0, 30]
    for o, f, row in zip(oof, inner, scores, strict=True):
        hit = next(r for r, m in enumerate(o.matches[CATEGORY]) if m)
        others = np.vstack([labels.vectors[f"label {j}"] for j, g in enumerate(inner) if g != f])
        similarities = np.sort(others @ o.evidence.embeddings[hit])
        assert row[CATEGORY][hit].nearest == pytest.approx(float(similarities[-1]), abs=1e-5)
        assert row[CATEGORY][hit].nearest < 0.99
        assert row[CATEGORY][hit].nearest_mean == pytest.approx(float(similarities[-3:].mean()), abs=1e-5)
    # matching units lean the same way as the labels, so they sit closer to them than the others
    nearest = [
        (row[CATEGORY][r].nearest, bool(o.matches[CATEGORY][r]))
        for o, row in zip(oof, scores, strict=True)
        for r in range(DENSE_TOP)
    ]
    hits, misses = [s for s, m in nearest if m], [s for s, m in nearest if not m]
    assert np.mean(hits) > np.mean(misses) + 0.03
