"""The second stage's trees, exported from scikit-learn, predict what scikit-learn predicts."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from training.second_stage import boosted, export


def test_exported_trees_match_scikit_learn() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3000, 6))
    x[:, 3] = rng.integers(0, 5, size=3000)  # ties sit exactly on split thresholds
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 3] + rng.normal(scale=0.5, size=3000)) > 0.3
    model = boosted(15, 20, 60).fit(x, y)
    trees = export(model)
    probe = np.vstack([rng.normal(size=(500, 6)), x[:500]])
    probe[:, 3] = rng.integers(0, 5, size=len(probe))
    np.testing.assert_allclose(trees.probability(probe), model.predict_proba(probe)[:, 1], rtol=1e-9, atol=1e-12)
    assert trees.n_features == 6 and len(trees.roots) == model.n_iter_
