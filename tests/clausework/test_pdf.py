from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clausework.pdf import PAGE_SEPARATOR, InvalidDocument, OcrOptions, find_tessdata, parse_pdf
from tests import corpus, pdfs
from tests.conftest import ROOT, cuad_available
from training.data import DEFAULT_CUAD as CUAD


def normalized(text: str) -> str:
    return " ".join(text.split())


def test_pages_offsets_and_blocks_index_the_full_text() -> None:
    parsed = parse_pdf(pdfs.contract_pdf())

    assert [p.number for p in parsed.pages] == [1, 2, 3]
    assert parsed.pages[0].char_start == 0
    assert parsed.pages[-1].char_end == len(parsed.text)
    for before, after in zip(parsed.pages, parsed.pages[1:], strict=False):
        assert parsed.text[before.char_end : after.char_start] == PAGE_SEPARATOR
    for page, source in zip(parsed.pages, pdfs.CONTRACT_PAGES, strict=True):
        assert page.width == pytest.approx(612) and page.height == pytest.approx(792)
        assert normalized(parsed.text[page.char_start : page.char_end]) == normalized(source)
        assert page.blocks, "every text page has blocks"
        for block in page.blocks:
            assert page.char_start <= block.char_start < block.char_end <= page.char_end
            assert 0 <= block.x0 < block.x1 <= page.width and 0 <= block.y0 < block.y1 <= page.height


def test_known_clause_is_found_verbatim_on_its_page() -> None:
    parsed = parse_pdf(pdfs.contract_pdf())
    flat = normalized(parsed.text)
    assert normalized(pdfs.GOVERNING_LAW) in flat
    start = parsed.text.index("This Agreement shall be governed")
    assert parsed.pages[1].char_start <= start < parsed.pages[1].char_end


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "EMPTY_DOCUMENT"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "NOT_A_PDF"),
        (b"<html><body>hello</body></html>", "NOT_A_PDF"),
        (pdfs.truncated_pdf(), "CORRUPT_PDF"),
        (b"%PDF-1.7\n" + b"garbage" * 100 + b"\n%%EOF\n", "CORRUPT_PDF"),
        (pdfs.encrypted_pdf(), "ENCRYPTED_PDF"),
        (pdfs.image_only_pdf(), "NO_TEXT_LAYER"),
        (corpus.deeply_nested_page(), "CORRUPT_PDF"),
        (corpus.zero_pages(), "EMPTY_DOCUMENT"),
    ],
    ids=["empty", "png", "html", "truncated", "garbage", "encrypted", "scanned", "nested-page", "zero-pages"],
)
def test_unusable_documents_raise_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidDocument) as raised:
        parse_pdf(data)
    assert raised.value.reason == reason
    assert raised.value.message


def test_owner_password_only_pdf_is_readable() -> None:
    parsed = parse_pdf(pdfs.encrypted_pdf(user_password=""))
    assert "Governing Law" in parsed.text


@pytest.mark.skipif(find_tessdata() is None, reason="Tesseract not installed (make setup installs tesseract-ocr)")
def test_ocr_reads_a_scanned_page() -> None:
    parsed = parse_pdf(pdfs.image_only_pdf(dpi=200), OcrOptions(tessdata=find_tessdata()))
    assert "governed by" in normalized(parsed.text).lower()
    assert "+ocr:1" in parsed.parser
    assert parsed.pages[0].blocks and parsed.pages[0].char_end == len(parsed.text)


_DIGEST = """
import hashlib, json, sys
{block}
from clausework.pdf import parse_pdf
paths = json.loads(sys.argv[1])
print(json.dumps({{
    "layout_loaded": "onnxruntime" in sys.modules and "pymupdf4llm" in sys.modules,
    "digests": [hashlib.sha256(parse_pdf(open(p, "rb").read()).SerializeToString()).hexdigest() for p in paths],
}}))
"""


@pytest.mark.skipif(not cuad_available(), reason="../shared/cuad is not here")
def test_keeping_the_layout_model_out_changes_no_parse() -> None:
    """clausework.pdf keeps pymupdf_layout and pymupdf4llm from loading; the same CUAD contracts parse to the same bytes
    when it is loaded (by importing pymupdf first), so no stored offset moves."""
    records = [json.loads(line) for line in (CUAD / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    paths = json.dumps([str(CUAD / r["pdf"]) for r in records[:: max(1, len(records) // 25)]])

    def run(block: str) -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-c", _DIGEST.format(block=block), paths],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
            cwd=ROOT,
        )
        return dict(json.loads(done.stdout))

    without = run("")
    with_layout = run("import pymupdf")  # imported before clausework.pdf: the layout package loads
    assert without["layout_loaded"] is False
    assert with_layout["layout_loaded"] is True, "pymupdf_layout is not installed: nothing compared"
    assert with_layout["digests"] == without["digests"]
