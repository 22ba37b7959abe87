"""Pipeline throughput on CUAD contracts (embedded llm backend): through the stack (gateway → Temporal →
parser / llm / store over gRPC) vs an in-process loop running the same parse → extract → store functions
without gRPC or Temporal, in the same run, on the same machine.

Fair on a small machine: the stack parses and extracts at most `cpu_count` documents at once (parser
concurrency defaults to the core count, llm concurrency to 2), so the in-process loop gets a pool of `cpu_count` worker
processes for the CPU work (parse_pdf + EmbeddedExtractor.extract + to_clauses) and stores through the
same ExtractionStore / ObjectStore code into the same PostgreSQL and S3. Both sides use every core; what
differs is exactly the gRPC hops, object round trips and Temporal's bookkeeping.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from concurrent.futures import ProcessPoolExecutor

from bench.common import Section, contracts, page_count, unique
from bench.loadgen import run_load
from bench.stackutil import Watcher, cpu_seconds, frozen, pids, postgres_cpu
from contracts.v1 import extraction_pb2 as pb
from deploy.local.stack import SERVICES, Stack

COMMAND = "python -m bench --only pipeline"

_extractor: object = None


def _init_worker() -> None:
    global _extractor
    from clausework.model.embedded import EmbeddedExtractor

    _extractor = EmbeddedExtractor.load()


def _cpu_work(data: bytes) -> tuple[bytes, int]:
    """parse → extract → clauses, as the parser and llm services do; returns ExtractedClauses bytes."""
    from clausework.clauses import to_clauses
    from clausework.model.embedded import EmbeddedExtractor
    from clausework.pdf import parse_pdf
    from contracts.internal.v1 import llm_pb2

    assert isinstance(_extractor, EmbeddedExtractor)
    parsed = parse_pdf(data)
    spans = _extractor.extract(parsed.text)
    result = llm_pb2.ExtractedClauses(clauses=to_clauses(parsed, spans), model=_extractor.model_name)
    return result.SerializeToString(), len(parsed.pages)


async def in_process(stack: Stack, documents: list[bytes]) -> float:
    """Seconds for the in-process loop over `documents`."""
    import asyncpg

    from clausework.pipeline.payloads import clauses_key
    from services.store.extractions import ExtractionStore, Upload
    from services.store.pagetokens import PageTokens

    workers = os.cpu_count() or 1
    loop = asyncio.get_running_loop()
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=workers + 2)
    assert pool is not None
    with ProcessPoolExecutor(workers, initializer=_init_worker) as executor:
        # Warm the pool (model loads) outside the timing, as the llm service loads its model at start-up.
        await asyncio.gather(*(loop.run_in_executor(executor, _cpu_work, documents[0]) for _ in range(workers)))
        async with stack.object_store() as objects:
            store = ExtractionStore(pool, objects, PageTokens(os.urandom(32)))
            slots = asyncio.Semaphore(workers)

            async def one(data: bytes) -> None:
                async with slots:
                    created = await store.create(Upload(content=data), "bench.pdf", str(uuid.uuid4()))
                    clauses, _pages = await loop.run_in_executor(executor, _cpu_work, data)
                    key = clauses_key(created.extraction.id)
                    await objects.put(key, clauses)
                    await store.complete(created.extraction.id, key)

            began = time.perf_counter()
            await asyncio.gather(*(one(d) for d in documents))
            seconds = time.perf_counter() - began
    await pool.close()
    return seconds


async def through_stack(gateway: str, documents: list[bytes]) -> tuple[float, int]:
    """Seconds from the first submit to the last SUCCEEDED; and how many succeeded. Each id is watched
    (WatchExtraction) from its submit on, so the end is seen when it happens and nothing polls."""
    began = time.perf_counter()
    # Submitted at once by 10 clients, each its share of the documents.
    clients = 10
    share = [documents[i::clients] for i in range(clients)]
    async with Watcher(gateway, timeout=1800) as watcher:

        async def client(docs: list[bytes]) -> None:
            for data in docs:
                await run_load(gateway, data, 1, 1, on_id=watcher.watch)

        await asyncio.gather(*(client(s) for s in share))
        done = await watcher.wait()
    seconds = time.perf_counter() - began
    return seconds, sum(1 for e in done.values() if e.state == pb.STATE_SUCCEEDED)


async def run(stack: Stack, quick: bool) -> Section:
    count = 6 if quick else 50
    section = Section(f"Pipeline throughput, {count} contracts: stack vs in-process", COMMAND)
    originals, source = contracts(section, count, quick)
    pages = sum(page_count(d) for d in originals)
    section.load = f"{source}, {pages} pages; unique bytes per run; in-process pool of {os.cpu_count()} processes"
    processes = pids(stack)
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    before["postgres"] = postgres_cpu(stack)
    stack_seconds, succeeded = await through_stack(stack.gateway_address, [unique(d) for d in originals])
    after = {name: cpu_seconds(pid) for name, pid in processes.items()}
    after["postgres"] = postgres_cpu(stack)
    # The stack's own processes are stopped meanwhile (PostgreSQL and S3 keep serving the loop): its rows
    # are written by ExtractionStore as the store would, and the store's outbox relay would otherwise start
    # a real workflow for each, running the pipeline twice at once.
    with frozen(stack, (*SERVICES, "temporal")):
        local_seconds = await in_process(stack, [unique(d) for d in originals])
    stack_rate = count / stack_seconds
    local_rate = count / local_seconds
    section.add("through the stack", stack_rate, "docs/s")
    section.add("through the stack", pages / stack_seconds, "pages/s")
    section.add("in-process loop", local_rate, "docs/s")
    section.add("stack / in-process", stack_rate / local_rate, "x", "≥ 0.85x", stack_rate / local_rate >= 0.85)
    section.add("SUCCEEDED through the stack", succeeded, f"of {count}")
    for name in after:
        section.add(f"stack CPU per document: {name}", (after[name] - before[name]) * 1000 / count, "ms")
    section.add("stack CPU per document: all of these", sum(after[n] - before[n] for n in after) * 1000 / count, "ms")
    local_ms = local_seconds * (os.cpu_count() or 1) * 1000 / count
    section.add("in-process wall time per document x cores", local_ms, "ms")
    # The in-process loop has no Temporal; on shared cores the server's CPU per document alone bounds the
    # ratio, however little our own processes added.
    temporal_ms = (after["temporal"] - before["temporal"]) * 1000 / count if "temporal" in after else 0.0
    section.add(
        "ceiling of stack / in-process with Temporal on the same cores: in-process / (in-process + Temporal)",
        local_ms / (local_ms + temporal_ms),
        "x",
    )
    section.notes.append(__doc__.split("\n\n", 1)[1].replace("\n", " ").strip() if __doc__ else "")
    return section
