"""The bad-input corpus (tests/corpus) against the real stack, through the public gateway.

For every case: the expected status or FAILED reason; a bounded time; nothing half stored (a refused
call leaves no row and no object; a FAILED extraction is one FAILED row without clauses, result or
intermediate objects); no retries burned (every activity ran once); and, after the whole corpus, every
service still healthy, a normal contract still extracted, and the parser's memory within budget.

Cases with `auth` set go to a strict gateway replica this module starts (STRICT_ENV: authentication on,
a 3 s upload idle timeout, 2 uploads per tenant), so the stack's own gateway keeps its defaults.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from clausework.pipeline.payloads import parsed_key, workflow_id
from clausework.runtime.errors import error_reason
from contracts.internal.v1 import store_pb2, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import Stack
from services.gateway.auth import hash_key
from services.store.extractions import result_key
from services.store.objects import ObjectStore
from tests import corpus
from tests.conftest import wait_quiet, wait_terminal

Gateway: TypeAlias = "extraction_pb2_grpc.ExtractionServiceAsyncStub"
MiB = 1024 * 1024
# Seconds a refusal may take, and an accepted case until its terminal state.
REFUSE_SECONDS = 15.0
TERMINAL_SECONDS = 60.0
# Peak resident memory of the parser (the server process; each document's child is limited separately).
PARSER_BUDGET_MIB = 600
GATEWAY_BUDGET_MIB = 600
CREATE = "/contracts.v1.ExtractionService/CreateExtraction"
STRICT = "gateway-strict"
STRICT_KEY = "corpus-key-" + "c" * 32
STRICT_CAP = 2
STRICT_ENV = {
    "GATEWAY_AUTH_DISABLED": "false",
    "GATEWAY_API_KEYS": f"corpus:{hash_key(STRICT_KEY)}",
    "GATEWAY_UPLOAD_IDLE_SECONDS": "3",
    "GATEWAY_MAX_UPLOADS_PER_TENANT": str(STRICT_CAP),
}
CREDENTIALS: dict[str, tuple[tuple[str, str], ...]] = {
    "off": (),
    "valid": (("authorization", f"Bearer {STRICT_KEY}"),),
    "wrong": (("authorization", "Bearer wrong-" + STRICT_KEY),),
    "missing": (),
}
# Peak RSS growth allowed while a strict gateway's tenant cap refuses 24 concurrent 32 MiB uploads
# (~15-30 MiB measured; 2.2 GB before uploads were capped before their body was read).
OVER_CAP_GROWTH_MIB = 120


@pytest.fixture(scope="module", autouse=True)
async def quiet(stack: Stack) -> None:
    """The corpus counts what is stored before and after each case: earlier tests' work must have landed."""
    await wait_quiet(stack)


@pytest.fixture(scope="module")
async def channel(stack: Stack) -> AsyncIterator[grpc.aio.Channel]:
    options = [("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", -1)]
    async with grpc.aio.insecure_channel(stack.gateway_address, options=options) as opened:
        yield opened


@pytest.fixture(scope="module")
def api(channel: grpc.aio.Channel) -> Gateway:
    return extraction_pb2_grpc.ExtractionServiceStub(channel)


@dataclass
class Target:
    """A gateway process: its channel, stub and pid."""

    channel: grpc.aio.Channel
    api: Gateway
    pid: int
    address: str


