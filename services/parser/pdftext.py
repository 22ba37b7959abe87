"""PDF → ParsedDocument: text per page with character offsets and block bounding boxes (PyMuPDF).

The full text is the pages' texts joined by PAGE_SEPARATOR; a page's text is its text blocks, in
content-stream order, joined by newlines. Every offset in the result indexes that full text, which is
what clause `char_start`/`char_end` refer to, so this module defines the coordinate system of the whole
product: change it and stored offsets of old extractions no longer line up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.internal.v1 import document_pb2
from services.common.errors import InvalidArgument

if TYPE_CHECKING:
    import pymupdf

PARSER_NAME = "pymupdf-blocks/1"
PAGE_SEPARATOR = "\n\n"
BLOCK_SEPARATOR = "\n"
# A document with less text than this (after stripping whitespace) has no usable text layer.
MIN_TEXT_CHARS = 16
# PDFs end with %%EOF; a file without one in its tail was cut off in transit.
_EOF_MARKER = b"%%EOF"
_EOF_WINDOW = 4096


class InvalidDocument(InvalidArgument):
    """The PDF itself is unusable; retrying will not help. `reason` says why, for the user."""


def _open(data: bytes) -> pymupdf.Document:
    import pymupdf  # imported here: ~1.4 s and ~140 MB that only the parser process should pay

    if not data:
        raise InvalidDocument("the file is empty", reason="EMPTY_DOCUMENT")
    if b"%PDF-" not in data[:1024]:
        raise InvalidDocument("the file is not a PDF (no %PDF- header)", reason="NOT_A_PDF")
    if _EOF_MARKER not in data[-_EOF_WINDOW:]:
        raise InvalidDocument(
            "the PDF is truncated (no %%EOF marker at its end); upload the complete file", reason="CORRUPT_PDF"
        )
    try:
        document = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # PyMuPDF raises FileDataError, RuntimeError or ValueError for broken files
        raise InvalidDocument(f"the PDF cannot be read: {exc}", reason="CORRUPT_PDF") from exc
    if document.needs_pass:
        document.close()
        raise InvalidDocument(
            "the PDF is encrypted with a password; upload an unencrypted copy", reason="ENCRYPTED_PDF"
        )
    if document.page_count == 0:
        document.close()
        raise InvalidDocument("the PDF has no pages", reason="EMPTY_DOCUMENT")
    return document


def parse_pdf(data: bytes) -> document_pb2.ParsedDocument:
    """Extract text, offsets and block boxes from PDF bytes, or raise InvalidDocument."""
    import pymupdf

    document = _open(data)
    flags = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
    parsed = document_pb2.ParsedDocument(parser=PARSER_NAME)
    pieces: list[str] = []
    offset = 0
    try:
        for index, page in enumerate(document):
            if index:
                pieces.append(PAGE_SEPARATOR)
                offset += len(PAGE_SEPARATOR)
            rect = page.rect
            out_page = parsed.pages.add(number=index + 1, width=rect.width, height=rect.height, char_start=offset)
            first_block = True
            for x0, y0, x1, y1, text, _number, kind in page.get_text("blocks", flags=flags):
                if kind != 0:  # image block
                    continue
                text = text.rstrip()
                if not text.strip():
                    continue
                if not first_block:
                    pieces.append(BLOCK_SEPARATOR)
                    offset += len(BLOCK_SEPARATOR)
                first_block = False
                out_page.blocks.add(x0=x0, y0=y0, x1=x1, y1=y1, char_start=offset, char_end=offset + len(text))
                pieces.append(text)
                offset += len(text)
            out_page.char_end = offset
    finally:
        document.close()
    parsed.text = "".join(pieces)
    if sum(not ch.isspace() for ch in parsed.text[: MIN_TEXT_CHARS * 64]) < MIN_TEXT_CHARS:
        raise InvalidDocument("no text layer: scanned document (OCR is not enabled)", reason="NO_TEXT_LAYER")
    return parsed
