"""The set-aside fold of training.crossval / training.baseline (--holdout-fold)."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from training.crossval import check_holdout


def test_development_runs_may_not_score_the_set_aside_fold() -> None:
    check_holdout(None, 5, [4])  # nothing set aside
    check_holdout(4, 5, None)  # a full run scores it, separately
    check_holdout(4, 5, [0, 1, 2, 3])
    with pytest.raises(SystemExit, match="set aside"):
        check_holdout(4, 5, [1, 4])
    with pytest.raises(SystemExit, match=r"folds are 0\.\.4"):
        check_holdout(5, 5, None)
