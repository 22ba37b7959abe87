"""The committed embedded model on a small synthetic contract: right clauses, verbatim spans, answers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clausework.chunking import Piece
from clausework.clauses import ClauseSpan
from clausework.model.embedded import DENSE_TOP, MODEL_DIR, EmbeddedExtractor, EmbeddedSelector
from clausework.model.second_stage import NO_DENSE, DenseScore
from clausework.model.trees import Trees
from tests.conftest import ROOT

CONTRACT = (
    "EXHIBIT 10.1\n"
    "DISTRIBUTION AGREEMENT\n"
    "This Distribution Agreement (the \u201cAgreement\u201d) is entered into as of March\xa015, 2019 (the\n"
    "\u201cEffective Date\u201d) by and between Northwind Traders, Inc., a Delaware corporation\n"
    "(\u201cNorthwind\u201d), and "
    "Contoso Pharmaceuticals Ltd., a company organized under the laws of Ireland (\u201cDistributor\u201d).\n"
    "1. APPOINTMENT.  Northwind hereby appoints Distributor as its exclusive distributor of the Products in\n"
    "the Territory, and Distributor accepts such appointment.\n"
    "2. TERM.  This Agreement shall commence on the Effective Date and shall continue for a period of three (3)\n"
    "years. Thereafter, this Agreement shall automatically renew for successive one (1) year periods unless\n"
    "either party gives written notice of non-renewal at least ninety (90) days prior to the end of the then\n"
    "current term.\n"
    "3. AUDIT.  Northwind shall have the right, upon fifteen (15) days prior written notice, to inspect and\n"
    "audit the books and records of Distributor relating to the sale of Products.\n"
    "4. ASSIGNMENT.  Neither party may assign this Agreement or any of its rights hereunder without the\n"
    "prior written consent of the other party.\n"
    "5. GOVERNING LAW.  This Agreement shall be governed by and construed in accordance with the laws of\n"
    "the State of New York, without regard to its conflict of laws principles.\n"
    "6. INSURANCE.  Distributor shall maintain, at its own expense, product liability insurance with\n"
    "coverage of not less than $5,000,000 per occurrence.\n"
)


@pytest.fixture(scope="module")
def extractor() -> EmbeddedExtractor:
    return EmbeddedExtractor.load()


@pytest.fixture(scope="module")
def spans(extractor: EmbeddedExtractor) -> list[ClauseSpan]:
    return extractor.extract(CONTRACT)


def best(spans: list[ClauseSpan], category: str) -> ClauseSpan:
    found = [s for s in spans if s.category == category]
    assert found, f"no {category!r} in {sorted({s.category for s in spans})}"
    return max(found, key=lambda s: s.confidence)


def test_artefact_is_committed_small_and_versioned(extractor: EmbeddedExtractor) -> None:
    for name in ("model.npz", "metadata.json"):
        path = MODEL_DIR / name
        assert path.exists() and path.stat().st_size < 5_000_000
    assert extractor.model_name.startswith("embedded/cuad-sparse-lr@")
    assert len(extractor.metadata["training"]["labels_sha256"]) == 64
    assert len(extractor.categories) == 41


def test_spans_are_verbatim_sorted_and_calibrated(spans: list[ClauseSpan], extractor: EmbeddedExtractor) -> None:
    assert spans
    assert spans == sorted(spans, key=lambda s: (s.char_start, s.char_end, s.category))
    for span in spans:
        assert span.category in extractor.categories
        assert 0 <= span.char_start < span.char_end <= len(CONTRACT)
        assert CONTRACT[span.char_start : span.char_end].strip() == CONTRACT[span.char_start : span.char_end]
        assert 0.0 <= span.confidence <= 1.0


def test_finds_governing_law_with_jurisdiction(spans: list[ClauseSpan]) -> None:
    law = best(spans, "Governing Law")
    text = CONTRACT[law.char_start : law.char_end]
    assert text.startswith("This Agreement shall be governed by")
    assert "State of New York" in text
    assert law.answer == "New York"
    assert law.confidence > 0.5


def test_finds_short_span_categories(spans: list[ClauseSpan]) -> None:
    date = best(spans, "Agreement Date")
    assert CONTRACT[date.char_start : date.char_end] == "March\xa015, 2019"
    assert date.answer == "3/15/2019"
    title = best(spans, "Document Name")
    assert CONTRACT[title.char_start : title.char_end] == "DISTRIBUTION AGREEMENT"
    parties = {CONTRACT[s.char_start : s.char_end]: s.answer for s in spans if s.category == "Parties"}
    assert parties["Northwind Traders, Inc."] == 'Northwind Traders, Inc. ("Northwind")'
    assert parties["Contoso Pharmaceuticals Ltd."] == 'Contoso Pharmaceuticals Ltd. ("Distributor")'
    if "Distributor" in parties:  # an alias on its own answers with the party it names
        assert parties["Distributor"] == parties["Contoso Pharmaceuticals Ltd."]


def test_finds_term_clauses_with_answers(spans: list[ClauseSpan]) -> None:
    renewal = best(spans, "Renewal Term")
    assert "automatically renew" in CONTRACT[renewal.char_start : renewal.char_end]
    assert renewal.answer == "successive 1 year"
    for category in ("Anti-Assignment", "Audit Rights", "Insurance"):
        assert best(spans, category).answer == "Yes"


def test_nothing_in_text_without_clauses(extractor: EmbeddedExtractor) -> None:
    assert extractor.extract("") == []
    spans = extractor.extract("The weather was pleasant and the river ran quietly past the old mill.")
    assert not [s for s in spans if s.confidence > 0.5]


def test_offsets_survive_odd_whitespace(extractor: EmbeddedExtractor) -> None:
    padded = "\xa0" * 40 + CONTRACT.replace(" ", "\xa0", 200)
    for span in extractor.extract(padded):
        piece = padded[span.char_start : span.char_end]
        assert piece and not piece[0].isspace() and not piece[-1].isspace()


def test_load_from_explicit_dir_matches_default(spans: list[ClauseSpan]) -> None:
    assert EmbeddedExtractor.load(Path(MODEL_DIR)).extract(CONTRACT) == spans


def test_import_does_not_pull_pymupdf() -> None:
    code = "import sys, clausework.model.embedded as m; m.EmbeddedExtractor.load(); print('pymupdf' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_selector_ranks_the_passage_holding_the_clause_first(extractor: EmbeddedExtractor) -> None:
    text = CONTRACT
    pieces = [Piece(m.start(), m.end()) for m in re.finditer(r"[^\n]+(?:\n(?!\d\.)[^\n]+)*", text)]
    holding = {
        "Governing Law": "5. GOVERNING LAW",
        "Audit Rights": "3. AUDIT",
        "Anti-Assignment": "4. ASSIGNMENT",
        "Insurance": "6. INSURANCE",
    }
    scores = EmbeddedSelector(extractor)(text, pieces, list(holding))
    for row, (category, heading) in zip(scores, holding.items(), strict=True):
        best = max(range(len(pieces)), key=lambda i: row[i])
        assert text[pieces[best].start :].startswith(heading), category
        assert all(0.0 <= s <= 1.0 for s in row)


def test_selector_skips_categories_the_model_finds_absent(extractor: EmbeddedExtractor) -> None:
    pieces = [Piece(0, len(CONTRACT))]
    absent, present = "Source Code Escrow", "Governing Law"
    everything = EmbeddedSelector(extractor)(CONTRACT, pieces, [absent, present])
    gated = EmbeddedSelector(extractor, min_presence=0.5)(CONTRACT, pieces, [absent, present])
    assert everything[0][0] > 0, "without a presence floor every category keeps its best passage"
    assert gated == [[0.0], everything[1]]


def _with_second_stage(
    extractor: EmbeddedExtractor, *, presence: Trees | None = None, reranker: Trees | None = None
) -> EmbeddedExtractor:
    """The shipped model with parts of its second stage replaced (the arrays are shared, not copied)."""
    from dataclasses import replace

    changed = EmbeddedExtractor.__new__(EmbeddedExtractor)
    changed.__dict__.update(extractor.__dict__)
    stage = extractor.second_stage
    assert stage is not None
    changed.second_stage = replace(stage, presence=presence or stage.presence, reranker=reranker or stage.reranker)
    return changed


def _constant(trees: Trees, raw: float) -> Trees:
    from dataclasses import replace

    return replace(trees, roots=trees.roots[:0], baseline=raw)


def test_the_shipped_model_decides_with_its_second_stage(extractor: EmbeddedExtractor) -> None:
    """Presence comes from the stacked model and unit probabilities from the reranker blend: a
    model that bypassed either would not change its output when they change."""
    stage = extractor.second_stage
    assert stage is not None and extractor.metadata["second_stage"]["detect"] == stage.detect
    assert extractor.extract(CONTRACT)
    nothing_present = _with_second_stage(extractor, presence=_constant(stage.presence, -30.0))
    assert nothing_present.extract(CONTRACT) == []
    evidence = extractor.evidence(CONTRACT)
    first, _ = extractor.first_stage(evidence)
    sure = _with_second_stage(extractor, reranker=_constant(stage.reranker, 30.0))
    reranked = sure.assess(evidence).probabilities
    assert reranked["Governing Law"] == pytest.approx(
        [stage.blend + (1 - stage.blend) * p for p in first["Governing Law"]]
    )
    assert reranked["Parties"] == first["Parties"]  # span categories keep their calibrated probability
    assert extractor.assess(evidence).probabilities["Governing Law"] != first["Governing Law"]


def test_the_shipped_model_reranks_with_dense_scores(extractor: EmbeddedExtractor) -> None:
    """Each reranked category's DENSE_TOP best units are embedded and their dense scores reach the
    reranker: flipping the dense regressions, or scrambling the label bank, changes the reranked
    probabilities; a model that bypassed either would not change."""
    from dataclasses import replace

    dense = extractor.dense
    assert dense is not None and extractor.encoder is not None and len(dense.categories) >= 10
    evidence = extractor.evidence(CONTRACT)
    for category in extractor.reranked_categories:
        assert all(evidence.unit_of[s.start] in evidence.embeddings for s in evidence.scored[category][:DENSE_TOP])
    scores = extractor.dense_scores(evidence)["Governing Law"]
    assert all(d.logit != NO_DENSE and d.nearest != NO_DENSE for d in scores[:DENSE_TOP])
    assert set(scores[DENSE_TOP:]) == {DenseScore()}
    law = [d.logit for d in scores]
    # the dense regression, alone, prefers the governing-law sentence among the three it scores
    governing = next(
        i for i, s in enumerate(evidence.scored["Governing Law"]) if "governed by" in CONTRACT[s.start : s.end]
    )
    assert governing < DENSE_TOP and law[governing] == max(law[:DENSE_TOP])
    # and it is the one closest to a governing-law clause of the training contracts
    assert dense.bank_categories and scores[governing].nearest == max(d.nearest for d in scores[:DENSE_TOP]) > 0.5
    flipped = EmbeddedExtractor.__new__(EmbeddedExtractor)
    flipped.__dict__.update(extractor.__dict__)
    flipped.dense = replace(dense, weights=-dense.weights, bias=-dense.bias)
    ours = extractor.assess(evidence).probabilities
    theirs = flipped.assess(evidence).probabilities
    assert any(ours[c] != theirs[c] for c in dense.categories)
    # the label bank reaches it too: with the labels of one category in another's place, it changes
    shuffled = EmbeddedExtractor.__new__(EmbeddedExtractor)
    shuffled.__dict__.update(extractor.__dict__)
    shuffled.dense = replace(dense, bank=dense.bank[::-1].copy())
    theirs = shuffled.assess(evidence).probabilities
    assert any(ours[c] != theirs[c] for c in dense.bank_categories)


def test_an_artefact_of_an_older_training_is_refused_with_a_clear_message(extractor: EmbeddedExtractor) -> None:
    """Model 2.2.0's artefact has dense weights but no label bank; its reranker expects fewer columns."""
    metadata = {
        **extractor.metadata,
        "dense": {k: v for k, v in extractor.metadata["dense"].items() if k != "bank_categories"},
    }
    with np.load(MODEL_DIR / "model.npz", allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    with pytest.raises(ValueError, match=r"older training .* make train"):
        EmbeddedExtractor(arrays, metadata)