@pytest.fixture(scope="module")
async def strict(stack: Stack) -> AsyncIterator[Target]:
    """A second gateway with authentication on and a short idle timeout (STRICT_ENV)."""
    port = stack.profile.gateway + 15
    stack.start_extra(STRICT, "gateway", port, {**STRICT_ENV, "GATEWAY_PORT": str(port)})
    pid = stack._pid(STRICT)
    assert pid is not None
    options = [("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", -1)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as opened:
            stub = extraction_pb2_grpc.ExtractionServiceStub(opened)
            yield Target(opened, stub, pid, f"127.0.0.1:{port}")
    finally:
        stack.stop(STRICT)


def reset_peak(pid: int) -> int:
    """Resets the process's VmHWM to its current RSS (Linux >= 4.0); returns that RSS in KiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return memory_kib(pid, "VmRSS")


async def stored(db: asyncpg.Pool, objects: ObjectStore) -> dict[str, int]:
    """How many rows and objects of each kind exist."""
    async with db.acquire() as connection:
        counts = {
            table: int(await connection.fetchval(f"SELECT count(*) FROM {table}"))
            for table in ("extractions", "documents", "clauses")
        }
    for prefix in ("documents/", "uploads/", "extractions/", "results/"):
        counts[prefix] = len(await objects.keys(prefix))
    return counts


def request_id(case: corpus.Upload) -> str:
    return str(uuid.uuid4()) if case.request_id is None else case.request_id


async def create_with_raw_filename(channel: grpc.aio.Channel, case: corpus.Upload, content: bytes) -> pb.Extraction:
    """CreateExtraction with the filename's bytes sent as they are: no protobuf library lets a client
    put invalid UTF-8 in a string field, but anything can reach the port."""
    assert case.raw_filename is not None
    wire = pb.CreateExtractionRequest(content=content, request_id=request_id(case)).SerializeToString()
    wire += b"\x12" + bytes([len(case.raw_filename)]) + case.raw_filename  # field 2 (filename), length-delimited
    call = channel.unary_unary(CREATE, request_serializer=None, response_deserializer=pb.Extraction.FromString)
    answer: pb.Extraction = await call(wire, timeout=30)
    return answer


async def stream_upload(
    api: Gateway, case: corpus.Upload, content: bytes, credentials: tuple[tuple[str, str], ...] = ()
) -> pb.Extraction:
    metadata = pb.UploadMetadata(filename=case.filename, request_id=request_id(case), size_bytes=case.declared_size)

    async def messages() -> AsyncIterator[pb.UploadExtractionRequest]:
        if case.metadata_first:
            yield pb.UploadExtractionRequest(metadata=metadata)
        if case.stall_after_metadata:
            await asyncio.sleep(REFUSE_SECONDS * 2)  # the call ends first; then this generator is dropped
        for start in range(0, len(content), MiB):
            yield pb.UploadExtractionRequest(chunk=content[start : start + MiB])
            if case.metadata_twice:
                yield pb.UploadExtractionRequest(metadata=metadata)

    return await api.UploadExtraction(messages(), metadata=credentials, timeout=60)


async def send(channel: grpc.aio.Channel, api: Gateway, case: corpus.Upload, content: bytes) -> pb.Extraction:
    if case.raw_filename is not None:
        return await create_with_raw_filename(channel, case, content)
    credentials = CREDENTIALS[case.auth]
    if case.stream:
        return await stream_upload(api, case, content, credentials)
    request = pb.CreateExtractionRequest(content=content, filename=case.filename, request_id=request_id(case))
    return await api.CreateExtraction(request, metadata=credentials, timeout=30)


async def refusal(channel: grpc.aio.Channel, api: Gateway, case: corpus.Upload, content: bytes) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await send(channel, api, case, content)
    return raised.value


async def activity_attempts(temporal: Client, extraction_id: str) -> tuple[WorkflowExecutionStatus | None, list[int]]:
    handle = temporal.get_workflow_handle(workflow_id(extraction_id))
    attempts = [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    return (await handle.describe()).status, attempts


async def check_failed(
    extraction: pb.Extraction, expect: corpus.Failed, db: asyncpg.Pool, objects: ObjectStore
) -> None:
    assert extraction.state == pb.STATE_FAILED, extraction
    assert extraction.error.code == expect.reason, extraction.error
    assert expect.message in extraction.error.message, extraction.error.message
    assert not extraction.clauses
    async with db.acquire() as connection:
        rows = await connection.fetch(
            "SELECT state, result_key FROM extractions WHERE id = $1", uuid.UUID(extraction.id)
        )
        clauses = await connection.fetchval(
            "SELECT count(*) FROM clauses WHERE extraction_id = $1", uuid.UUID(extraction.id)
        )
    assert [(r["state"], r["result_key"]) for r in rows] == [(pb.STATE_FAILED, None)]
    assert clauses == 0
    assert not await objects.exists(result_key(extraction.id))
    assert await objects.keys(f"extractions/{extraction.id}/") == [], "no intermediate objects"


async def check_succeeded(
    extraction: pb.Extraction, expect: corpus.Succeeded, db: asyncpg.Pool, objects: ObjectStore
) -> None:
    assert extraction.state == pb.STATE_SUCCEEDED, extraction.error
    assert extraction.document.page_count == expect.page_count
    assert extraction.document.filename == expect.filename
    assert extraction.document.char_count > 0
    for clause in extraction.clauses:
        assert 0 <= clause.char_start < clause.char_end <= extraction.document.char_count
        assert 1 <= clause.page_start <= clause.page_end <= expect.page_count
    # Every valid case carries the governing-law sentence; the model must find it.
    assert "Governing Law" in {c.category for c in extraction.clauses}, [c.category for c in extraction.clauses]
    async with db.acquire() as connection:
        clauses = await connection.fetchval(
            "SELECT count(*) FROM clauses WHERE extraction_id = $1", uuid.UUID(extraction.id)
        )
    assert clauses == len(extraction.clauses)
    assert await objects.exists(result_key(extraction.id))
    assert await objects.exists(parsed_key(extraction.id))


@pytest.mark.parametrize("case", corpus.UPLOADS, ids=[case.name for case in corpus.UPLOADS])
async def test_upload(
    case: corpus.Upload,
    channel: grpc.aio.Channel,
    api: Gateway,
    db: asyncpg.Pool,
    objects: ObjectStore,
    temporal: Client,
    stack: Stack,
    strict: Target,
) -> None:
    if case.auth != "off":
        channel, api = strict.channel, strict.api
    pid = strict.pid if case.auth != "off" else stack._pid("gateway")
    assert pid is not None
    content = case.make()
    before = await stored(db, objects)
    started = time.monotonic()
    expect = case.expect

    if isinstance(expect, corpus.Rejected):
        rss = reset_peak(pid)
        errors = await asyncio.gather(*(refusal(channel, api, case, content) for _ in range(case.concurrent)))
        growth = (memory_kib(pid, "VmHWM") - rss) // 1024
        assert time.monotonic() - started < REFUSE_SECONDS
        for error in errors:
            assert (error.code(), error_reason(error)) == (expect.code, expect.reason), error.details()
            assert expect.message in (error.details() or ""), error.details()
        if case.max_gateway_growth_mib is not None:
            print(f"{case.name}: gateway peak RSS grew {growth} MiB in {time.monotonic() - started:.1f} s")
            assert growth <= case.max_gateway_growth_mib, f"gateway peak RSS grew {growth} MiB"
        assert await stored(db, objects) == before, "a refused upload leaves nothing behind"
        return
    assert case.concurrent == 1, "concurrent cases must be Rejected"

    created = await send(channel, api, case, content)
    assert created.state == pb.STATE_PENDING, "a new extraction, not a reused one"
    extraction = await wait_terminal(api, created.id, timeout=TERMINAL_SECONDS)
    elapsed = time.monotonic() - started
    assert elapsed < TERMINAL_SECONDS
    if isinstance(expect, corpus.Failed):
        await check_failed(extraction, expect, db, objects)
    else:
        await check_succeeded(extraction, expect, db, objects)
    after = await stored(db, objects)
    assert after["extractions"] == before["extractions"] + 1, "exactly one row"
    assert after["uploads/"] == 0, "no streamed upload left behind"

    status, attempts = await activity_attempts(temporal, created.id)
    expected_status = (
        WorkflowExecutionStatus.FAILED if isinstance(expect, corpus.Failed) else WorkflowExecutionStatus.COMPLETED
    )
    assert status == expected_status
    assert attempts and set(attempts) == {1}, f"activities retried: attempts {attempts}"


@pytest.mark.parametrize("case", corpus.CALLS, ids=[case.name for case in corpus.CALLS])
async def test_malformed_call(case: corpus.Call, api: Gateway, db: asyncpg.Pool, objects: ObjectStore) -> None:
    before = await stored(db, objects)
    method: Any = getattr(api, case.method)
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        call = method(case.request(), timeout=10)
        if hasattr(call, "__aiter__"):  # server streaming: the status comes with the first read
            async for _ in call:
                pass
        else:
            await call
    assert time.monotonic() - started < REFUSE_SECONDS
    error = raised.value
    assert error.code() == case.expect.code, error.details()
    assert error_reason(error) == case.expect.code.name
    assert case.expect.message in (error.details() or ""), error.details()
    assert await stored(db, objects) == before


async def test_store_writes_nothing_for_a_stream_without_finish(stack: Stack, objects: ObjectStore) -> None:
    """The store's side of "nothing half stored": a WriteObject stream whose client gave up mid-way can
    reach the server as a normal end of stream; without the finish flag no object may be written."""
    key = f"uploads/{uuid.uuid4()}.pdf"

    async def unfinished() -> AsyncIterator[store_pb2.WriteObjectRequest]:
        yield store_pb2.WriteObjectRequest(key=key, data=b"%PDF-1.7 first half")

    async def finished() -> AsyncIterator[store_pb2.WriteObjectRequest]:
        yield store_pb2.WriteObjectRequest(key=key, data=b"%PDF-1.7 first half")
        yield store_pb2.WriteObjectRequest(data=b" second half", finish=True)

    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.port('store')}") as channel:
        store = store_pb2_grpc.StoreServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await store.WriteObject(unfinished(), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert not await objects.exists(key)
        written = await store.WriteObject(finished(), timeout=10)
    assert written.size_bytes == len(b"%PDF-1.7 first half second half")
    assert await objects.get(key) == b"%PDF-1.7 first half second half"
    await objects.delete(key)


async def test_store_discards_uploads_only(stack: Stack, objects: ObjectStore) -> None:
    """DiscardUpload (the gateway's for an upload whose client gave up after the last chunk) deletes an
    uploads/ object, again harmlessly, and refuses every other key."""
    key = f"uploads/{uuid.uuid4()}.pdf"
    await objects.put(key, b"%PDF-1.7 abandoned")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.port('store')}") as channel:
        store = store_pb2_grpc.StoreServiceStub(channel)
        for _ in range(2):
            await store.DiscardUpload(store_pb2.DiscardUploadRequest(key=key), timeout=10)
            assert not await objects.exists(key)
        document = f"results/{uuid.uuid4()}.json"
        await objects.put(document, b"{}")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await store.DiscardUpload(store_pb2.DiscardUploadRequest(key=document), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "only uploads/ objects can be discarded" in (raised.value.details() or "")
    assert await objects.exists(document)
    await objects.delete(document)


async def test_uploads_over_the_tenant_cap_are_refused_before_their_body_is_read(
    strict: Target, db: asyncpg.Pool, objects: ObjectStore
) -> None:
    """While two streams of a tenant hold its upload slots (STRICT_CAP), 24 concurrent 32 MiB uploads of
    the same tenant are RESOURCE_EXHAUSTED at once, without the gateway receiving their bodies."""
    before = await stored(db, objects)
    stop = asyncio.Event()
    credentials = CREDENTIALS["valid"]

    async def trickle() -> AsyncIterator[pb.UploadExtractionRequest]:
        yield pb.UploadExtractionRequest(metadata=pb.UploadMetadata(filename="held.pdf"))
        yield pb.UploadExtractionRequest(chunk=b"%PDF-1.7\n")
        while not stop.is_set():  # well inside the idle timeout
            await asyncio.sleep(0.2)
            yield pb.UploadExtractionRequest(chunk=b"\n")

    # The held streams get a connection of their own, so their chunks do not queue behind the bodies.
    own = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(strict.address, options=own) as holding:
        holder = extraction_pb2_grpc.ExtractionServiceStub(holding)
        held = [holder.UploadExtraction(trickle(), metadata=credentials, timeout=60) for _ in range(STRICT_CAP)]
        try:
            await asyncio.sleep(1.5)
            wire = pb.CreateExtractionRequest(content=corpus.largest_unary(), filename="big.pdf").SerializeToString()
            create = strict.channel.unary_unary(
                CREATE, request_serializer=None, response_deserializer=pb.Extraction.FromString
            )

            async def refused() -> grpc.aio.AioRpcError:
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await create(wire, metadata=credentials, timeout=30)
                return raised.value

            rss = reset_peak(strict.pid)
            started = time.monotonic()
            errors = await asyncio.gather(*(refused() for _ in range(24)))
            growth = (memory_kib(strict.pid, "VmHWM") - rss) // 1024
            elapsed = time.monotonic() - started
            print(f"over the tenant cap: gateway peak RSS grew {growth} MiB in {elapsed:.1f} s")
            assert all(not call.done() for call in held), "the held uploads are still going"
            for error in errors:
                code = (error.code(), error_reason(error))
                assert code == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_UPLOADS"), error.details()
                assert f"at most {STRICT_CAP} at once" in (error.details() or "")
            assert elapsed < REFUSE_SECONDS
            assert growth <= OVER_CAP_GROWTH_MIB, f"gateway peak RSS grew {growth} MiB"
        finally:
            for call in held:
                call.cancel()
            stop.set()  # after the cancels: a stream that ended first would be a complete upload
    # Cancelled before their finish message: the held uploads leave nothing behind either (each
    # cancelled stream deletes its partial object as it unwinds: on busy cores that can take seconds).
    deadline = time.monotonic() + 20
    after = await stored(db, objects)
    while after != before and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        after = await stored(db, objects)
    assert after == before


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


async def test_still_healthy_and_within_memory_after_the_corpus(
    stack: Stack, api: Gateway, db: asyncpg.Pool, objects: ObjectStore
) -> None:
    """Runs after the corpus above (pytest keeps file order)."""
    for name in ("gateway", "parser", "llm", "store"):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.port(name)}") as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, name

    content = corpus.unique_contract(3)
    created = await api.CreateExtraction(pb.CreateExtractionRequest(content=content, filename="ok.pdf"), timeout=30)
    extraction = await wait_terminal(api, created.id, timeout=TERMINAL_SECONDS)
    await check_succeeded(extraction, corpus.Succeeded(page_count=3, filename="ok.pdf"), db, objects)

    parser = stack._pid("parser")
    gateway = stack._pid("gateway")
    assert parser is not None and gateway is not None
    peak = memory_kib(parser, "VmHWM") // 1024
    assert peak < PARSER_BUDGET_MIB, f"parser peak RSS {peak} MiB"
    # Its children (the forkserver; parse children are gone once a document is done) are small too.
    tree = sum(memory_kib(pid, "VmRSS") for pid in [parser, *descendants(parser)]) // 1024
    assert tree < PARSER_BUDGET_MIB, f"parser processes hold {tree} MiB"
    gateway_peak = memory_kib(gateway, "VmHWM") // 1024
    assert gateway_peak < GATEWAY_BUDGET_MIB, f"gateway peak RSS {gateway_peak} MiB"
