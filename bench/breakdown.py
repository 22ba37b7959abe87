"""Where CreateExtraction's time goes: each step the gateway does synchronously, timed alone, one client,
sequentially, against the bench stack (the gateway's own figure for comparison):

- S3 put of the PDF (ObjectStore.put, the store's client code, from this process);
- the store's CreateExtraction over gRPC (S3 put + PostgreSQL lookups and insert);
- Temporal start_workflow (on a task queue no worker polls, so only the start is measured);
- the whole gateway CreateExtraction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import grpc

from bench.common import Section, median, percentile, unique, upload_pdf
from bench.loadgen import CHANNEL_OPTIONS
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

    from orchestrator.payloads import WORKFLOW_NAME, ExtractionInput
    from services.store.objects import ObjectStore

    runs = 5 if quick else 60
    document = upload_pdf()
    section = Section("CreateExtraction breakdown (1 client, sequential)", COMMAND)
    section.load = f"{len(document) // 1024} KB PDF, unique bytes each; {runs} calls per step after one warm-up"
    results: dict[str, list[float]] = {}

    async with ObjectStore(
        endpoint_url=stack.s3_endpoint,
        bucket="clausework",
        region="us-east-1",
        access_key_id="clausework",
        secret_access_key="clausework",
    ) as objects:
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

        results["gateway CreateExtraction (all of it)"] = await _timed(create, runs)

    for name, timings in results.items():
        section.add(f"{name}: p50", median(timings), "ms")
        section.add(f"{name}: p99", percentile(timings, 99), "ms")
    return section
