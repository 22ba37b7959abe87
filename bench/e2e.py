"""End-to-end latency of a 20-page contract: CreateExtraction → SUCCEEDED, sequential runs on an otherwise
idle stack (the end seen on a WatchExtraction stream opened right after the submit: no polling interval
bounds the measurement)."""

from __future__ import annotations

from bench.common import NO_CUAD, Section, cuad_available, cuad_with_pages, median, text_pdf, unique
from bench.stackutil import submit_and_wait
from contracts.v1 import extraction_pb2 as pb

COMMAND = "python -m bench --only e2e"


async def run(gateway: str, quick: bool) -> Section:
    section = Section("End-to-end latency, 20-page contract", COMMAND)
    found = cuad_with_pages(20) if cuad_available() and not quick else None
    if found:
        data = found[0].read_bytes()
        source = f"CUAD {found[0].name} ({found[1]} pages)"
    else:
        data = text_pdf(20)
        source = "generated 20-page text PDF"
        if not quick:
            section.notes.append(NO_CUAD + "; a generated contract was used")
    runs = 2 if quick else 9
    section.load = f"{source}; {runs} sequential runs (unique bytes each, so no deduplication) after one warm-up"
    await submit_and_wait(gateway, unique(data))
    timings = []
    for _ in range(runs):
        seconds, answer = await submit_and_wait(gateway, unique(data))
        if answer is None:
            section.notes.append("a run was not terminal after the timeout")
        elif answer.state != pb.STATE_SUCCEEDED:
            section.notes.append(f"a run ended {pb.State.Name(answer.state)}: {answer.error.code}")
        timings.append(seconds)
    p50 = median(timings)
    section.add("submit → SUCCEEDED p50", p50, "s", "< 2 s", p50 < 2)
    section.add("submit → SUCCEEDED max", max(timings), "s")
    return section
