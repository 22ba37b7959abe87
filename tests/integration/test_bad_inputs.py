"""Bad uploads: rejected at once with a clear status (nothing stored), or FAILED with a reason and no retries."""

from __future__ import annotations

import uuid
from typing import TypeAlias

import asyncpg
import grpc
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from orchestrator.payloads import workflow_id
from services.store.objects import ObjectStore
from tests import pdfs
from tests.conftest import wait_terminal

Gateway: TypeAlias = "extraction_pb2_grpc.ExtractionServiceAsyncStub"
MiB = 1024 * 1024


async def counts(db: asyncpg.Pool, objects: ObjectStore) -> tuple[int, int, int]:
    async with db.acquire() as connection:
        extractions = await connection.fetchval("SELECT count(*) FROM extractions")
        documents = await connection.fetchval("SELECT count(*) FROM documents")
    return extractions, documents, len(await objects.keys("documents/"))


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (b"", grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, grpc.StatusCode.INVALID_ARGUMENT, "not a PDF"),
        (b"hello, this is text renamed to .pdf", grpc.StatusCode.INVALID_ARGUMENT, "not a PDF"),
        (b"%PDF-1.7\n" + b"\0" * (32 * MiB), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit"),
    ],
    ids=["empty", "png", "text", "over-32MiB"],
)
async def test_rejected_at_once_and_nothing_stored(
    gateway: Gateway, db: asyncpg.Pool, objects: ObjectStore, content: bytes, code: grpc.StatusCode, message: str
) -> None:
    before = await counts(db, objects)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await gateway.CreateExtraction(
            pb.CreateExtractionRequest(content=content, filename="x.pdf", request_id=str(uuid.uuid4())), timeout=30
        )
    assert raised.value.code() == code
    assert message in (raised.value.details() or "")
    assert await counts(db, objects) == before


async def test_far_over_the_limit_is_resource_exhausted(gateway: Gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await gateway.CreateExtraction(
            pb.CreateExtractionRequest(content=b"%PDF-1.7\n" + b"\0" * (40 * MiB)), timeout=30
        )
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("content", "reason", "message"),
    [
        (pdfs.truncated_pdf(), "CORRUPT_PDF", "truncated"),
        (pdfs.encrypted_pdf(), "ENCRYPTED_PDF", "encrypted"),
        (pdfs.image_only_pdf(), "NO_TEXT_LAYER", "no text layer"),
    ],
    ids=["truncated", "encrypted", "scanned"],
)
async def test_unusable_pdf_fails_with_reason_without_retries(
    gateway: Gateway, temporal: Client, content: bytes, reason: str, message: str
) -> None:
    created = await gateway.CreateExtraction(
        pb.CreateExtractionRequest(content=content, filename="bad.pdf", request_id=str(uuid.uuid4())), timeout=30
    )
    extraction = await wait_terminal(gateway, created.id)

    assert extraction.state == pb.STATE_FAILED
    assert extraction.error.code == reason
    assert message in extraction.error.message
    assert not extraction.clauses

    handle = temporal.get_workflow_handle(workflow_id(created.id))
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED
    parse_attempts = [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and event.activity_task_started_event_attributes.attempt
    ]
    assert parse_attempts and max(parse_attempts) == 1, "input errors are not retried"


async def test_unknown_and_malformed_ids(gateway: Gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await gateway.GetExtraction(pb.GetExtractionRequest(id=str(uuid.uuid4())), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    for bad in ("", "not-a-uuid", "../../etc/passwd"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await gateway.GetExtraction(pb.GetExtractionRequest(id=bad), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
