"""The numpy tree evaluator of the second stage (scikit-learn agreement: tests/training)."""

from __future__ import annotations

import numpy as np
import pytest

from clausework.model.trees import Trees


def stump_and_pair() -> Trees:
    """Tree 0: x0 <= 0.5 -> +1 else -1. Tree 1: x1 <= 2 -> (x0 <= 0 -> 0.25 else 0.5) else -0.5."""
    inf = np.inf
    # nodes:       0 root0  1 leaf  2 leaf  3 root1  4 inner  5 leaf  6 leaf  7 leaf
    feature = np.array([0, 0, 0, 1, 0, 0, 0, 0], dtype=np.int32)
    threshold = np.array([0.5, inf, inf, 2.0, 0.0, inf, inf, inf])
    left = np.array([1, 1, 2, 4, 6, 5, 6, 7], dtype=np.int32)
    right = np.array([2, 1, 2, 5, 7, 5, 6, 7], dtype=np.int32)
    value = np.array([0, 1.0, -1.0, 0, 0, -0.5, 0.25, 0.5])
    return Trees(feature, threshold, left, right, value, np.array([0, 3], dtype=np.int32), 0.1, 2, 2)


def test_rows_take_the_left_branch_at_the_threshold_and_sum_the_trees() -> None:
    trees = stump_and_pair()
    x = np.array([[0.5, 2.0], [0.0, 1.0], [0.7, 1.0], [1.0, 3.0]])
    raw = 0.1 + np.array([1.0 + 0.5, 1.0 + 0.25, -1.0 + 0.5, -1.0 - 0.5])
    np.testing.assert_allclose(trees.probability(x), 1 / (1 + np.exp(-raw)))


def test_arrays_round_trip_and_empty_input() -> None:
    trees = stump_and_pair()
    again = Trees.from_arrays(trees.arrays("t"), "t")
    x = np.random.default_rng(0).normal(size=(50, 2))
    np.testing.assert_array_equal(again.probability(x), trees.probability(x))
    assert trees.probability(np.zeros((0, 2))).shape == (0,)


def test_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        stump_and_pair().probability(np.zeros((3, 5)))
