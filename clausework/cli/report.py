"""An evidence report: one self-contained HTML page showing each clause next to its page, highlighted.

The rectangles come from the same text extraction the service used (clausework.pdf), so a
clause's character span maps to exactly the text blocks it was read from; within a block the clause's
lines are located by PyMuPDF's text search, so a clause that starts mid-paragraph is highlighted from
where it starts. PyMuPDF draws the highlights and renders each page to a PNG embedded in the page.
"""

from __future__ import annotations

import base64
import html
from collections import defaultdict
from typing import TYPE_CHECKING

from clausework.pdf import parse_pdf
from contracts.internal.v1 import document_pb2
from contracts.v1 import extraction_pb2 as pb

if TYPE_CHECKING:
    import pymupdf

HIGHLIGHT = (1.0, 0.85, 0.0)
LABEL = (0.75, 0.1, 0.1)
DPI = 90


def clause_rects(page: pymupdf.Page, parsed: document_pb2.ParsedDocument, clause: pb.Clause) -> list[pymupdf.Rect]:
    """Rectangles on `page` covering the clause's part of that page."""
    import pymupdf

    info = parsed.pages[page.number]
    rects: list[pymupdf.Rect] = []
    for block in info.blocks:
        start, end = max(clause.char_start, block.char_start), min(clause.char_end, block.char_end)
        if start >= end:
            continue
        box = pymupdf.Rect(block.x0, block.y0, block.x1, block.y1)
        if start == block.char_start and end == block.char_end:
            rects.append(box)
            continue
        for line in parsed.text[start:end].split("\n"):
            needle = " ".join(line.split())
            hits = page.search_for(needle, clip=box) if len(needle) >= 3 else []
            rects.extend(hits[:1] or [box])
    return rects


def _page_image(page: pymupdf.Page, marks: list[tuple[int, list[pymupdf.Rect]]]) -> str:
    for number, rects in marks:
        for rect in rects:
            page.draw_rect(rect, color=HIGHLIGHT, fill=HIGHLIGHT, fill_opacity=0.35, width=0.5)
        if rects:
            # The clause's number in the left margin, level with its first line.
            page.insert_text((12, rects[0].y0 + 8), str(number), fontsize=10, color=LABEL)
    png = page.get_pixmap(dpi=DPI).tobytes("png")
    return base64.b64encode(png).decode()


_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#f6f6f4}
h1{font-size:20px;margin:0 0 4px} .meta{color:#666;margin-bottom:24px}
section{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:20px;margin-bottom:36px}
img{width:100%;border:1px solid #ccc;background:#fff;box-shadow:0 1px 4px #0002}
.clause{background:#fff;border-left:4px solid #f2c200;padding:8px 12px;margin-bottom:10px}
.cat{font-weight:600} .conf{color:#666;font-size:12px;margin-left:6px}
.answer{color:#0b5;font-size:13px;margin:4px 0} .text{font-size:13px;white-space:pre-wrap}
.num{display:inline-block;background:#b22;color:#fff;border-radius:9px;padding:0 6px;font-size:12px;margin-right:6px}
"""


def build_report(extraction: pb.Extraction, pdf: bytes) -> str:
    """The HTML report of a SUCCEEDED extraction, given the PDF it was made from."""
    import pymupdf

    parsed = parse_pdf(pdf)
    document = pymupdf.open(stream=pdf, filetype="pdf")
    by_page: dict[int, list[tuple[int, pb.Clause]]] = defaultdict(list)
    for number, clause in enumerate(extraction.clauses, 1):
        by_page[clause.page_start].append((number, clause))
    sections = []
    try:
        for page_number in sorted(by_page):
            page = document[page_number - 1]
            marks = [(n, clause_rects(page, parsed, c)) for n, c in by_page[page_number]]
            image = _page_image(page, marks)
            cards = "".join(
                f'<div class="clause" id="clause-{n}"><span class="num">{n}</span>'
                f'<span class="cat">{html.escape(c.category)}</span>'
                f'<span class="conf">confidence {c.confidence:.2f} · page {c.page_start}'
                f"{'-' + str(c.page_end) if c.page_end != c.page_start else ''}</span>"
                + (f'<div class="answer">{html.escape(c.answer)}</div>' if c.answer else "")
                + f'<div class="text">{html.escape(c.text)}</div></div>'
                for n, c in by_page[page_number]
            )
            sections.append(
                f'<section><img alt="page {page_number}" src="data:image/png;base64,{image}">'
                f"<div><h2>Page {page_number}</h2>{cards}</div></section>"
            )
    finally:
        document.close()
    title = html.escape(extraction.document.filename or extraction.id)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Clauses — {title}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>"
        f'<div class="meta">{len(extraction.clauses)} clauses · {extraction.document.page_count} pages · '
        f"extraction {html.escape(extraction.id)} · {html.escape(extraction.model)}</div>"
        + "".join(sections)
        + "</body></html>"
    )
