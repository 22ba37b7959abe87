"""Resilience smoke tests: a service down mid-flight, a worker SIGKILLed mid-run — the extraction still
SUCCEEDS, with exactly one result stored."""

from __future__ import annotations

import asyncio
import uuid
from typing import TypeAlias

import asyncpg
import grpc
import pymupdf
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clausework.runtime.rpc import write_object
from contracts.internal.v1 import parser_pb2, parser_pb2_grpc, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import Stack
from services.store.objects import ObjectStore
from tests import pdfs
from tests.conftest import wait_terminal

Gateway: TypeAlias = "extraction_pb2_grpc.ExtractionServiceAsyncStub"


def many_pages(n: int) -> bytes:
    return pdfs.text_pdf([pdfs.CONTRACT_PAGES[i % 3] + f"\n\nPage {i + 1}." for i in range(n)])


def repeated_pages(copies: int, pages: int = 100) -> bytes:
    """A long PDF made fast: one generated document appended to itself (parsing it takes seconds)."""
    base = pymupdf.open(stream=many_pages(pages))
    combined = pymupdf.open()
    for _ in range(copies):
        combined.insert_pdf(base)
    data: bytes = combined.tobytes()
    return data


async def submit(gateway: Gateway, content: bytes) -> str:
    created = await gateway.CreateExtraction(
        pb.CreateExtractionRequest(content=content, filename="c.pdf", request_id=str(uuid.uuid4())), timeout=30
    )
    return created.id


async def wait_for(gateway: Gateway, extraction_id: str, stage: pb.Stage.ValueType, timeout: float = 60) -> None:
    for _ in range(int(timeout / 0.05)):
        extraction = await gateway.GetExtraction(pb.GetExtractionRequest(id=extraction_id), timeout=10)
        if extraction.stage >= stage:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached {pb.Stage.Name(stage)}")


async def assert_exactly_one_result(extraction: pb.Extraction, db: asyncpg.Pool, objects: ObjectStore) -> None:
    ident = uuid.UUID(extraction.id)
    async with db.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM extractions WHERE id = $1", ident) == 1
        clause_rows = await connection.fetchval("SELECT count(*) FROM clauses WHERE extraction_id = $1", ident)
    assert clause_rows == len(extraction.clauses)
    assert [k for k in await objects.keys("results/") if extraction.id in k] == [f"results/{extraction.id}.json"]
    assert sorted(k for k in await objects.keys(f"extractions/{extraction.id}/")) == [
        f"extractions/{extraction.id}/clauses.pb",
        f"extractions/{extraction.id}/parsed.pb",
    ]


async def test_parser_down_while_document_in_flight(
    stack: Stack, gateway: Gateway, db: asyncpg.Pool, objects: ObjectStore
) -> None:
    stack.stop("parser")
    try:
        extraction_id = await submit(gateway, pdfs.contract_pdf())
        await wait_for(gateway, extraction_id, pb.STAGE_PARSING)
        await asyncio.sleep(3)  # the parse activity fails with UNAVAILABLE and is retried meanwhile
        still = await gateway.GetExtraction(pb.GetExtractionRequest(id=extraction_id), timeout=10)
        assert still.state == pb.STATE_RUNNING
    finally:
        await asyncio.to_thread(stack.start, "parser")
    extraction = await wait_terminal(gateway, extraction_id)
    assert extraction.state == pb.STATE_SUCCEEDED, extraction.error
    await assert_exactly_one_result(extraction, db, objects)


async def test_worker_sigkilled_mid_run(stack: Stack, gateway: Gateway, db: asyncpg.Pool, objects: ObjectStore) -> None:
    extraction_id = await submit(gateway, many_pages(120))
    await wait_for(gateway, extraction_id, pb.STAGE_PARSING)
    stack.kill("worker")
    try:
        await asyncio.sleep(1)
        during = await gateway.GetExtraction(pb.GetExtractionRequest(id=extraction_id), timeout=10)
        assert during.state == pb.STATE_RUNNING, "killed before the run finished"
    finally:
        await asyncio.to_thread(stack.start, "worker")
    extraction = await wait_terminal(gateway, extraction_id, timeout=180)
    assert extraction.state == pb.STATE_SUCCEEDED, extraction.error
    await assert_exactly_one_result(extraction, db, objects)


async def test_sigterm_drains_in_flight_calls_and_reports_not_serving(stack: Stack) -> None:
    """Graceful shutdown: health watchers see NOT_SERVING, an in-flight parse still completes."""
    key = f"documents/test/{uuid.uuid4()}.pdf"
    async with grpc.aio.insecure_channel(stack.env()["STORE_ADDRESS"]) as store_channel:
        await write_object(store_pb2_grpc.StoreServiceStub(store_channel), key, repeated_pages(60), 60)
    address = stack.env()["PARSER_ADDRESS"]
    stopping: asyncio.Future[None] | None = None
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            parse = asyncio.ensure_future(
                parser_pb2_grpc.ParserServiceStub(channel).ParseDocument(
                    parser_pb2.ParseDocumentRequest(source_key=key, target_key=f"extractions/{uuid.uuid4()}/parsed.pb"),
                    timeout=60,
                )
            )
            await asyncio.sleep(0.3)
            stopping = asyncio.ensure_future(asyncio.to_thread(stack.stop, "parser"))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
            assert not parse.done(), "the parse must still be in flight when shutdown begins"
            answer = await parse
            assert answer.page_count == 6000
    finally:
        if stopping is not None:
            await stopping  # a failed assertion above must not race the restart with the stop
        await asyncio.to_thread(stack.start, "parser")
