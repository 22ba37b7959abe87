"""training.crossval's ablations switch off parts the shipped model has (so each measures something)."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from clausework.model.embedded import EmbeddedExtractor
from training.crossval import ABLATIONS


def test_each_ablation_switches_off_parts_the_shipped_model_has() -> None:
    model = EmbeddedExtractor.load()
    for ablation in ABLATIONS:
        for part in ablation.parts:
            assert getattr(model, part) is not None, (ablation.flag, part)
    assert len({a.name for a in ABLATIONS}) == len(ABLATIONS)
