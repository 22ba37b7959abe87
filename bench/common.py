"""What every benchmark shares: result records, percentiles, machine facts, test documents, CUAD access."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from training.data import DEFAULT_CUAD as CUAD

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


@dataclass
class Figure:
    """One measured number and its target (if the issue sets one)."""

    metric: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None  # None: no target, or not measured

    def render_value(self) -> str:
        if self.value is None:
            return "n/a"
        if abs(self.value) >= 100:
            return f"{self.value:,.0f} {self.unit}"
        return f"{self.value:.3g} {self.unit}"


@dataclass
class Section:
    """The result of one benchmark module."""

    title: str
    command: str
    load: str = ""
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str = ""  # why the benchmark did not run (e.g. no CUAD), if it did not
    seconds: float = 0.0

    def add(self, metric: str, value: float | None, unit: str, target: str = "", met: bool | None = None) -> Figure:
        figure = Figure(metric, value, unit, target, met)
        self.figures.append(figure)
        return figure


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, str]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else ""),
        "python": platform.python_version(),
        "load average at start (1/5/15 min)": load,
    }


def vm_hwm(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of a process, in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# ---- documents ---------------------------------------------------------------------------------------

CLAUSE_TEXT = (
    "{n}. Governing Law. This Agreement shall be governed by and construed in accordance with the laws of the "
    "State of New York. Either party may terminate this Agreement upon ninety (90) days prior written notice. "
    "Neither party may assign this Agreement without the prior written consent of the other party. In no event "
    "shall either party be liable for any indirect, incidental or consequential damages. Licensee shall pay "
    "the fees set out in Exhibit B within thirty (30) days of invoice. "
)


def contract_pages(pages: int, chars_per_page: int = 2400) -> list[str]:
    texts = []
    for page in range(pages):
        text = f"MASTER SERVICES AGREEMENT - page {page + 1}\n\n"
        n = 1
        while len(text) < chars_per_page:
            text += CLAUSE_TEXT.format(n=page * 100 + n)
            n += 1
        texts.append(text)
    return texts


def text_pdf(pages: int, chars_per_page: int = 2400, pad_bytes: int = 0) -> bytes:
    """A text PDF of `pages` pages; `pad_bytes` of incompressible attachment make it bigger without adding
    text (so a ~120 KB upload does not also mean a long parse)."""
    import pymupdf

    document = pymupdf.open()
    for text in contract_pages(pages, chars_per_page):
        page = document.new_page(width=612, height=792)
        page.insert_textbox(pymupdf.Rect(54, 54, 558, 738), text, fontsize=9, fontname="helv")
    if pad_bytes:
        document.embfile_add("exhibit.bin", os.urandom(pad_bytes))
    data = bytes(document.tobytes(garbage=0))
    document.close()
    return data


def upload_pdf(target_bytes: int = 120 * 1024) -> bytes:
    """The submit benchmarks' document: a 3-page contract padded to ~target_bytes."""
    base = text_pdf(3)
    return text_pdf(3, pad_bytes=max(0, target_bytes - len(base) - 400))


def unique(data: bytes) -> bytes:
    """The same PDF with a unique trailing comment: new bytes (no deduplication), same content."""
    return data + f"\n% {uuid.uuid4()}\n".encode()


def cuad_available() -> bool:
    return (CUAD / "labels.jsonl").exists() and os.access(CUAD / "pdf", os.R_OK)


def cuad_pdfs() -> list[Path]:
    """The CUAD contracts in labels.jsonl order (deterministic)."""
    records = [json.loads(line) for line in (CUAD / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    return [CUAD / record["pdf"] for record in records]


def page_count(data: bytes) -> int:
    import pymupdf

    with pymupdf.open(stream=data, filetype="pdf") as document:
        return int(document.page_count)


def cuad_with_pages(pages: int, tolerance: int = 3) -> tuple[Path, int] | None:
    """The CUAD contract whose page count is closest to `pages` (within tolerance), first in order."""
    best: tuple[int, Path, int] | None = None
    for path in cuad_pdfs():
        count = page_count(path.read_bytes())
        if abs(count - pages) <= tolerance and (best is None or abs(count - pages) < best[0]):
            best = (abs(count - pages), path, count)
            if count == pages:
                break
    return (best[1], best[2]) if best else None


NO_CUAD = f"CUAD not found at {CUAD} (set CUAD_DIR); the CUAD part of this benchmark was skipped"


def contracts(section: Section, count: int, quick: bool, first: int = 0) -> tuple[list[bytes], str]:
    """`count` CUAD contracts from number `first` on (generated 5-14 page ones in --quick or without
    CUAD, saying so in the section's notes), and how to describe them."""
    if cuad_available() and not quick:
        originals = [p.read_bytes() for p in cuad_pdfs()[first : first + count]]
        source = f"the first {count} CUAD contracts" if not first else f"CUAD contracts {first + 1}-{first + count}"
        return originals, source
    if not quick:
        section.notes.append(NO_CUAD + "; generated contracts were used")
    return [text_pdf(5 + i % 10) for i in range(count)], f"{count} generated contracts (5-14 pages)"
