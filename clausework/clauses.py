"""Turn model output (character spans) into Clause messages: verbatim text and page numbers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from contracts.internal.v1 import document_pb2
from contracts.v1 import extraction_pb2 as pb


@dataclass(frozen=True)
class ClauseSpan:
    """A clause as either extractor finds it: a category and a character span of the document text."""

    category: str  # exact CUAD name
    char_start: int  # offsets into the text the extractor was given, end exclusive
    char_end: int
    confidence: float  # [0, 1]
    answer: str  # normalized answer or ""


def page_of(parsed: document_pb2.ParsedDocument, char_offset: int) -> int:
    """The 1-based number of the page holding `char_offset` (a separator belongs to the page before)."""
    low, high = 0, len(parsed.pages) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if parsed.pages[middle].char_start <= char_offset:
            low = middle
        else:
            high = middle - 1
    return parsed.pages[low].number if parsed.pages else 0


def to_clauses(parsed: document_pb2.ParsedDocument, spans: Iterable[ClauseSpan]) -> list[pb.Clause]:
    """Clauses in document order; spans that fall outside the text or are empty are dropped."""
    text = parsed.text
    clauses = []
    for span in sorted(spans, key=lambda s: (s.char_start, s.char_end, s.category)):
        if not 0 <= span.char_start < span.char_end <= len(text):
            continue
        clauses.append(
            pb.Clause(
                category=span.category,
                text=text[span.char_start : span.char_end],
                page_start=page_of(parsed, span.char_start),
                page_end=page_of(parsed, span.char_end - 1),
                char_start=span.char_start,
                char_end=span.char_end,
                confidence=min(1.0, max(0.0, span.confidence)),
                answer=span.answer,
            )
        )
    return clauses
