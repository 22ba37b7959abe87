"""Submit latency and rate of CreateExtraction (~120 KB PDF, unique request_id and bytes each) at 1, 8 and
32 concurrent clients, against the gateway and against a no-op server (the floor) with the same load
generator on the same machine. Every gateway submit starts a real workflow: the pipeline is busy."""

from __future__ import annotations

from bench.common import Section, upload_pdf
from bench.loadgen import LoadResult, run_load, warm_up
from bench.noop import noop_server

COMMAND = "python -m bench --only submit"
CLIENTS = (1, 8, 32)


def requests_per_client(clients: int, quick: bool) -> int:
    if quick:
        return max(2, 16 // clients)
    return {1: 100, 8: 25, 32: 15}.get(clients, 10)


async def measure(address: str, quick: bool) -> dict[int, LoadResult]:
    document = upload_pdf()
    await warm_up(address, document)
    results = {}
    for clients in CLIENTS:
        results[clients] = await run_load(address, document, clients, requests_per_client(clients, quick))
    return results


def _rows(section: Section, label: str, results: dict[int, LoadResult], targets: bool) -> None:
    for clients, result in results.items():
        p50, p99 = result.p(50), result.p(99)
        t50 = targets and clients == 1
        t99 = targets and clients == 32
        section.add(
            f"{label}: p50 at {clients} client(s)", p50, "ms", "≤ 10 ms" if t50 else "", p50 <= 10 if t50 else None
        )
        section.add(
            f"{label}: p99 at {clients} client(s)", p99, "ms", "≤ 100 ms" if t99 else "", p99 <= 100 if t99 else None
        )
        rate_target = targets and clients == 32
        section.add(
            f"{label}: submits/s at {clients} client(s)",
            result.rate,
            "/s",
            "≥ 150/s" if rate_target else "",
            result.rate >= 150 if rate_target else None,
        )
        if result.errors:
            section.notes.append(f"{label} at {clients} clients: errors {result.errors}")


async def run(gateway: str | None, quick: bool) -> tuple[Section, list[str]]:
    """Returns the section and the extraction ids the gateway accepted (their workflows are running)."""
    section = Section("Submit latency (CreateExtraction)", COMMAND)
    counts = ", ".join(f"{c} client(s) x {requests_per_client(c, quick)} requests" for c in CLIENTS)
    section.load = (
        f"{len(upload_pdf()) // 1024} KB PDF (3 text pages + incompressible attachment), unique bytes and request_id "
        f"per call; {counts}; each client its own grpc.aio channel, calls back to back"
    )
    with noop_server() as address:
        floor = await measure(address, quick)
    _rows(section, "floor (no-op server)", floor, targets=False)
    ids: list[str] = []
    if gateway is None:
        section.notes.append("gateway part skipped: no stack (--no-stack)")
        return section, ids
    results = await measure(gateway, quick)
    _rows(section, "gateway", results, targets=True)
    for result in results.values():
        ids.extend(result.ids)
    return section, ids
