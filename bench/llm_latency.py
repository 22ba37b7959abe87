"""llm latency on a 30-page contract: the embedded backend called directly (what the llm service calls),
model loaded once, not timed per request; parsing is not timed (it is the parser's job)."""

from __future__ import annotations

import asyncio
import time

from bench.common import NO_CUAD, Section, cuad_available, cuad_with_pages, median, text_pdf

COMMAND = "python -m bench --only llm_latency"


def run(quick: bool) -> Section:
    from clausework.pdf import parse_pdf

    section = Section("llm latency, 30-page contract (embedded backend)", COMMAND)
    found = cuad_with_pages(30) if cuad_available() and not quick else None
    if found:
        path, pages = found
        data = path.read_bytes()
        source = f"CUAD {path.name} ({pages} pages)"
    else:
        pages = 30
        data = text_pdf(pages)
        source = "generated 30-page text PDF"
        if not quick:
            section.notes.append(NO_CUAD + "; a generated contract was used")
    text = parse_pdf(data).text
    runs = 1 if quick else 7
    section.load = f"{source}, {len(text):,} chars; EmbeddedBackend.extract, {runs} sequential runs after one warm-up"

    from services.llm.backends import EmbeddedBackend
    from services.llm.settings import LlmSettings

    began = time.perf_counter()
    backend = EmbeddedBackend(LlmSettings())
    load_seconds = time.perf_counter() - began

    async def timed() -> list[float]:
        await backend.extract(text)  # warm-up
        timings = []
        for _ in range(runs):
            began = time.perf_counter()
            await backend.extract(text)
            timings.append(time.perf_counter() - began)
        return timings

    timings = asyncio.run(timed())
    p50 = median(timings)
    section.add("model load (once per process)", load_seconds, "s")
    section.add("extract p50", p50, "s", "< 3 s", p50 < 3)
    section.add("extract max", max(timings), "s")
    return section
