"""parse_isolated: the same answers as parse_pdf, and a bomb stopped by its child's limits, not ours."""

from __future__ import annotations

import time

import pytest

from services.common.settings import MiB
from services.parser.pdftext import InvalidDocument, parse_pdf
from services.parser.sandbox import TOO_COMPLEX, ParseLimits, parse_isolated
from tests import corpus, pdfs


def test_same_result_as_in_process() -> None:
    data = pdfs.contract_pdf()
    assert parse_isolated(data) == parse_pdf(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [(pdfs.truncated_pdf(), "CORRUPT_PDF"), (pdfs.encrypted_pdf(), "ENCRYPTED_PDF"), (b"", "EMPTY_DOCUMENT")],
    ids=["truncated", "encrypted", "empty"],
)
def test_document_errors_keep_their_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidDocument) as raised:
        parse_isolated(data)
    assert raised.value.reason == reason


def test_memory_bomb_is_stopped_by_the_memory_limit() -> None:
    started = time.monotonic()
    with pytest.raises(InvalidDocument) as raised:
        parse_isolated(corpus.content_bomb(200), limits=ParseLimits(memory_bytes=256 * MiB))
    assert raised.value.reason == TOO_COMPLEX
    assert "256 MiB of memory" in raised.value.message
    assert time.monotonic() - started < 30


def test_slow_document_is_stopped_by_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(InvalidDocument) as raised:
        parse_isolated(corpus.whitespace_bomb(2000), limits=ParseLimits(timeout_seconds=1))
    assert raised.value.reason == TOO_COMPLEX
    assert "longer than 1 s" in raised.value.message
    assert time.monotonic() - started < 10


def test_a_limit_applies_to_its_document_only() -> None:
    with pytest.raises(InvalidDocument):
        parse_isolated(corpus.content_bomb(200), limits=ParseLimits(memory_bytes=256 * MiB))
    assert "Governing Law" in parse_isolated(pdfs.contract_pdf(), limits=ParseLimits(memory_bytes=256 * MiB)).text
