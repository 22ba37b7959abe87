"""DeleteExtraction and retention on the real stack: after a deletion no row of PostgreSQL and no object
of the bucket names the extraction, a PDF another extraction of the tenant uses survives, and the
deletion finishes after an S3 outage instead of stopping half-way."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import Awaitable
from typing import Any, TypeAlias

import asyncpg
import grpc
import pytest
from google.protobuf import duration_pb2
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from clausework.pipeline.payloads import deletion_workflow_id, workflow_id
from contracts.internal.v1 import store_pb2, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import Stack
from orchestrator.schedules import RETENTION_SCHEDULE_ID
from services.store.extractions import ExtractionStore, Upload, _New, document_key
from services.store.janitor import Janitor
from services.store.objects import ObjectStore
from services.store.pagetokens import PageTokens
from tests import pdfs
from tests.conftest import wait_terminal

Gateway: TypeAlias = "extraction_pb2_grpc.ExtractionServiceAsyncStub"
TENANT = "default"  # the test stack's main gateway runs without authentication


def unique_contract(pages: int = 3) -> bytes:
    return pdfs.text_pdf([pdfs.CONTRACT_PAGES[i % 3] + f"\n\nRef {uuid.uuid4()}" for i in range(pages)])


async def create(gateway: Gateway, content: bytes, **options: Any) -> pb.Extraction:
    request = pb.CreateExtractionRequest(content=content, filename="c.pdf", options=pb.ExtractionOptions(**options))
    return await gateway.CreateExtraction(request, timeout=30)


async def traces(db: asyncpg.Pool, objects: ObjectStore, ident: str) -> list[str]:
    """Every row and object that names the extraction (the whole bucket is listed)."""
    found = [f"object {key}" for key in await objects.keys("") if ident in key]
    async with db.acquire() as connection:
        for table, column in (("extractions", "id"), ("clauses", "extraction_id")):
            count = await connection.fetchval(f"SELECT count(*) FROM {table} WHERE {column}::text = $1", ident)
            found += [f"{count} rows in {table}"] if count else []
    return found


async def deletion_done(temporal: Client, ident: str, timeout: float = 90) -> None:
    handle = temporal.get_workflow_handle(deletion_workflow_id(ident))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED:
                return
        except RPCError:  # not started yet
            pass
        await asyncio.sleep(0.3)
    raise AssertionError(f"the deletion of {ident} did not complete in {timeout:.0f}s")


async def assert_not_found(gateway: Gateway, ident: str) -> None:
    calls: list[Awaitable[Any]] = [
        gateway.GetExtraction(pb.GetExtractionRequest(id=ident), timeout=10),
        gateway.CancelExtraction(pb.CancelExtractionRequest(id=ident), timeout=10),
        gateway.DeleteExtraction(pb.DeleteExtractionRequest(id=ident), timeout=10),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    for stream in (
        gateway.WatchExtraction(pb.WatchExtractionRequest(id=ident), timeout=10),
        gateway.DownloadDocument(pb.DownloadDocumentRequest(id=ident), timeout=10),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in stream:
                pass
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await gateway.ListExtractions(pb.ListExtractionsRequest(page_size=500), timeout=10)
    assert ident not in {e.id for e in listed.extractions}


async def download(gateway: Gateway, ident: str) -> bytes:
    return b"".join([p.chunk async for p in gateway.DownloadDocument(pb.DownloadDocumentRequest(id=ident))])


async def test_delete_erases_everything_but_a_pdf_still_in_use(
    gateway: Gateway, db: asyncpg.Pool, objects: ObjectStore, temporal: Client
) -> None:
    content = unique_contract()
    first = await create(gateway, content)
    second = await create(gateway, content, reprocess=True)  # the same document row and PDF
    for each in (first, second):
        assert (await wait_terminal(gateway, each.id)).state == pb.STATE_SUCCEEDED
    assert await traces(db, objects, first.id), "a finished extraction has rows and objects"
    pdf_key = document_key(TENANT, first.document.sha256)

    await gateway.DeleteExtraction(pb.DeleteExtractionRequest(id=first.id), timeout=10)
    await assert_not_found(gateway, first.id)  # at once, and a second delete is NOT_FOUND too
    await deletion_done(temporal, first.id)
    assert await traces(db, objects, first.id) == []
    assert await objects.exists(pdf_key), "the other extraction still uses the PDF"
    assert await download(gateway, second.id) == content
    assert len((await gateway.GetExtraction(pb.GetExtractionRequest(id=second.id), timeout=10)).clauses) > 0

    await gateway.DeleteExtraction(pb.DeleteExtractionRequest(id=second.id), timeout=10)
    await deletion_done(temporal, second.id)
    assert await traces(db, objects, second.id) == []
    assert not await objects.exists(pdf_key), "the last extraction of the PDF took it along"
    async with db.acquire() as connection:
        assert not await connection.fetchval("SELECT count(*) FROM documents WHERE sha256 = $1", first.document.sha256)
    # The same bytes can be uploaded again afterwards: the PDF is stored anew.
    again = await create(gateway, content)
    assert (await wait_terminal(gateway, again.id)).state == pb.STATE_SUCCEEDED
    assert await download(gateway, again.id) == content


async def test_unknown_malformed_and_other_tenants_ids(gateway: Gateway, stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await gateway.DeleteExtraction(pb.DeleteExtractionRequest(id=str(uuid.uuid4())), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await gateway.DeleteExtraction(pb.DeleteExtractionRequest(id="not-a-uuid"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    mine = await create(gateway, unique_contract())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.port('store')}") as channel:
        store = store_pb2_grpc.StoreServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await store.DeleteExtraction(store_pb2.DeleteExtractionRequest(id=mine.id, tenant="another"), timeout=10)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await gateway.GetExtraction(pb.GetExtractionRequest(id=mine.id), timeout=10)).id == mine.id


async def test_delete_during_parsing_cancels_the_work_first(
    gateway: Gateway, db: asyncpg.Pool, objects: ObjectStore, temporal: Client
) -> None:
    created = await create(gateway, unique_contract(pages=300))
    async for update in gateway.WatchExtraction(pb.WatchExtractionRequest(id=created.id), timeout=60):
        if update.stage == pb.STAGE_PARSING:
            break
    await gateway.DeleteExtraction(pb.DeleteExtractionRequest(id=created.id), timeout=10)
    await assert_not_found(gateway, created.id)
    await deletion_done(temporal, created.id)
    extraction = await temporal.get_workflow_handle(workflow_id(created.id)).describe()
    assert extraction.status == WorkflowExecutionStatus.CANCELED, "the pipeline was stopped, not left running"
    assert await traces(db, objects, created.id) == []
    assert not await objects.exists(document_key(TENANT, created.document.sha256))


async def test_delete_while_s3_is_down_finishes_after(
    gateway: Gateway, db: asyncpg.Pool, objects: ObjectStore, temporal: Client, stack: Stack
) -> None:
    created = await create(gateway, unique_contract())
    assert (await wait_terminal(gateway, created.id)).state == pb.STATE_SUCCEEDED
    stack.stop("s3")
    try:
        await gateway.DeleteExtraction(pb.DeleteExtractionRequest(id=created.id), timeout=10)
        await assert_not_found(gateway, created.id)  # hidden at once, though nothing could be erased yet
        await asyncio.sleep(20)
        handle = temporal.get_workflow_handle(deletion_workflow_id(created.id))
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        async with db.acquire() as connection:
            assert await connection.fetchval("SELECT count(*) FROM extractions WHERE id = $1", uuid.UUID(created.id))
    finally:
        stack.start("s3")
    await deletion_done(temporal, created.id, timeout=120)
    assert await traces(db, objects, created.id) == []
    assert not await objects.exists(document_key(TENANT, created.document.sha256))


async def test_retention_deletes_by_the_schedule(
    gateway: Gateway, db: asyncpg.Pool, objects: ObjectStore, temporal: Client
) -> None:
    created = await create(gateway, unique_contract(), retention=duration_pb2.Duration(seconds=5))
    expires = created.expire_time.ToDatetime() - created.create_time.ToDatetime()
    assert abs(expires.total_seconds() - 5) < 1
    # Expired (finished or not, it is deleted either way) and deleted by the schedule's next run (every 2 s).
    await deletion_done(temporal, created.id, timeout=60)
    assert await traces(db, objects, created.id) == []
    assert not await objects.exists(document_key(TENANT, created.document.sha256))
    described = await temporal.get_schedule_handle(RETENTION_SCHEDULE_ID).describe()
    assert described.info.recent_actions, "the deletion came from a scheduled run"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create(gateway, unique_contract(), retention=duration_pb2.Duration(seconds=-1))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_upload_racing_the_purge_of_its_pdf_writes_it_again(
    gateway: Gateway, db: asyncpg.Pool, objects: ObjectStore, temporal: Client
) -> None:
    """An upload whose PDF write landed just before a purge deleted that PDF inserts its rows after the
    purge: the purge's note makes it check the object and write it again. A document never purged is
    not checked at all (its insert asks S3 nothing), and the janitor forgets old notes."""
    content = unique_contract()
    first = await create(gateway, content)
    assert (await wait_terminal(gateway, first.id)).state == pb.STATE_SUCCEEDED
    await gateway.DeleteExtraction(pb.DeleteExtractionRequest(id=first.id), timeout=10)
    await deletion_done(temporal, first.id)
    sha256 = first.document.sha256
    assert not await objects.exists(document_key(TENANT, sha256))
    note = "SELECT count(*) FROM purged_documents WHERE tenant = $1 AND sha256 = $2"
    async with db.acquire() as connection:
        assert await connection.fetchval(note, TENANT, sha256) == 1

    store = ExtractionStore(db, objects, PageTokens(os.urandom(32)))
    created = []
    for data, purged in ((content, True), (unique_contract(), False)):
        digest = hashlib.sha256(data).hexdigest()
        key = document_key(TENANT, digest)
        new = _New(TENANT, "", digest, len(data), key, "race.pdf", "race", None, "")
        row = await store._insert(new, Upload(content=data))  # as if its write had landed before
        assert row is not None
        created.append(str(row["id"]))
        assert await objects.exists(key) is purged, "only a purged document's object is checked and rewritten"
    assert await objects.get(document_key(TENANT, sha256)) == content

    janitor = Janitor(
        db, objects, store, interval_seconds=3600, upload_grace_seconds=0, settle_seconds=3600
    )  # fmt: skip
    assert (await janitor.sweep())["purge_notes"] >= 1
    async with db.acquire() as connection:
        assert await connection.fetchval(note, TENANT, sha256) == 0
    for ident in created:
        await wait_terminal(gateway, ident)
        await gateway.DeleteExtraction(pb.DeleteExtractionRequest(id=ident), timeout=10)
