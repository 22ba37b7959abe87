"""Chunks and passages cut on clause boundaries and cover the text; retrieval plans stay within budget;
spans seen by two chunks merge into one."""

from __future__ import annotations

import itertools
import re

import pytest

from clausework.chunking import KeywordSelector, Piece, chunk_text, passages, top_passages
from clausework.clauses import ClauseSpan
from clausework.llm.extractor import OpenAIExtractor
from clausework.llm.grounding import merge_spans
from clausework.llm.planner import Planner
from clausework.llm.prompts import load_categories

NBSP = "\xa0"
CLAUSES = {
    "Governing Law": "This Agreement shall be governed by and construed in accordance with the laws of Texas.",
    "Audit Rights": "Licensor may audit the books and records of Licensee once per calendar year on notice.",
    "Insurance": "Supplier shall maintain commercial general liability insurance with coverage of at least $1,000,000.",
    "Anti-Assignment": "Neither party may assign this Agreement without the prior written consent of the other party.",
}
FILLER = (
    "The parties shall cooperate in good faith with respect to the performance of the services described herein "
    "and shall keep each other reasonably informed of the progress of the work."
)


def contract(sections: int = 24) -> str:
    """A parser-shaped contract: numbered sections, wrapped lines, non-breaking spaces."""
    clauses = list(CLAUSES.values())
    parts = ["MASTER SERVICES AGREEMENT\nThis Agreement is made between Acme Corp. and Beta LLC.\n"]
    for number in range(1, sections + 1):
        body = f"{FILLER} {FILLER}"
        if number % 6 == 0:
            body += " " + clauses[(number // 6 - 1) % len(clauses)]
        parts.append(f"{number}. SECTION {number}. " + body.replace(" ", NBSP) + "\n")
    return "".join(parts)


def test_chunks_cover_the_text_within_size_and_overlap() -> None:
    text = contract()
    chunks = chunk_text(text, chunk_chars=2000, overlap_chars=300)
    assert len(chunks) > 3
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for previous, current in itertools.pairwise(chunks):
        assert current.start < previous.end, "consecutive chunks overlap"
        assert previous.end - current.start >= 300
        assert current.start > previous.start
    assert all(c.end - c.start <= 2000 for c in chunks)


def test_chunks_end_on_section_starts_when_there_is_one() -> None:
    text = contract()
    chunks = chunk_text(text, chunk_chars=2000, overlap_chars=300)
    section = re.compile(r"\d+\. SECTION")
    for chunk in chunks[:-1]:
        assert section.match(text, chunk.end), repr(text[chunk.end - 20 : chunk.end + 20])
    for chunk in chunks[1:]:
        assert section.match(text, chunk.start), repr(text[chunk.start : chunk.start + 20])


def test_chunking_without_boundaries_still_progresses() -> None:
    text = "x" * 5000
    chunks = chunk_text(text, chunk_chars=1000, overlap_chars=100)
    assert chunks[0].start == 0 and chunks[-1].end == 5000
    assert all(0 < c.end - c.start <= 1000 for c in chunks)


def test_short_text_is_one_chunk() -> None:
    assert chunk_text("short", 1000, 100) == [(0, 5)]
    assert chunk_text("", 1000, 100) == []
    with pytest.raises(ValueError):
        chunk_text("abc", 0, 0)


def test_passages_cover_all_words_in_order_within_bounds() -> None:
    text = contract()
    pieces = passages(text, min_chars=300, max_chars=1500)
    assert all(p.end - p.start <= 1500 for p in pieces)
    assert all(a.end <= b.start for a, b in itertools.pairwise(pieces))
    covered = "".join(text[p.start : p.end] for p in pieces)
    assert "".join(covered.split()) == "".join(text.split())
    # Headings are glued to their section, not left alone.
    assert all(p.end - p.start >= 300 for p in pieces[:-1])


def joined(texts: list[str]) -> tuple[str, list[Piece]]:
    """The texts as paragraphs of one document, and where each one lies in it."""
    pieces, start = [], 0
    for text in texts:
        pieces.append(Piece(start, start + len(text)))
        start += len(text) + 2
    return "\n\n".join(texts), pieces


def test_keyword_selector_ranks_the_matching_clause_first() -> None:
    categories = load_categories()
    selector = KeywordSelector({c.name: c.description for c in categories})
    texts = [FILLER, *CLAUSES.values(), FILLER]
    text, pieces = joined(texts)
    scores = selector(text, pieces, list(CLAUSES))
    for row, (name, clause) in zip(scores, CLAUSES.items(), strict=True):
        best = max(range(len(texts)), key=lambda i: row[i])
        assert texts[best] == clause, name


def test_top_passages_takes_the_top_k_positive_and_forced_positions() -> None:
    scores = [0.0, 5.0, 1.0, 3.0, 0.5, 4.0]
    assert top_passages(scores, 2) == [1, 5]
    assert top_passages(scores, 2, positions=[0]) == [0, 1, 5]
    assert top_passages([0.0, 0.0], 3) == []


@pytest.fixture
def planner() -> Planner:
    categories = load_categories()
    selector = KeywordSelector({c.name: c.description for c in categories})
    return Planner(categories, selector, chunk_chars=3000, top_k=2)


def test_short_text_is_one_request_with_every_category(planner: Planner) -> None:
    text = "This Agreement shall be governed by the laws of Texas."
    plan = planner.plan(text)
    assert len(plan) == 1
    assert len(plan[0].categories) == 41
    assert plan[0].pieces == ((0, len(text)),)


def test_retrieval_plan_stays_within_budget_and_reaches_the_clauses(planner: Planner) -> None:
    text = contract(60)
    assert len(text) > 3 * planner.chunk_chars
    plan = planner.plan(text, "retrieval")
    for request in plan:
        names = [c.name for c in request.categories]
        assert len(names) == len(set(names))
        assert sum(p.end - p.start for p in request.pieces) <= planner.chunk_chars
        assert list(request.pieces) == sorted(request.pieces)
    # Every clause planted in the text reaches a request that asks its category.
    for name, clause in CLAUSES.items():
        start = text.replace(NBSP, " ").index(clause)
        sent = [p for r in plan if name in [c.name for c in r.categories] for p in r.pieces]
        assert any(p.start <= start < p.end for p in sent), name
    # Front matter always sees the opening passage.
    opening = [r for r in plan if "Document Name" in [c.name for c in r.categories]]
    assert opening and opening[0].pieces[0].start == 0
    # And the whole point: fewer characters than the contract times the number of chunks.
    sent_chars = sum(p.end - p.start for r in plan for p in r.pieces)
    chunks = planner.plan(text, "chunks")
    assert sent_chars < sum(p.end - p.start for r in chunks for p in r.pieces)


def test_auto_takes_retrieval_only_when_it_is_much_cheaper(planner: Planner) -> None:
    long_text = contract(60)
    retrieval, chunks = planner.plan(long_text, "retrieval"), planner.plan(long_text, "chunks")
    assert planner.prompt_chars(long_text, retrieval) <= 0.5 * planner.prompt_chars(long_text, chunks)
    assert planner.plan(long_text) == retrieval  # default strategy: auto
    medium = contract(8)
    assert len(planner.plan(medium, "chunks")) > 1
    assert planner.prompt_chars(medium, planner.plan(medium, "retrieval")) > 0.5 * planner.prompt_chars(
        medium, planner.plan(medium, "chunks")
    )
    assert planner.plan(medium) == planner.plan(medium, "chunks")


def test_a_category_with_many_passages_spills_into_several_requests() -> None:
    extractor = OpenAIExtractor(base_url="http://127.0.0.1:9/v1", api_key="", model="p", chunk_chars=1000, top_k=8)
    text = contract(60)
    plan = extractor.plan(text, "retrieval")
    audit = [r for r in plan if "Audit Rights" in [c.name for c in r.categories]]
    assert len(audit) >= 2
    assert all(sum(p.end - p.start for p in r.pieces) <= 1000 or len(r.pieces) == 1 for r in plan)


def test_merge_unites_overlapping_spans_of_a_category_only() -> None:
    spans = [
        ClauseSpan("Governing Law", 100, 200, 0.6, ""),
        ClauseSpan("Governing Law", 150, 260, 0.9, "Texas"),
        ClauseSpan("Governing Law", 100, 200, 0.7, "texas"),  # exact duplicate from the overlap
        ClauseSpan("Governing Law", 260, 300, 0.5, ""),  # touching, not overlapping: a separate clause
        ClauseSpan("Insurance", 120, 180, 0.4, "Yes"),  # other category, same place
    ]
    merged = merge_spans(spans)
    assert merged == [
        ClauseSpan("Governing Law", 100, 260, 0.9, "Texas"),
        ClauseSpan("Insurance", 120, 180, 0.4, "Yes"),
        ClauseSpan("Governing Law", 260, 300, 0.5, ""),
    ]
