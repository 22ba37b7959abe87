"""Parse each PDF in a child process with a memory limit and a deadline, so no document can take the
parser down.

A PDF is a program for a complicated interpreter: a 1 MB file can inflate to gigabytes of page content
(a decompression bomb) or keep MuPDF busy for hours. In-process, such a document would exhaust the
service's memory and every other request with it; here only its own child dies, and the document
fails with DOCUMENT_TOO_COMPLEX instead of being retried.

Children are forked from a `forkserver` that has already imported PyMuPDF, so starting one costs
milliseconds, not the 1.4 s import, and shares no threads or gRPC state with the server. Those
milliseconds are taken off the critical path too: a spare child is started while the current one
parses, and the next document goes to it (`python -m bench --only parser`: 422 -> 530 pages/s). A child
still parses exactly one document and exits, so no document sees another's memory or limits.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import resource
import signal
import threading
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
_context.set_forkserver_preload(["pymupdf", "clausework.pdf", "services.parser.sandbox"])


def start() -> None:
    """Start the forkserver (it imports PyMuPDF, ~1.4 s) now rather than on the first document."""
    forkserver.ensure_running()


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
        connection.send(("ok", parsed.SerializeToString()))
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
    """Children started ahead of need, waiting for their document: at most one per (ocr, limits)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[tuple[OcrOptions | None, ParseLimits], tuple[BaseProcess, Connection]] = {}

    def take(self, ocr: OcrOptions | None, limits: ParseLimits) -> tuple[BaseProcess, Connection]:
        """The spare for these options if it is still alive, else a child started now."""
        with self._lock:
            spare = self._waiting.pop((ocr, limits), None)
        if spare is not None:
            if spare[0].is_alive():
                return spare
            _discard(spare)
        return _spawn(ocr, limits)

    def refill(self, ocr: OcrOptions | None, limits: ParseLimits) -> None:
        with self._lock:
            if (ocr, limits) in self._waiting:
                return
        spare = _spawn(ocr, limits)
        with self._lock:
            kept = self._waiting.setdefault((ocr, limits), spare) is spare
        if not kept:  # another thread refilled first
            _discard(spare)

    def discard(self) -> None:
        with self._lock:
            spares, self._waiting = list(self._waiting.values()), {}
        for spare in spares:
            _discard(spare)


def _discard(spare: tuple[BaseProcess, Connection]) -> None:
    child, connection = spare
    connection.close()  # a waiting spare sees EOF and exits
    child.join(5)
    if child.is_alive():
        child.kill()
        child.join()


_spares = _Spares()


def discard_spares() -> None:
    """Stop the children waiting for a document (none is lost: they hold none)."""
    _spares.discard()


def _too_complex(why: str) -> InvalidDocument:
    return InvalidDocument(f"the PDF is too complex to parse: {why}", reason=TOO_COMPLEX)


def parse_isolated(
    data: bytes, ocr: OcrOptions | None = None, limits: ParseLimits | None = None
) -> document_pb2.ParsedDocument:
    """parse_pdf in a child process: the same result or InvalidDocument, and DOCUMENT_TOO_COMPLEX when
    the document needs more memory or time than `limits` allow. Blocking; call it off the event loop."""
    limits = limits or ParseLimits()
    child, ours = _spares.take(ocr, limits)
    try:
        ours.send_bytes(data)
        _spares.refill(ocr, limits)  # the next document's child starts while this one parses
        if not ours.poll(limits.timeout_seconds):
            raise _too_complex(f"it takes longer than {limits.timeout_seconds:.0f} s")
        try:
            outcome = ours.recv()
        except EOFError:  # the child died without answering
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
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        ours.close()
    kind = outcome[0]
    if kind == "ok":
        return document_pb2.ParsedDocument.FromString(outcome[1])
    if kind == "invalid":
        raise InvalidDocument(outcome[1], reason=outcome[2])
    if kind == "memory":
        raise _too_complex(f"it needs more than {limits.memory_bytes // MiB} MiB of memory")
    raise RuntimeError(f"parsing failed in the child: {outcome[1]}")
