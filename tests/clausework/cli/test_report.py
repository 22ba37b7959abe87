"""The HTML evidence report, rendered by a real headless Chromium and checked on the screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pymupdf
import pytest

from clausework.cli.report import build_report
from clausework.pdf import parse_pdf
from contracts.v1 import extraction_pb2 as pb
from tests import pdfs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def extraction_for(pdf: bytes) -> pb.Extraction:
    """An extraction whose one clause is the governing-law sentence, with the service's offsets."""
    parsed = parse_pdf(pdf)
    start = parsed.text.index("This Agreement shall be governed")
    end = parsed.text.index("principles.", start) + len("principles.")
    extraction = pb.Extraction(id="report-test", state=pb.STATE_SUCCEEDED, model="test")
    extraction.document.filename = "msa.pdf"
    extraction.document.page_count = len(parsed.pages)
    extraction.clauses.add(
        category="Governing Law",
        text=parsed.text[start:end],
        page_start=2,
        page_end=2,
        char_start=start,
        char_end=end,
        confidence=0.93,
        answer="New York",
    )
    return extraction


def yellow_pixels(png: Path) -> int:
    pixmap = pymupdf.Pixmap(str(png))
    samples, n = pixmap.samples, pixmap.n
    return sum(
        1
        for i in range(0, len(samples), n * 3)  # every third pixel is plenty
        if samples[i] > 230 and 190 < samples[i + 1] < 250 and samples[i + 2] < 200
    )


def test_report_is_self_contained_and_explains_each_clause() -> None:
    pdf = pdfs.contract_pdf()
    report = build_report(extraction_for(pdf), pdf)
    assert "Governing Law" in report and "New York" in report and "0.93" in report
    assert "data:image/png;base64," in report
    assert "http://" not in report.replace("http://www.w3.org", "") and "https://" not in report


@pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true", reason="chromium not installed")
def test_screenshot_shows_the_highlighted_clause(tmp_path: Path) -> None:
    assert CHROMIUM is not None, "make setup installs Debian's chromium"
    pdf = pdfs.contract_pdf()
    page = tmp_path / "report.html"
    page.write_text(build_report(extraction_for(pdf), pdf), encoding="utf-8")
    blank = tmp_path / "blank.html"
    blank.write_text(build_report(pb.Extraction(id="x", state=pb.STATE_SUCCEEDED), pdf), encoding="utf-8")

    def shoot(html: Path) -> Path:
        png = html.with_suffix(".png")
        subprocess.run(
            [
                CHROMIUM,  # type: ignore[list-item]
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--window-size=1280,1400",
                f"--screenshot={png}",
                html.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        return png

    highlighted = yellow_pixels(shoot(page))
    assert highlighted > 500, "the clause is highlighted on the rendered page"
    assert yellow_pixels(shoot(blank)) < 50, "no highlight without clauses"
