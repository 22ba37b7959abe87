"""Peak RSS of parse_pdf on a 1,000-page PDF, in a fresh subprocess (what the parser service's sandboxed
child does per document): VmHWM after importing PyMuPDF, and after the parse."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, MiB, Section, text_pdf

COMMAND = "python -m bench --only parser_rss"
BUDGET_MB = 400

CHILD = """
import json, sys, time
from pathlib import Path
def hwm():
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) * 1024
import pymupdf
from clausework.pdf import parse_pdf
data = Path(sys.argv[1]).read_bytes()
before = hwm()
began = time.perf_counter()
parsed = parse_pdf(data)
print(json.dumps({"before": before, "after": hwm(), "pages": len(parsed.pages), "chars": len(parsed.text),
                  "seconds": time.perf_counter() - began}))
"""


def run(quick: bool) -> Section:
    pages = 100 if quick else 1000
    section = Section(f"Parser peak RSS on a {pages:,}-page PDF", COMMAND)
    data = text_pdf(pages)
    section.load = (
        f"generated {pages}-page text PDF ({len(data) / MiB:.1f} MB, ~2,400 chars a page), "
        "parse_pdf in a fresh subprocess"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.pdf"
        path.write_bytes(data)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)], cwd=ROOT, capture_output=True, text=True, check=True
        )
    result = json.loads(out.stdout)
    peak = result["after"] / MiB
    target = f"< {BUDGET_MB} MB" if not quick else ""
    section.add("peak RSS (VmHWM) of the parsing process", peak, "MB", target, peak < BUDGET_MB if not quick else None)
    section.add("of which: after imports, before parsing", result["before"] / MiB, "MB")
    section.add("parse time", result["seconds"], "s")
    section.notes.append(
        "Measured on parse_pdf in a fresh subprocess, which is what the parser service runs per document "
        "(services.parser.sandbox forks a child per parse); the service's main process does not hold the parse."
    )
    return section
