from __future__ import annotations

from clausework.clauses import ClauseSpan as Span
from clausework.clauses import page_of, to_clauses
from contracts.internal.v1 import document_pb2


def document() -> document_pb2.ParsedDocument:
    text = "page one text\n\npage two text\n\npage three"
    parsed = document_pb2.ParsedDocument(text=text)
    start = 0
    for number, chunk in enumerate(text.split("\n\n"), 1):
        parsed.pages.add(number=number, char_start=start, char_end=start + len(chunk))
        start += len(chunk) + 2
    return parsed


def test_page_of() -> None:
    parsed = document()
    assert [page_of(parsed, i) for i in (0, 12, 13, 14, 15, 28, 31, len(parsed.text) - 1)] == [1, 1, 1, 1, 2, 2, 3, 3]


def test_to_clauses_is_verbatim_sorted_and_clamped() -> None:
    parsed = document()
    clauses = to_clauses(
        parsed,
        [
            Span("Parties", 15, 30 + 4, 1.7, ""),
            Span("Document Name", 0, 8, -0.2, "page one"),
            Span("Bad", 30, 10, 0.5, ""),
            Span("Bad", 0, 10_000, 0.5, ""),
        ],
    )
    assert [c.category for c in clauses] == ["Document Name", "Parties"]
    first, second = clauses
    assert first.text == "page one" and first.answer == "page one" and first.confidence == 0.0
    assert (second.page_start, second.page_end) == (2, 3)
    assert second.text == parsed.text[15:34]
    assert second.confidence == 1.0
