"""Parse each PDF in a child process with a memory limit and a deadline, so no document can take the
parser down.

A PDF is a program for a complicated interpreter: a 1 MB file can inflate to gigabytes of page content
(a decompression bomb) or keep MuPDF busy for hours. In-process, such a document would exhaust the
service's memory and every other request with it; here only its own child dies, and the document
fails with DOCUMENT_TOO_COMPLEX instead of being retried.

Children are forked from a `forkserver` that has already imported PyMuPDF (without its layout
packages: clausework.pdf), so starting one costs milliseconds, and shares no threads or gRPC state with
the server. Those milliseconds are kept off the critical path: as many spare children wait as documents
are parsed at once (`start(spares=...)`, the parser's concurrency), a new one is started and an
answered one reaped on a background thread, and the child encodes the document once (the server stores
those bytes; nothing is decoded and re-encoded). A child still parses exactly one document and exits,
so no document sees another tenant's memory or limits.

Measured phases (`python -m bench --only parser`, 40 CUAD contracts, per document; BENCHMARKS.md):
moving the PDF in and the result out and waiting for a child cost ~1.5 ms; the child's own parse took
~38 ms against ~24 ms for parse_pdf in a long-lived loop (a fresh process faults its heap in and starts
with cold caches), which is the rest of the gap to in-process parsing. Before (throwaway timing
scripts, same machine, not in the repo): the spare was started and the finished child joined on the
calling thread (~7 ms each), one spare served a concurrency of 2, and each child forked from a 164 MB
forkserver that had loaded an ONNX layout model (78 MB now).
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import resource
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from clausework.pdf import InvalidDocument, OcrOptions, parse_pdf
from clausework.runtime.settings import MiB
from contracts.internal.v1 import document_pb2

log = logging.getLogger(__name__)

TOO_COMPLEX = "DOCUMENT_TOO_COMPLEX"
# Signals that mean MuPDF itself crashed on the document rather than was stopped.
_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE}


@dataclass(frozen=True)
class ParseLimits:
    # Memory a parse may use beyond the child's start-up footprint and the document itself.
    memory_bytes: int = 1024 * MiB
    # Wall time for one document, under the parse activity's 10-minute start-to-close timeout.
    timeout_seconds: float = 480.0


_context = multiprocessing.get_context("forkserver")
# The children run the code the forkserver loaded, whatever happens to the files on disk later.
# clausework.pdf first: it keeps PyMuPDF's layout model out of the forkserver (see there).
_context.set_forkserver_preload(["clausework.pdf", "pymupdf", "services.parser.sandbox"])


def _virtual_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _is_out_of_memory(error: BaseException) -> bool:
    # MuPDF reports a failed allocation as RuntimeError "code=2: malloc (N bytes) failed".
    text = str(error)
    return isinstance(error, MemoryError) or ("alloc" in text and "failed" in text)


def _child(connection: Connection, ocr: OcrOptions | None, limits: ParseLimits) -> None:
    """Runs in the child: wait for the PDF, parse it under the limits, send back the outcome."""
    # A backstop to the server's deadline should the server die first: the kernel ends the child.
    cpu_seconds = math.ceil(limits.timeout_seconds) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    try:
        data = connection.recv_bytes()
    except (EOFError, OSError):  # a spare that was never used: its server is gone
        return
    received = time.monotonic()  # CLOCK_MONOTONIC is system-wide: the parent can compare it with its own
    # From here the server decides when the parse ends: a SIGTERM to the whole process group (a local
    # stack's stop) must not kill the parse a graceful shutdown is waiting for. A spare still waiting
    # for its document, above, dies of it as it should.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # PyMuPDF keeps its own copy of the document, hence twice its size.
    memory = _virtual_size() + 2 * len(data) + limits.memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    try:
        parsed = parse_pdf(data, ocr)
        del data
        payload = parsed.SerializeToString()  # encoded once, here: the parent stores these bytes as they are
        connection.send(("ok", len(parsed.pages), len(parsed.text), time.monotonic() - received))
        connection.send_bytes(payload)
    except InvalidDocument as error:
        connection.send(("invalid", error.message, error.reason))
    except Exception as error:
        if _is_out_of_memory(error):
            connection.send(("memory",))
        else:
            connection.send(("error", f"{type(error).__name__}: {error}"))


def _spawn(ocr: OcrOptions | None, limits: ParseLimits) -> tuple[BaseProcess, Connection]:
    ours, theirs = _context.Pipe(duplex=True)
    child = _context.Process(target=_child, args=(theirs, ocr, limits), daemon=True)
    child.start()
    theirs.close()
    return child, ours


class _Spares:
    """Children started ahead of need, waiting for their document: up to `count` per (ocr, limits), so
    that as many documents as are parsed at once each find one. Started and reaped on a background
    thread, never on a parse's critical path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 1
        self._waiting: dict[tuple[OcrOptions | None, ParseLimits], list[tuple[BaseProcess, Connection]]] = {}
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parser-spares")

    def set_count(self, count: int) -> None:
        self._count = max(1, count)

    def take(self, ocr: OcrOptions | None, limits: ParseLimits) -> tuple[BaseProcess, Connection]:
        """A waiting spare for these options if one is still alive, else a child started now."""
        while True:
            with self._lock:
                waiting = self._waiting.get((ocr, limits))
                spare = waiting.pop() if waiting else None
            if spare is None:
                return _spawn(ocr, limits)
            if spare[0].is_alive():
                return spare
            _discard(spare)

    def refill_later(self, ocr: OcrOptions | None, limits: ParseLimits) -> None:
        with contextlib.suppress(RuntimeError):  # raised as the interpreter exits: no spare is needed then
            self._background.submit(self._refill, ocr, limits)

    def reap_later(self, child: BaseProcess, connection: Connection) -> None:
        """Collect a child that has answered, off the critical path: joined inline, its exit took ~7 ms
        per document (the phase timings in the module docstring)."""
        try:
            self._background.submit(_reap, child, connection)
        except RuntimeError:  # the interpreter is exiting
            _reap(child, connection)

    def _refill(self, ocr: OcrOptions | None, limits: ParseLimits) -> None:
        with self._lock:
            if len(self._waiting.get((ocr, limits), ())) >= self._count:
                return
        spare = _spawn(ocr, limits)
        with self._lock:
            waiting = self._waiting.setdefault((ocr, limits), [])
            kept = len(waiting) < self._count
            if kept:
                waiting.append(spare)
        if not kept:
            _discard(spare)

    def discard(self) -> None:
        with self._lock:
            spares = [spare for waiting in self._waiting.values() for spare in waiting]
            self._waiting = {}
        for spare in spares:
            _discard(spare)


