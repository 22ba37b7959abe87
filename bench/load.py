"""Load: 300 documents submitted at once by 32 concurrent clients; all must complete (SUCCEEDED). Reports
the gateway's submit latency while the pipeline is busy and the peak RSS (VmHWM, since the process
started, so over the whole benchmark run) of every process of the stack against a per-process budget."""

from __future__ import annotations

import time

from bench.common import MiB, Section, upload_pdf, vm_hwm
from bench.loadgen import run_load
from bench.stackutil import pids, wait_all
from contracts.v1 import extraction_pb2 as pb
from deploy.local.stack import Stack

COMMAND = "python -m bench --only load"
CLIENTS = 32
# Memory budget per process (MB): what a container of it would be given.
BUDGET_MB = {
    "gateway": 300,
    "worker": 300,
    "store": 300,
    "parser": 400,
    "llm": 1024,
    "temporal": 600,
    "s3": 600,
}


async def run(stack: Stack, quick: bool) -> Section:
    total = 32 if quick else 300
    section = Section(f"Load: {total} documents at once", COMMAND)
    document = upload_pdf()
    section.load = (
        f"{total} CreateExtraction calls shared by {CLIENTS} concurrent clients, back to back "
        f"({len(document) // 1024} KB PDF, 3 text pages; unique bytes and request_id each)"
    )
    began = time.perf_counter()
    result = await run_load(stack.gateway_address, document, CLIENTS, 0, total=total)
    # Watched once the submits are done (as before, when they were polled), so the submit latency
    # measured is not shared with opening 300 streams.
    done = await wait_all(stack.gateway_address, result.ids, timeout=1800)
    seconds = time.perf_counter() - began
    succeeded = sum(1 for e in done.values() if e.state == pb.STATE_SUCCEEDED)
    submitted = total
    section.add("SUCCEEDED", succeeded, f"of {submitted}", f"all {submitted}", succeeded == submitted)
    section.add("submit p50 (pipeline busy)", result.p(50), "ms")
    section.add("submit p99 (pipeline busy)", result.p(99), "ms", "≤ 100 ms", result.p(99) <= 100)
    section.add("submits/s", result.rate, "/s")
    section.add("submit of the first → last SUCCEEDED", seconds, "s")
    section.add("pipeline throughput under load", submitted / seconds, "docs/s")
    if result.errors:
        section.notes.append(f"submit errors: {result.errors}")
    failed = [e for e in done.values() if e.state != pb.STATE_SUCCEEDED]
    if failed:
        section.notes.append(f"not SUCCEEDED: {[(e.id, pb.State.Name(e.state), e.error.code) for e in failed[:5]]}")
    if len(done) < len(result.ids):
        section.notes.append(f"{len(result.ids) - len(done)} extractions not terminal after the timeout")
    for name, pid in pids(stack).items():
        peak = vm_hwm(pid)
        budget = BUDGET_MB.get(name)
        value = peak / MiB if peak is not None else None
        section.add(
            f"peak RSS: {name}",
            value,
            "MB",
            f"≤ {budget} MB" if budget else "",
            (value <= budget) if (budget and value is not None) else None,
        )
    section.notes.append(
        "Peak RSS is VmHWM of the pid in .run/bench/pids (since the process started, so over the whole run). "
        "The parser parses each document in a forked child (services.parser.sandbox): that child's memory is "
        "not in the parser's figure; see the 1,000-page benchmark for a parse's own peak."
    )
    return section
