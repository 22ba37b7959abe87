"""PDF → ParsedDocument: text per page with character offsets and block bounding boxes (PyMuPDF).

The full text is the pages' texts joined by PAGE_SEPARATOR; a page's text is its text blocks, in
content-stream order, joined by newlines. Every offset in the result indexes that full text, which is
what clause `char_start`/`char_end` refer to, so this module defines the coordinate system of the whole
product: change it and stored offsets of old extractions no longer line up.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from clausework.runtime.errors import InvalidArgument
from contracts.internal.v1 import document_pb2

if TYPE_CHECKING:
    import pymupdf

# PyMuPDF 2 depends on pymupdf_layout and pymupdf4llm and imports both with itself when it can; they
# load an ONNX layout model, onnxruntime and numpy, for page.get_layout() and Document.to_markdown(),
# which this module never calls. A None in sys.modules makes those imports fail as though the packages
# were absent: `import pymupdf` then takes 0.08 s and 47 MB instead of 0.71 s and 137 MB (time and max
# RSS of `python -c "import pymupdf"`, with and without), and every parser child forks from that smaller
# process. Text, blocks and offsets do not change (tests/clausework/test_pdf.py compares them on CUAD
# contracts with the packages loaded and without).
for _unused in ("pymupdf.layout", "pymupdf4llm"):
    sys.modules.setdefault(_unused, None)  # type: ignore[arg-type]

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


@dataclass(frozen=True)
class OcrOptions:
    """OCR through PyMuPDF + Tesseract for pages without a text layer (scans)."""

    language: str = "eng"
    dpi: int = 200
    # OCR costs ~1 s a page: a cap keeps a 5,000-page scan from occupying a parser for hours.
    max_pages: int = 300
    tessdata: str | None = None


def find_tessdata() -> str | None:
    """Debian's tesseract-ocr data directory, if installed (or TESSDATA_PREFIX)."""
    if prefix := os.environ.get("TESSDATA_PREFIX"):
        return prefix
    found = sorted(Path("/usr/share/tesseract-ocr").glob("*/tessdata"))
    return str(found[-1]) if found else None


@functools.cache
def load_pymupdf() -> ModuleType:
    """PyMuPDF, imported on first use (only the parser process should pay for it), with the global options
    this module's coordinates depend on set explicitly: pymupdf4llm sets them at its import, and every
    stored bounding box so far was computed with them (PyMuPDF's ascender/descender corrections of character
    boxes off), so they hold whether or not that package is installed. Once per process: nothing in it
    changes them afterwards (pymupdf4llm, which would, is kept out above)."""
    import pymupdf

    pymupdf.TOOLS.unset_quad_corrections(True)
    pymupdf.TOOLS.mupdf_display_errors(False)  # broken files are reported as InvalidDocument, not on stderr
    module: ModuleType = pymupdf
    return module


def _open(data: bytes) -> pymupdf.Document:
    pymupdf = load_pymupdf()
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


def _readable(document: pymupdf.Document, page: pymupdf.Page) -> bool:
    """Whether the page's own object loads: MuPDF shows a page it cannot read (e.g. nested past its
    limits) as a blank one."""
    try:
        document.xref_get_key(page.xref, "Type")
    except Exception:
        return False
    return True


def _text_chars(page: pymupdf.Page, flags: int) -> int:
    return sum(not ch.isspace() for ch in page.get_text("text", flags=flags))


def parse_pdf(data: bytes, ocr: OcrOptions | None = None) -> document_pb2.ParsedDocument:
    """Extract text, offsets and block boxes from PDF bytes, or raise InvalidDocument.

    With `ocr`, pages without a text layer are recognized with Tesseract; without it, a document with
    no text layer fails with NO_TEXT_LAYER.
    """
    pymupdf = load_pymupdf()
    document = _open(data)
    ocr_pages = 0
    flags = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
    parsed = document_pb2.ParsedDocument(parser=PARSER_NAME)
    pieces: list[str] = []
    offset = 0
    unreadable = 0
    try:
        for index, page in enumerate(document):
            if index:
                pieces.append(PAGE_SEPARATOR)
                offset += len(PAGE_SEPARATOR)
            rect = page.rect
            out_page = parsed.pages.add(number=index + 1, width=rect.width, height=rect.height, char_start=offset)
            first_block = True
            textpage = None
            if ocr is not None and ocr_pages < ocr.max_pages and _text_chars(page, flags) < MIN_TEXT_CHARS:
                textpage = page.get_textpage_ocr(
                    flags=flags, language=ocr.language, dpi=ocr.dpi, full=True, tessdata=ocr.tessdata
                )
                ocr_pages += 1
            for x0, y0, x1, y1, text, _number, kind in page.get_text("blocks", flags=flags, textpage=textpage):
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
            if first_block:  # no text: blank, scanned, or unreadable?
                unreadable += not _readable(document, page)
    finally:
        document.close()
    parsed.text = "".join(pieces)
    if sum(not ch.isspace() for ch in parsed.text[: MIN_TEXT_CHARS * 64]) < MIN_TEXT_CHARS:
        if unreadable:
            raise InvalidDocument(
                f"the PDF cannot be read: {unreadable} of {len(parsed.pages)} pages are damaged or nested too deeply",
                reason="CORRUPT_PDF",
            )
        if ocr is None:
            raise InvalidDocument("no text layer: scanned document (OCR is not enabled)", reason="NO_TEXT_LAYER")
        raise InvalidDocument("no text found, even with OCR: blank or unreadable scan", reason="NO_TEXT_LAYER")
    if ocr_pages:
        parsed.parser = f"{PARSER_NAME}+ocr:{ocr_pages}"
    return parsed