def _reap(child: BaseProcess, connection: Connection) -> None:
    if child.is_alive():
        child.kill()  # it has sent its answer; nothing it still does matters
    child.join()
    connection.close()


def _discard(spare: tuple[BaseProcess, Connection]) -> None:
    child, connection = spare
    connection.close()  # a waiting spare sees EOF and exits
    child.join(5)
    if child.is_alive():
        child.kill()
        child.join()


_spares = _Spares()


def start(spares: int = 1) -> None:
    """Start the forkserver (it imports PyMuPDF) now rather than on the first document, and keep
    `spares` children waiting: one per document parsed at once."""
    forkserver.ensure_running()
    _spares.set_count(spares)


def discard_spares() -> None:
    """Stop the children waiting for a document (none is lost: they hold none)."""
    _spares.discard()


def _too_complex(why: str) -> InvalidDocument:
    return InvalidDocument(f"the PDF is too complex to parse: {why}", reason=TOO_COMPLEX)


@dataclass(frozen=True)
class ParsedPayload:
    """A parse's outcome as the child encoded it (a serialized ParsedDocument), with the counts the caller
    reports, so the parent neither decodes nor re-encodes the document."""

    payload: bytes
    page_count: int
    char_count: int
    # The child's own work (limits, parse, encoding), from receiving the PDF to sending the answer; the
    # rest of the caller's wall time is the sandbox's overhead (transfers, waiting for a child).
    child_seconds: float

    def document(self) -> document_pb2.ParsedDocument:
        return document_pb2.ParsedDocument.FromString(self.payload)


def parse_isolated(
    data: bytes, ocr: OcrOptions | None = None, limits: ParseLimits | None = None
) -> document_pb2.ParsedDocument:
    """parse_pdf in a child process: the same result or InvalidDocument, and DOCUMENT_TOO_COMPLEX when
    the document needs more memory or time than `limits` allow. Blocking; call it off the event loop."""
    return parse_isolated_payload(data, ocr, limits).document()


def parse_isolated_payload(
    data: bytes, ocr: OcrOptions | None = None, limits: ParseLimits | None = None
) -> ParsedPayload:
    """parse_isolated, returning the child's encoding of the document (what the parser service stores)."""
    limits = limits or ParseLimits()
    child, ours = _spares.take(ocr, limits)
    answered = False
    try:
        ours.send_bytes(data)
        _spares.refill_later(ocr, limits)  # the next document's child starts while this one parses
        if not ours.poll(limits.timeout_seconds):
            raise _too_complex(f"it takes longer than {limits.timeout_seconds:.0f} s")
        try:
            outcome = ours.recv()
            if outcome[0] == "ok":
                payload = ours.recv_bytes()
        except EOFError:  # the child died without (fully) answering
            child.join(5)
            code = child.exitcode
            log.warning("parser child died", extra={"exit_code": code})
            if code is not None and code < 0 and -code in _CRASH_SIGNALS:
                raise InvalidDocument(
                    f"the PDF crashed the parser ({signal.Signals(-code).name})", reason="CORRUPT_PDF"
                ) from None
            if code == -signal.SIGKILL:  # the kernel's OOM killer, most likely
                raise _too_complex(f"it needs more than {limits.memory_bytes // MiB} MiB of memory") from None
            if code == -signal.SIGXCPU:
                raise _too_complex(f"it takes longer than {limits.timeout_seconds:.0f} s") from None
            raise RuntimeError(f"the parser child exited with code {code}") from None
        answered = True
    finally:
        if answered:
            _spares.reap_later(child, ours)
        else:  # timed out or died: it must be gone before the caller hears why
            _reap(child, ours)
    kind = outcome[0]
    if kind == "ok":
        return ParsedPayload(payload, outcome[1], outcome[2], outcome[3])
    if kind == "invalid":
        raise InvalidDocument(outcome[1], reason=outcome[2])
    if kind == "memory":
        raise _too_complex(f"it needs more than {limits.memory_bytes // MiB} MiB of memory")
    raise RuntimeError(f"parsing failed in the child: {outcome[1]}")
