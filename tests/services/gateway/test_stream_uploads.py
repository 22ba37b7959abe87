"""UploadExtraction on the real servicer in front of a fake store, over grpc: declared sizes are checked
(negative at once; more as soon as exceeded; less at the end), a stalled stream times out, and in every
refused case the store's WriteObject never gets its finish message, so nothing is written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2

from clausework.runtime.errors import ErrorInterceptor, error_reason
from contracts.internal.v1 import store_pb2, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from services.gateway.admission import AdmissionInterceptor, UploadSlots
from services.gateway.auth import ApiKeys, hash_key
from services.gateway.server import ExtractionServicer

KEY = "stream-key-" + "s" * 32
PDF = b"%PDF-1.7\n" + b"x" * 5000
IDLE_SECONDS = 0.5


@dataclass
class FakeStore(store_pb2_grpc.StoreServiceServicer):
    writes: list[tuple[str, int, bool]] = field(default_factory=list)  # (key, bytes received, finished)
    created: list[store_pb2.CreateExtractionRequest] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    # Faults: hold the named RPC's answer until the call is cancelled, or fail CreateExtraction.
    hold: str = ""
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    fail_create: bool = False

    async def WriteObject(self, request_iterator: AsyncIterator[store_pb2.WriteObjectRequest], context: Any) -> Any:
        key, size, finished = "", 0, False
        try:
            async for message in request_iterator:
                key = key or message.key
                size += len(message.data)
                finished = finished or message.finish
        finally:
            self.writes.append((key, size, finished))
        await self._held("WriteObject")
        return store_pb2.WriteObjectResponse(key=key, size_bytes=size)

    async def CreateExtraction(self, request: store_pb2.CreateExtractionRequest, context: Any) -> Any:
        self.created.append(request)
        await self._held("CreateExtraction")
        if self.fail_create:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the database is restarting")
        return store_pb2.CreateExtractionResponse(extraction=pb.Extraction(id="e1"), created=True)

    async def DiscardUpload(self, request: store_pb2.DiscardUploadRequest, context: Any) -> Any:
        self.discarded.append(request.key)
        return empty_pb2.Empty()

    async def _held(self, rpc: str) -> None:
        if self.hold == rpc:
            self.holding.set()
            await asyncio.Event().wait()  # until the gateway cancels the call


@pytest.fixture
async def setup() -> AsyncIterator[tuple[FakeStore, extraction_pb2_grpc.ExtractionServiceAsyncStub]]:
    fake = FakeStore()  # type: ignore[abstract]  # only the RPCs the gateway's uploads use
    store = grpc.aio.server()
    store_pb2_grpc.add_StoreServiceServicer_to_server(fake, store)
    store_port = store.add_insecure_port("127.0.0.1:0")
    await store.start()
    store_channel = grpc.aio.insecure_channel(f"127.0.0.1:{store_port}")
    keys = ApiKeys.parse(f"tenant-s:{hash_key(KEY)}")
    servicer = ExtractionServicer(
        store_pb2_grpc.StoreServiceStub(store_channel),
        keys,
        max_upload_bytes=1 << 20,
        max_stream_upload_bytes=1 << 20,
        upload_idle_seconds=IDLE_SECONDS,
    )
    gateway = grpc.aio.server(interceptors=[ErrorInterceptor(), AdmissionInterceptor(keys, UploadSlots(4, 4))])
    extraction_pb2_grpc.add_ExtractionServiceServicer_to_server(servicer, gateway)
    port = gateway.add_insecure_port("127.0.0.1:0")
    await gateway.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield fake, extraction_pb2_grpc.ExtractionServiceStub(channel)
    await gateway.stop(None)
    await store_channel.close(grace=None)
    await store.stop(None)


async def messages(
    declared: int, content: bytes = PDF, *, chunk: int = 1000, stall: float = 0
) -> AsyncIterator[pb.UploadExtractionRequest]:
    yield pb.UploadExtractionRequest(metadata=pb.UploadMetadata(filename="c.pdf", size_bytes=declared))
    if stall:
        await asyncio.sleep(stall)
    for start in range(0, len(content), chunk):
        yield pb.UploadExtractionRequest(chunk=content[start : start + chunk])


async def upload(api: extraction_pb2_grpc.ExtractionServiceAsyncStub, requests: Any) -> pb.Extraction:
    result: pb.Extraction = await api.UploadExtraction(
        requests, metadata=(("authorization", f"Bearer {KEY}"),), timeout=10
    )
    return result


async def written(fake: FakeStore) -> list[tuple[int, bool]]:
    """(bytes received, finished) of each WriteObject stream, once the store has seen the first end."""
    for _ in range(500):
        if fake.writes:
            break
        await asyncio.sleep(0.01)
    return [(size, finished) for _, size, finished in fake.writes]


async def refused(api: extraction_pb2_grpc.ExtractionServiceAsyncStub, requests: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await upload(api, requests)
    return raised.value


@pytest.mark.parametrize("declared", [0, len(PDF)], ids=["undeclared", "exact"])
async def test_accepted_with_the_authenticated_tenant(setup: Any, declared: int) -> None:
    fake, api = setup
    assert (await upload(api, messages(declared))).id == "e1"
    assert [(size, finished) for _, size, finished in fake.writes] == [(len(PDF), True)]
    [created] = fake.created
    assert (created.tenant, created.upload_size_bytes) == ("tenant-s", len(PDF))


async def test_negative_size_is_refused_before_the_store_is_called(setup: Any) -> None:
    fake, api = setup
    error = await refused(api, messages(-5))
    assert (error.code(), error_reason(error)) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert "size_bytes is -5" in (error.details() or "")
    assert fake.writes == [] and fake.created == []


async def test_more_than_declared_is_refused_as_soon_as_exceeded(setup: Any) -> None:
    fake, api = setup
    sent = 0

    async def paused_after_the_excess() -> AsyncIterator[pb.UploadExtractionRequest]:
        """Up to the first chunk past the declared size, then nothing: a gateway that refused only at the
        end of the stream would never answer, and the call would end DEADLINE_EXCEEDED instead. (Counting
        what the client managed to send is no test: HTTP/2 flow-control windows grow to megabytes.)"""
        nonlocal sent
        async for message in messages(2500, PDF + b"y" * 100_000):
            sent += len(message.chunk)
            yield message
            if sent > 2500:
                await asyncio.Event().wait()

    error = await refused(api, paused_after_the_excess())
    assert (error.code(), error_reason(error)) == (grpc.StatusCode.INVALID_ARGUMENT, "SIZE_MISMATCH")
    assert "declared size_bytes 2,500 but more than 2,500 bytes arrived" in (error.details() or "")
    [(size, finished)] = await written(fake)
    assert size <= 2000 and not finished, "the exceeding chunk is not sent on, nor a finish"
    assert fake.created == []


async def test_less_than_declared_is_refused_at_the_end_before_finish(setup: Any) -> None:
    fake, api = setup
    error = await refused(api, messages(len(PDF) + 1))
    assert (error.code(), error_reason(error)) == (grpc.StatusCode.INVALID_ARGUMENT, "SIZE_MISMATCH")
    assert f"but {len(PDF):,} bytes arrived" in (error.details() or "")
    assert await written(fake) == [(len(PDF), False)]
    assert fake.created == [] and fake.discarded == [], "nothing was written, so nothing to discard"


@pytest.mark.parametrize("where", ["after-metadata", "before-metadata"])
async def test_a_stalled_stream_times_out_and_stores_nothing(setup: Any, where: str) -> None:
    fake, api = setup

    async def stalled_first() -> AsyncIterator[pb.UploadExtractionRequest]:
        await asyncio.sleep(IDLE_SECONDS * 6)
        yield pb.UploadExtractionRequest(metadata=pb.UploadMetadata(filename="c.pdf"))

    requests = messages(0, stall=IDLE_SECONDS * 6) if where == "after-metadata" else stalled_first()
    started = asyncio.get_running_loop().time()
    error = await refused(api, requests)
    elapsed = asyncio.get_running_loop().time() - started
    assert (error.code(), error_reason(error)) == (grpc.StatusCode.DEADLINE_EXCEEDED, "UPLOAD_IDLE")
    assert "the upload stalled: no message for 0.5 s" in (error.details() or "")
    assert IDLE_SECONDS <= elapsed < IDLE_SECONDS * 4
    assert all(not finished for _, finished in await written(fake))
    assert fake.created == []


async def discarded(fake: FakeStore) -> list[str]:
    for _ in range(500):
        if fake.discarded:
            break
        await asyncio.sleep(0.01)
    return fake.discarded


@pytest.mark.parametrize("rpc", ["WriteObject", "CreateExtraction"])
async def test_an_upload_cancelled_after_its_last_chunk_is_discarded(setup: Any, rpc: str) -> None:
    """The client sent everything, then gave up before the answer: the store may hold the whole object
    (WriteObject got its finish) with no extraction to own it, so the gateway discards it."""
    fake, api = setup
    fake.hold = rpc
    call = api.UploadExtraction(messages(0), metadata=(("authorization", f"Bearer {KEY}"),), timeout=10)
    await asyncio.wait_for(fake.holding.wait(), 5)
    call.cancel()
    [(key, size, finished)] = fake.writes
    assert (size, finished) == (len(PDF), True)
    assert await discarded(fake) == [key]


async def test_an_upload_the_store_fails_to_register_is_discarded(setup: Any) -> None:
    fake, api = setup
    fake.fail_create = True
    error = await refused(api, messages(0))
    assert error.code() == grpc.StatusCode.UNAVAILABLE, "the client sees the store's error, to retry"
    [(key, _, _)] = fake.writes
    assert await discarded(fake) == [key]
