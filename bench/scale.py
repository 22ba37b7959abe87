"""Scale-out on one machine, validating docs/scale.md's capacity model at small scale: the pipeline
with 2 parser replicas and 2 workers (worker 2 calls parser 2; Temporal spreads the activities over
both workers) vs 1 and 1, in one run, each beside what the model predicts from its own measured CPU per
document — `cores / CPU per document`, because on this machine every process shares the same 2 cores.
Replicas cannot add throughput to saturated cores; what the model needs to hold is that throughput
follows CPU per document, and that more replicas do not cost more per document."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench.common import Section, contracts, unique
from bench.pipeline import through_stack
from bench.stackutil import cpu_seconds, pids, postgres_cpu
from deploy.local.stack import Stack

COMMAND = "python -m bench --only scale"
# Above the test replicas' offsets (10-30), so a bench run never collides with them.
EXTRA_OFFSET = 40
EXTRAS = ("parser-2", "worker-2")


@dataclass(frozen=True)
class Run:
    rate: float
    cpu_ms_per_document: float
    succeeded: int
    cpu_seconds: dict[str, float]  # per process, over the run


async def _measure(stack: Stack, documents: list[bytes]) -> Run:
    processes = pids(stack, EXTRAS)
    before = {name: cpu_seconds(pid) for name, pid in processes.items()} | {"postgres": postgres_cpu(stack)}
    seconds, succeeded = await through_stack(stack.gateway_address, documents)
    after = {name: cpu_seconds(pid) for name, pid in processes.items()} | {"postgres": postgres_cpu(stack)}
    spent = {name: after[name] - before[name] for name in after}
    return Run(len(documents) / seconds, sum(spent.values()) * 1000 / len(documents), succeeded, spent)


def _start_extras(stack: Stack) -> None:
    p = stack.profile
    parser_port, worker_port = p.parser + EXTRA_OFFSET, p.worker + EXTRA_OFFSET
    stack.start_extra("parser-2", "parser", parser_port, {"PARSER_PORT": str(parser_port)})
    stack.start_extra(
        "worker-2",
        "worker",
        worker_port,
        {"WORKER_PORT": str(worker_port), "PARSER_ADDRESS": f"127.0.0.1:{parser_port}"},
    )


async def run(stack: Stack, quick: bool) -> Section:
    count = 6 if quick else 40
    section = Section(f"Scale-out on one machine, {count} contracts: 2 parsers + 2 workers vs 1 + 1", COMMAND)
    originals, source = contracts(section, count, quick, first=50)  # not the pipeline section's
    section.load = f"{source}, unique bytes per run, submitted by 10 clients, completion watched"
    cores = os.cpu_count() or 1
    single = await _measure(stack, [unique(d) for d in originals])
    _start_extras(stack)
    try:
        double = await _measure(stack, [unique(d) for d in originals])
    finally:
        for name in EXTRAS:
            stack.stop(name)
    for label, measured in (("1 parser + 1 worker", single), ("2 parsers + 2 workers", double)):
        predicted = cores * 1000 / measured.cpu_ms_per_document
        section.add(f"{label}: throughput", measured.rate, "docs/s")
        section.add(f"{label}: stack CPU per document", measured.cpu_ms_per_document, "ms")
        section.add(f"{label}: model's prediction (cores / CPU per document)", predicted, "docs/s")
        section.add(f"{label}: measured / predicted", measured.rate / predicted, "x")
        section.add(f"{label}: SUCCEEDED", measured.succeeded, f"of {count}")
    both = double.cpu_seconds.get("parser", 0.0) + double.cpu_seconds.get("parser-2", 0.0)
    section.add(
        "2 parsers: the second replica's share of parser CPU",
        double.cpu_seconds.get("parser-2", 0.0) / both if both else 0.0,
        "x",
    )
    section.add("2+2 / 1+1 throughput", double.rate / single.rate, "x")
    section.add("2+2 / 1+1 CPU per document", double.cpu_ms_per_document / single.cpu_ms_per_document, "x")
    section.notes.append(__doc__.split("\n\n", 1)[0].replace("\n", " ") if __doc__ else "")
    return section
