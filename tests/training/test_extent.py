"""The extent model's training rows: one block per candidate, labelled by what the scorer would count."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from clausework.model.embedded import EmbeddedExtractor
from clausework.model.extent import EXTENT_COLUMNS, EXTENTS
from tests.clausework.model.test_embedded import CONTRACT
from training.data import Contract
from training.extent import extent_training_rows, fit_extent
from training.model import Oof, _matches

CATEGORY = "Expiration Date"
UNIT = 5  # "This Agreement shall commence ... three (3) years.", the model's best Expiration Date unit


def contract(number: int, extractor: EmbeddedExtractor, gold_units: int) -> Oof:
    """CONTRACT with its Expiration Date label running over `gold_units` units from UNIT on (the next
    unit, the renewal sentence, is longer than UNIT: a two-unit label is not matched by UNIT alone)."""
    evidence = extractor.evidence(CONTRACT)
    start, end = evidence.unit_bounds[UNIT][0], evidence.unit_bounds[UNIT + gold_units - 1][1]
    item = Contract(f"c{number}", f"FILER{number}_x", CONTRACT, {CATEGORY: [CONTRACT[start:end]]}, {})
    return Oof(item, evidence, _matches(item, evidence.scored))


LOGIT = EXTENT_COLUMNS.index("logit")


@pytest.fixture(scope="module")
def extractor() -> EmbeddedExtractor:
    return EmbeddedExtractor.load()


def test_rows_are_labelled_by_which_extent_matches(extractor: EmbeddedExtractor) -> None:
    oof = [contract(0, extractor, 1), contract(1, extractor, 2)]
    probabilities = [extractor.assess(o.evidence).probabilities for o in oof]
    rows, typical = extent_training_rows(oof, [0, 1], probabilities, extractor)
    n = len(EXTENTS)
    blocks = rows.y.reshape(-1, n)
    assert len(rows.x) == len(rows.y) == len(rows.allowed) == len(rows.fold)
    evidence = extractor.evidence(CONTRACT)
    logit = evidence.unit_logits[UNIT, extractor.unit_categories.index(CATEGORY)]
    best = [block for b, block in enumerate(blocks) if rows.x[b * n, LOGIT] == pytest.approx(logit)]
    first_one, first_two = best
    assert first_one[0], "a one-unit label: the unit alone matches"
    # a two-unit label: only extents with the next unit match (the previous one, "2. TERM.", is two words)
    assert first_two.tolist() == [False, False, True, True]
    assert typical[CATEGORY] > 0


def test_the_fitted_model_reports_what_it_gains(extractor: EmbeddedExtractor) -> None:
    oof = [contract(i, extractor, 1 + i % 2) for i in range(12)]
    probabilities = [extractor.assess(o.evidence).probabilities for o in oof]
    arrays, metadata = fit_extent(oof, [i % 3 for i in range(12)], probabilities, extractor)
    counts = metadata["inner_cv"]
    assert counts["match_as_units"] <= counts["match_with_the_best_extent"]
    assert counts["match_as_chosen"] <= counts["match_with_the_best_extent"]
    assert {"extent_feature", "extent_shape"} <= set(arrays) and np.isfinite(metadata["margin"])


def test_the_ceiling_picks_the_first_extent_that_matches(extractor: EmbeddedExtractor) -> None:
    from training.extent_ceiling import NINE, matching_extent

    one, two = contract(0, extractor, 1), contract(1, extractor, 2)
    [law] = [s for s in one.evidence.scored[CATEGORY] if one.evidence.unit_of[s.start] == UNIT]
    assert matching_extent(one.contract, one.evidence, law, EXTENTS) == 0, "the unit alone matches"
    assert EXTENTS[matching_extent(two.contract, two.evidence, law, EXTENTS)] == (0, 1)
    assert NINE[matching_extent(two.contract, two.evidence, law, NINE)] == (0, 1)
