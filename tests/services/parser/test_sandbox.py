"""parse_isolated: the same answers as parse_pdf, and a bomb stopped by its child's limits, not ours."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from clausework.pdf import InvalidDocument, OcrOptions, find_tessdata, parse_pdf
from clausework.runtime.settings import MiB
from contracts.internal.v1 import document_pb2
from services.parser.sandbox import (
    TOO_COMPLEX,
    ParseLimits,
    discard_spares,
    parse_isolated,
    parse_isolated_payload,
    start,
)
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


def ignores_sigterm(pid: int) -> bool | None:
    """None for a child gone since it was listed (an earlier test's, reaped in the background)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    for line in status.splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return None


def test_the_child_outlives_a_sigterm_to_the_process_group() -> None:
    """A local stack stops the parser with SIGTERM to its whole group; the parse being drained goes on."""
    result: list[document_pb2.ParsedDocument] = []
    worker = threading.Thread(target=lambda: result.append(parse_isolated(corpus.whitespace_bomb(300))))
    worker.start()
    deadline = time.monotonic() + 20
    children: list[int] = []
    while not children and time.monotonic() < deadline:
        children = [c.pid for c in multiprocessing.active_children() if c.pid and ignores_sigterm(c.pid)]
        time.sleep(0.01)
    assert children, "the child never set up its signals"
    for pid in children:
        with contextlib.suppress(ProcessLookupError):  # an earlier test's child, answered and reaped since
            os.kill(pid, signal.SIGTERM)
    worker.join(60)
    assert result and "governed by" in result[0].text


@pytest.mark.skipif(find_tessdata() is None, reason="Tesseract not installed (make setup installs tesseract-ocr)")
def test_ocr_works_within_the_limits() -> None:
    parsed = parse_isolated(pdfs.image_only_pdf(dpi=200), OcrOptions(tessdata=find_tessdata()))
    assert "governed by" in " ".join(parsed.text.split()).lower()
    assert "+ocr:1" in parsed.parser


def waiting_spares() -> list[int]:
    """Children alive and not parsing (a parsing child ignores SIGTERM): the spares."""
    return [c.pid for c in multiprocessing.active_children() if c.pid and ignores_sigterm(c.pid) is False]


def spares_soon(until: Callable[[list[int]], bool], timeout: float = 20) -> list[int]:
    """The spares once `until` holds of them (they are started on a background thread, after the
    answer, and a used one is reaped there too), or whatever waits at the deadline."""
    deadline = time.monotonic() + timeout
    spares = waiting_spares()
    while not until(spares) and time.monotonic() < deadline:
        time.sleep(0.02)
        spares = waiting_spares()
    return spares


def test_the_next_document_goes_to_the_child_started_ahead() -> None:
    discard_spares()  # those other tests' limits left
    assert waiting_spares() == []
    parse_isolated(pdfs.contract_pdf())
    (spare,) = spares_soon(lambda spares: len(spares) == 1)
    parse_isolated(pdfs.contract_pdf())
    # the spare parsed the document and exited; another one waits for the next document
    assert spares_soon(lambda spares: len(spares) == 1 and spare not in spares) != [spare]
    assert len(waiting_spares()) == 1


def test_a_dead_spare_is_replaced() -> None:
    parse_isolated(pdfs.contract_pdf())
    spares = spares_soon(lambda spares: len(spares) >= 1)
    assert spares, "a spare waits after a parse"
    for pid in spares:
        with contextlib.suppress(ProcessLookupError):  # it may exit between the listing and the kill
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert "Governing Law" in parse_isolated(pdfs.contract_pdf()).text


def test_a_process_with_a_waiting_spare_exits_promptly() -> None:
    code = (
        "from services.parser.sandbox import parse_isolated; from tests import pdfs; "
        "parse_isolated(pdfs.contract_pdf())"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30


def test_a_spare_waits_for_each_document_parsed_at_once() -> None:
    """With spares=2 two concurrent parses both find a waiting child, and answered children are reaped
    (none is left behind as the parses go on)."""
    discard_spares()
    start(spares=2)
    try:
        with ThreadPoolExecutor(2) as pool:
            for _ in range(3):
                list(pool.map(lambda _: parse_isolated(pdfs.contract_pdf()), range(2)))
        deadline = time.monotonic() + 10  # spares are started, and children reaped, in the background
        while (len(waiting_spares()), len(multiprocessing.active_children())) != (2, 2):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(waiting_spares()) == 2
        assert len(multiprocessing.active_children()) == 2, "answered children are reaped"
    finally:
        discard_spares()
        start(spares=1)


def test_the_child_reports_its_own_work() -> None:
    began = time.monotonic()
    parsed = parse_isolated_payload(pdfs.contract_pdf())
    assert 0 < parsed.child_seconds < time.monotonic() - began
    assert parsed.document().text.count("Governing Law") >= 1
    assert parsed.page_count == len(parsed.document().pages)
