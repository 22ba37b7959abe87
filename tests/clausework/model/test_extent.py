"""The span-extent model: its rows, its choice, and `EmbeddedExtractor.extend` with given trees."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from clausework.model.embedded import EmbeddedExtractor
from clausework.model.extent import EXTENT_COLUMNS, EXTENTS, NO_NEIGHBOUR, Extent, choose, extent_rows, possible
from clausework.model.trees import Trees
from tests.clausework.model.test_embedded import CONTRACT

TEXT = "Lead-in text follows:\n(a) first item of the list;\n(b) second item.\nNext."
BOUNDS = [(0, 21), (22, 49), (50, 66), (67, 72)]


def column(name: str) -> int:
    return EXTENT_COLUMNS.index(name)


def one_split(feature: str, above: float = 3.0) -> Trees:
    """One stump: raw -3 while x[feature] <= 0.5, `above` beyond it."""
    inf = np.inf
    return Trees(
        feature=np.array([column(feature), 0, 0], dtype=np.int32),
        threshold=np.array([0.5, inf, inf]),
        left=np.array([1, 1, 2], dtype=np.int32),
        right=np.array([2, 1, 2], dtype=np.int32),
        value=np.array([0.0, -3.0, above]),
        roots=np.array([0], dtype=np.int32),
        baseline=0.0,
        depth=1,
        n_features=len(EXTENT_COLUMNS),
    )


def test_rows_describe_each_extent_and_its_joins() -> None:
    logits = np.array([[1.0], [2.0], [3.0], [4.0]], dtype=np.float32)
    rows = extent_rows(TEXT, 7, 0, 1, 0.6, 10.0, BOUNDS, logits)
    assert rows.shape == (len(EXTENTS), len(EXTENT_COLUMNS))
    assert rows[:, column("before")].tolist() == [0, 1, 0, 1]
    assert rows[:, column("after")].tolist() == [0, 0, 1, 1]
    assert rows[0, column("previous logit")] == 1.0 and rows[0, column("next logit")] == 3.0
    assert rows[0, column("second previous logit")] == NO_NEIGHBOUR
    assert rows[0, column("ends with ; or :")] == 1 and rows[0, column("previous ends with :")] == 1
    assert rows[0, column("next starts with an enumerator")] == 1
    assert rows[:, column("lowest logit taken in")].tolist() == [2.0, 1.0, 3.0, 1.0]
    assert (
        rows[3, column("log extent words")] > rows[1, column("log extent words")] > rows[0, column("log words")] - 1e-9
    )


def test_the_first_and_last_units_have_no_extent_beyond_the_text() -> None:
    assert possible(0, 4) == [True, False, True, False]
    assert possible(3, 4) == [True, True, False, False]
    assert possible(0, 1) == [True, False, False, False]


def test_a_longer_extent_must_win_by_the_margin_and_be_possible() -> None:
    p = np.array([0.5, 0.9, 0.58, 0.95])
    assert choose(p, [True, True, True, True], 0.1) == 3
    assert choose(p, [True, True, True, False], 0.1) == 1
    assert choose(p, [True, False, True, False], 0.1) == 0, "0.58 is not 0.1 above 0.5"
    assert choose(p, [True, False, True, False], 0.05) == 2


@pytest.fixture(scope="module")
def extractor() -> EmbeddedExtractor:
    return EmbeddedExtractor.load()


def with_extent(extractor: EmbeddedExtractor, trees: Trees, margin: float = 0.0) -> EmbeddedExtractor:
    changed = EmbeddedExtractor.__new__(EmbeddedExtractor)
    changed.__dict__.update(extractor.__dict__)
    changed.extent = Extent(trees, margin, {c: 30.0 for c in extractor.categories})
    return changed


def test_extend_grows_a_unit_into_the_next_one_when_the_trees_say_so(extractor: EmbeddedExtractor) -> None:
    evidence = extractor.evidence(CONTRACT)
    decided = extractor.decide(extractor.assess(evidence))
    law = next(s for s, _ in decided if s.category == "Governing Law")
    index = evidence.unit_of[law.start]
    grown = with_extent(extractor, one_split("after")).extend(CONTRACT, evidence, decided)
    [(after, p)] = [(s, p) for s, p in grown if s.category == "Governing Law"]
    assert (after.start, after.end) == (law.start, evidence.unit_bounds[index + 1][1])
    assert p == next(p for s, p in decided if s is law), "the confidence stays"
    assert CONTRACT[after.start : after.end].split()[-1] == CONTRACT[law.start : after.end].split()[-1]
    for (s, _), (t, _) in zip(decided, grown, strict=True):  # names, dates and titles never grow
        if s.group != "unit":
            assert s == t
    same = with_extent(extractor, one_split("after"), margin=0.999).extend(CONTRACT, evidence, decided)
    assert same == decided, "below the margin nothing grows"


def test_extend_never_grows_onto_another_kept_span_of_the_category(extractor: EmbeddedExtractor) -> None:
    evidence = extractor.evidence(CONTRACT)
    decided = extractor.decide(extractor.assess(evidence))
    law, p = next((s, p) for s, p in decided if s.category == "Governing Law")
    index = evidence.unit_of[law.start]
    start, end = evidence.unit_bounds[index + 1]
    neighbour = replace(law, start=start, end=end)
    crowded = [*decided, (neighbour, p / 2)]
    grown = with_extent(extractor, one_split("after")).extend(CONTRACT, evidence, crowded)
    assert (law, p) in grown, "the growth would overlap the kept neighbour"


def test_extract_goes_through_the_extent_model(extractor: EmbeddedExtractor) -> None:
    """A model that bypassed `extend` would give the same clauses whatever its extent trees say."""
    never = with_extent(extractor, one_split("after", above=-3.0)).extract(CONTRACT)
    always = with_extent(extractor, one_split("after")).extract(CONTRACT)
    assert never != always
    plain = EmbeddedExtractor.__new__(EmbeddedExtractor)
    plain.__dict__.update(extractor.__dict__)
    plain.extent = None
    assert never == plain.extract(CONTRACT), "trees that never prefer growth change nothing"


def test_the_shipped_model_has_its_extent_model(extractor: EmbeddedExtractor) -> None:
    extent = extractor.extent
    assert extent is not None, "model 2.1.0 ships an extent model"
    assert extent.margin == extractor.metadata["extent"]["margin"]
    assert extent.trees.n_features == len(EXTENT_COLUMNS)
    assert set(extent.typical_words) == set(extractor.categories)
