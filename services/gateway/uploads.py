"""Checks an upload must pass before anything is stored: cheap, certain, and explained to the user.

Deeper checks (encryption, corruption, no text layer) need the parser; they end the extraction FAILED
with a reason instead.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import AsyncIterator
from typing import TypeVar

import regex  # type: ignore[import-untyped]

from clausework.pipeline import MAX_FILENAME_CHARS, MAX_REQUEST_ID_CHARS
from clausework.runtime.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted
from clausework.runtime.settings import MiB

T = TypeVar("T")

DEFAULT_FILENAME = "document.pdf"
# The PDF spec lets a header start anywhere in the first 1024 bytes.
HEADER_WINDOW = 1024
_REQUEST_ID = re.compile(rf"^[\x21-\x7e]{{1,{MAX_REQUEST_ID_CHARS}}}$")
# An extension kept when a long filename is cut: a dot and 1-10 letters or digits (".pdf").
_EXTENSION = regex.compile(r"\.[^\W_]{1,10}$")
_GRAPHEME = regex.compile(r"\X")
_JOINERS = frozenset("\u200c\u200d")


def _size(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n:,} bytes"


def too_large(size: int, max_bytes: int) -> ResourceExhausted:
    return ResourceExhausted(f"the PDF is {_size(size)}; the limit is {_size(max_bytes)}", reason="DOCUMENT_TOO_LARGE")


def check_header(head: bytes) -> None:
    if b"%PDF-" not in head[:HEADER_WINDOW]:
        raise InvalidArgument("content is not a PDF (no %PDF- header)", reason="NOT_A_PDF")


def check_declared_size(size_bytes: int, max_bytes: int) -> int:
    """UploadMetadata.size_bytes: 0 means not declared; negative is a client bug; over the limit refused
    before anything is sent on."""
    if size_bytes < 0:
        raise InvalidArgument(f"size_bytes is {size_bytes}: declare the file's size, or 0 if unknown")
    if size_bytes > max_bytes:
        raise too_large(size_bytes, max_bytes)
    return size_bytes


def size_mismatch(declared: int, received: int, *, more: bool = False) -> InvalidArgument:
    got = f"more than {declared:,} bytes arrived" if more else f"{received:,} bytes arrived"
    return InvalidArgument(
        f"the upload declared size_bytes {declared:,} but {got}; declare the exact size, or 0 if unknown",
        reason="SIZE_MISMATCH",
    )


async def idle_limited(messages: AsyncIterator[T], idle_seconds: float) -> AsyncIterator[T]:
    """`messages`, failing with DEADLINE_EXCEEDED (reason UPLOAD_IDLE) if the next one takes longer than
    `idle_seconds` to arrive, so a stalled client cannot hold an upload (and its slot) for hours."""
    iterator = aiter(messages)
    while True:
        try:
            message = await asyncio.wait_for(anext(iterator), idle_seconds)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise DeadlineExceeded(
                f"the upload stalled: no message for {idle_seconds:g} s; nothing was stored, send it again",
                reason="UPLOAD_IDLE",
            ) from None
        yield message


def check_content(content: bytes, max_bytes: int) -> None:
    if not content:
        raise InvalidArgument("content is empty: send the PDF file's bytes", reason="EMPTY_DOCUMENT")
    if len(content) > max_bytes:
        raise too_large(len(content), max_bytes)
    check_header(content)


def clean_filename(filename: str) -> str:
    """A display name only: path components, control and format characters (bidi overrides among them)
    and excess length removed. Zero-width (non-)joiners stay: emoji sequences and some scripts need them."""
    name = re.split(r"[\\/]", filename)[-1]
    name = "".join(ch for ch in name if ch in _JOINERS or unicodedata.category(ch)[0] != "C").strip()
    if name in ("", ".", ".."):
        return DEFAULT_FILENAME
    return cut_filename(name, MAX_FILENAME_CHARS)


def cut_filename(name: str, max_chars: int) -> str:
    """`name` in at most `max_chars` characters (code points), cut between grapheme clusters (never
    inside an emoji, a ZWJ sequence or a letter with its combining marks), keeping a short extension."""
    if len(name) <= max_chars:
        return name
    extension = _EXTENSION.search(name)
    suffix = extension.group() if extension and extension.start() > 0 else ""
    stem = name[: len(name) - len(suffix)]
    room = max_chars - len(suffix)
    kept: list[str] = []
    for grapheme in _GRAPHEME.findall(stem):
        if len(grapheme) > room:
            break
        kept.append(grapheme)
        room -= len(grapheme)
    cut = "".join(kept).rstrip(" .")
    return (cut or DEFAULT_FILENAME.removesuffix(".pdf")) + suffix


def check_request_id(request_id: str) -> str:
    if request_id and not _REQUEST_ID.match(request_id):
        raise InvalidArgument(f"request_id must be 1-{MAX_REQUEST_ID_CHARS} printable ASCII characters without spaces")
    return request_id
