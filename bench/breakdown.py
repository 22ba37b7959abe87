"""Where CreateExtraction's time goes: each step the gateway does synchronously, timed alone, one client,
sequentially, against the bench stack (the gateway's own figure for comparison):

- S3 put of the PDF (ObjectStore.put, the store's client code, from this process);
- the store's CreateExtraction over gRPC (S3 put + PostgreSQL lookups and insert);
- Temporal start_workflow (on a task queue no worker polls, so only the start is measured);
- the whole gateway CreateExtraction;
- the gateway at 1 and 32 clients with the pipeline paused (worker stopped, so the started workflows wait),
  with the CPU time each process spends per submit: what one submit costs the machine, pipeline aside.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc

from bench.common import Section, median, percentile, unique, upload_pdf
from bench.loadgen import CHANNEL_OPTIONS, run_load
from bench.stackutil import cpu_seconds, pids, postgres_cpu, wait_all
from contracts.internal.v1 import store_pb2, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import Stack

COMMAND = "python -m bench --only breakdown"


async def _timed(step: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    await step()
    timings = []
    for _ in range(runs):
        began = time.perf_counter()
        await step()
        timings.append((time.perf_counter() - began) * 1000)
    return timings


async def run(stack: Stack, quick: bool) -> Section:
    from temporalio.client import Client

    from clausework.pipeline.payloads import WORKFLOW_NAME, ExtractionInput

    runs = 5 if quick else 60
    document = upload_pdf()
    section = Section("CreateExtraction breakdown (1 client, sequential)", COMMAND)
    section.load = f"{len(document) // 1024} KB PDF, unique bytes each; {runs} calls per step after one warm-up"
    results: dict[str, list[float]] = {}

    async with stack.object_store() as objects:
        results["S3 put (aioboto3, as the store does)"] = await _timed(
            lambda: objects.put(f"uploads/bench-{uuid.uuid4()}.pdf", unique(document), "application/pdf"), runs
        )

    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.profile.store}", options=CHANNEL_OPTIONS) as channel:
        store = store_pb2_grpc.StoreServiceStub(channel)

        async def store_create() -> object:
            return await store.CreateExtraction(
                store_pb2.CreateExtractionRequest(
                    content=unique(document), filename="bench.pdf", request_id=str(uuid.uuid4()), tenant="bench"
                ),
                timeout=30,
            )

        results["store CreateExtraction over gRPC (S3 put + DB)"] = await _timed(store_create, runs)

    client = await Client.connect(stack.env()["TEMPORAL_ADDRESS"])

    async def start() -> object:
        ident = str(uuid.uuid4())
        return await client.start_workflow(
            WORKFLOW_NAME,
            ExtractionInput(extraction_id=ident, document_key="documents/none"),
            id=f"bench-{ident}",
            task_queue="bench-nobody-polls",
        )

    results["Temporal start_workflow"] = await _timed(start, runs)

    async with grpc.aio.insecure_channel(stack.gateway_address, options=CHANNEL_OPTIONS) as channel:
        gateway = extraction_pb2_grpc.ExtractionServiceStub(channel)

        async def create() -> object:
            return await gateway.CreateExtraction(
                pb.CreateExtractionRequest(content=unique(document), request_id=str(uuid.uuid4())), timeout=30
            )

        results["gateway CreateExtraction (all of it; the pipeline runs the workflows it starts)"] = await _timed(
            create, runs
        )

    for name, timings in results.items():
        section.add(f"{name}: p50", median(timings), "ms")
        section.add(f"{name}: p99", percentile(timings, 99), "ms")
    await _paused_pipeline(stack, section, document, quick)
    return section


async def _paused_pipeline(stack: Stack, section: Section, document: bytes, quick: bool) -> None:
    processes = {name: pid for name, pid in pids(stack).items() if name in ("gateway", "store", "temporal", "s3")}
    stack.stop("worker")
    ids: list[str] = []
    try:
        single = await run_load(stack.gateway_address, document, 1, 5 if quick else 60)
        before = {name: cpu_seconds(pid) for name, pid in processes.items()}
        before["postgres"] = postgres_cpu(stack)
        before["load generator"] = time.process_time()
        many = await run_load(stack.gateway_address, document, 32, 2 if quick else 15)
        after = {name: cpu_seconds(pid) for name, pid in processes.items()}
        after["postgres"] = postgres_cpu(stack)
        after["load generator"] = time.process_time()
        ids = single.ids + many.ids
    finally:
        stack.start("worker")
    section.add("pipeline paused, gateway at 1 client: p50", single.p(50), "ms")
    section.add("pipeline paused, gateway at 32 clients: p99", many.p(99), "ms")
    section.add("pipeline paused, gateway at 32 clients: submits/s", many.rate, "/s")
    calls = max(1, len(many.latencies))
    total = 0.0
    for name in after:
        spent = (after[name] - before[name]) * 1000 / calls
        total += spent
        section.add(f"CPU per submit at 32 clients: {name}", spent, "ms")
    section.add("CPU per submit at 32 clients: all of these", total, "ms")
    section.add("=> submits/s these cores can sustain at most", (os.cpu_count() or 1) * 1000 / total, "/s")
    # What the infrastructure alone (Temporal's start, the S3 put, PostgreSQL) leaves for our processes.
    infrastructure = sum((after[n] - before[n]) * 1000 / calls for n in ("temporal", "s3", "postgres") if n in after)
    section.add(
        "=> at most, were gateway and store free (infrastructure only)",
        (os.cpu_count() or 1) * 1000 / infrastructure,
        "/s",
    )
    # Let the workflows started meanwhile finish, so what follows starts from an idle pipeline.
    await wait_all(stack.gateway_address, ids, timeout=900)
