"""Gradient-boosted trees evaluated in numpy: the run time of the model's second stage.

Training fits scikit-learn's HistGradientBoostingClassifier (`training.second_stage`) and exports
each tree as flat node arrays; this evaluates them without scikit-learn, so the llm service keeps
its numpy-only dependencies. A row goes left at a node when `x[feature] <= threshold`, as in
scikit-learn's predictor. Leaves point to themselves with threshold +inf, so every row can take
`depth` steps through every tree at once: one vectorised step per tree level, not a Python loop per
row or tree. `tests/training/test_second_stage.py` checks the probabilities against scikit-learn's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FIELDS = ("feature", "threshold", "left", "right", "value", "roots")


@dataclass(frozen=True)
class Trees:
    """A binary classifier: sigmoid(baseline + the sum over trees of the leaf each row reaches)."""

    feature: npt.NDArray[np.int32]  # per node; 0 at leaves
    threshold: npt.NDArray[np.float64]  # per node; +inf at leaves
    left: npt.NDArray[np.int32]  # per node, global index; a leaf points to itself
    right: npt.NDArray[np.int32]
    value: npt.NDArray[np.float64]  # per node; the raw score a leaf adds
    roots: npt.NDArray[np.int32]  # per tree, its root's global index
    baseline: float
    depth: int
    n_features: int

    def probability(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """P(positive) per row of `x` (n_rows, n_features)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected (rows, {self.n_features}) inputs, got {x.shape}")
        if not len(x) or not len(self.roots):
            return np.full(len(x), 1.0 / (1.0 + np.exp(-self.baseline)))
        rows = np.arange(len(x))[:, None]
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        for _ in range(self.depth):
            goes_left = x[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(goes_left, self.left[node], self.right[node])
        raw = self.baseline + self.value[node].sum(axis=1)
        return np.asarray(1.0 / (1.0 + np.exp(-raw)), dtype=np.float64)

    def arrays(self, prefix: str) -> dict[str, npt.NDArray[Any]]:
        """The arrays to store in model.npz, under `prefix`."""
        out: dict[str, npt.NDArray[Any]] = {f"{prefix}_{name}": getattr(self, name) for name in FIELDS}
        out[f"{prefix}_shape"] = np.array([self.depth, self.n_features], dtype=np.int64)
        out[f"{prefix}_baseline"] = np.array([self.baseline], dtype=np.float64)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, npt.NDArray[Any]], prefix: str) -> Trees:
        depth, n_features = (int(v) for v in arrays[f"{prefix}_shape"])
        return cls(
            feature=arrays[f"{prefix}_feature"].astype(np.int32),
            threshold=arrays[f"{prefix}_threshold"].astype(np.float64),
            left=arrays[f"{prefix}_left"].astype(np.int32),
            right=arrays[f"{prefix}_right"].astype(np.int32),
            value=arrays[f"{prefix}_value"].astype(np.float64),
            roots=arrays[f"{prefix}_roots"].astype(np.int32),
            baseline=float(arrays[f"{prefix}_baseline"][0]),
            depth=depth,
            n_features=n_features,
        )
