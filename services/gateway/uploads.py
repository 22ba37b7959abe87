"""Checks an upload must pass before anything is stored: cheap, certain, and explained to the user.

Deeper checks (encryption, corruption, no text layer) need the parser; they end the extraction FAILED
with a reason instead.
"""

from __future__ import annotations

import re
import unicodedata

from services.common.errors import InvalidArgument, ResourceExhausted
from services.common.settings import MiB

DEFAULT_FILENAME = "document.pdf"
MAX_FILENAME_CHARS = 255
MAX_REQUEST_ID_CHARS = 128
# The PDF spec lets a header start anywhere in the first 1024 bytes.
HEADER_WINDOW = 1024
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def _size(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n:,} bytes"


def too_large(size: int, max_bytes: int) -> ResourceExhausted:
    return ResourceExhausted(f"the PDF is {_size(size)}; the limit is {_size(max_bytes)}", reason="DOCUMENT_TOO_LARGE")


def check_header(head: bytes) -> None:
    if b"%PDF-" not in head[:HEADER_WINDOW]:
        raise InvalidArgument("content is not a PDF (no %PDF- header)", reason="NOT_A_PDF")


def check_content(content: bytes, max_bytes: int) -> None:
    if not content:
        raise InvalidArgument("content is empty: send the PDF file's bytes", reason="EMPTY_DOCUMENT")
    if len(content) > max_bytes:
        raise too_large(len(content), max_bytes)
    check_header(content)


def clean_filename(filename: str) -> str:
    """A display name only: path components, control characters and excess length removed."""
    name = re.split(r"[\\/]", filename)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name in ("", ".", ".."):
        return DEFAULT_FILENAME
    return name[:MAX_FILENAME_CHARS]


def check_request_id(request_id: str) -> str:
    if request_id and not _REQUEST_ID.match(request_id):
        raise InvalidArgument(f"request_id must be 1-{MAX_REQUEST_ID_CHARS} printable ASCII characters without spaces")
    return request_id
