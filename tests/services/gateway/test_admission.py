"""AdmissionInterceptor on a real in-process grpc.aio server: refusals happen before the request body is
read (the request deserializer is never called), admitted calls see their tenant, upload caps hold and
their slots are always given back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from clausework.runtime.errors import ErrorInterceptor, error_reason
from contracts.v1 import extraction_pb2 as pb
from services.gateway.admission import AdmissionInterceptor, UploadSlots, current_tenant
from services.gateway.auth import ApiKeys, hash_key

MiB = 1024 * 1024
SERVICE = "contracts.v1.ExtractionService"
KEYS = {"tenant-a": "key-a-" + "a" * 32, "tenant-b": "key-b-" + "b" * 32}
BIG = pb.CreateExtractionRequest(content=b"%PDF-1.7\n" + b"\0" * (8 * MiB), filename="big.pdf")


@dataclass
class Server:
    address: str
    slots: UploadSlots
    deserialized: int = 0
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, tenant seen by the handler)
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # UploadExtraction handlers wait for it

    def counting(self, parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
        def deserialize(raw: bytes) -> Any:
            self.deserialized += 1
            return parse(raw)

        return deserialize


def handlers(state: Server) -> grpc.GenericRpcHandler[Any, Any]:
    async def create(request: pb.CreateExtractionRequest, context: Any) -> pb.Extraction:
        state.calls.append(("CreateExtraction", current_tenant.get("")))
        if request.filename == "fail.pdf":
            raise ValueError("boom")
        return pb.Extraction(id=current_tenant.get(""))

    async def upload(requests: AsyncIterator[pb.UploadExtractionRequest], context: Any) -> pb.Extraction:
        state.calls.append(("UploadExtraction", current_tenant.get("")))
        await anext(aiter(requests))
        await state.gate.wait()
        return pb.Extraction(id=current_tenant.get(""))

    async def watch(request: pb.WatchExtractionRequest, context: Any) -> AsyncIterator[pb.Extraction]:
        state.calls.append(("WatchExtraction", current_tenant.get("")))
        yield pb.Extraction(id=current_tenant.get(""))

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "CreateExtraction": grpc.unary_unary_rpc_method_handler(
                create,
                request_deserializer=state.counting(pb.CreateExtractionRequest.FromString),
                response_serializer=pb.Extraction.SerializeToString,
            ),
            "UploadExtraction": grpc.stream_unary_rpc_method_handler(
                upload,
                request_deserializer=state.counting(pb.UploadExtractionRequest.FromString),
                response_serializer=pb.Extraction.SerializeToString,
            ),
            "WatchExtraction": grpc.unary_stream_rpc_method_handler(
                watch,
                request_deserializer=state.counting(pb.WatchExtractionRequest.FromString),
                response_serializer=pb.Extraction.SerializeToString,
            ),
        },
    )


def other_service() -> grpc.GenericRpcHandler[Any, Any]:
    async def ping(request: bytes, context: Any) -> bytes:
        return b"pong"

    return grpc.method_handlers_generic_handler("other.v1.Other", {"Ping": grpc.unary_unary_rpc_method_handler(ping)})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    keys = ApiKeys.parse(",".join(f"{tenant}:{hash_key(key)}" for tenant, key in KEYS.items()))
    slots = UploadSlots(per_tenant=2, total=3, queue_seconds=0.5)
    options = [("grpc.max_receive_message_length", 64 * MiB)]
    # As clausework.runtime.rpc.serve installs it: inside the error mapping.
    aio = grpc.aio.server(interceptors=[ErrorInterceptor(), AdmissionInterceptor(keys, slots)], options=options)
    port = aio.add_insecure_port("127.0.0.1:0")
    state = Server(f"127.0.0.1:{port}", slots)
    aio.add_generic_rpc_handlers([handlers(state), other_service()])
    await aio.start()
    yield state
    state.gate.set()
    await aio.stop(None)


@pytest.fixture
async def channel(server: Server) -> AsyncIterator[grpc.aio.Channel]:
    options = [("grpc.max_send_message_length", 64 * MiB)]
    async with grpc.aio.insecure_channel(server.address, options=options) as opened:
        yield opened


def auth(tenant: str | None = None, key: str | None = None) -> tuple[tuple[str, str], ...]:
    if key is None and tenant is None:
        return ()
    return (("authorization", f"Bearer {key or KEYS[tenant or '']}"),)


def create_call(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/CreateExtraction",
        request_serializer=pb.CreateExtractionRequest.SerializeToString,
        response_deserializer=pb.Extraction.FromString,
    )


def upload_call(channel: grpc.aio.Channel) -> Any:
    return channel.stream_unary(
        f"/{SERVICE}/UploadExtraction",
        request_serializer=pb.UploadExtractionRequest.SerializeToString,
        response_deserializer=pb.Extraction.FromString,
    )


def watch_call(channel: grpc.aio.Channel) -> Any:
    return channel.unary_stream(
        f"/{SERVICE}/WatchExtraction",
        request_serializer=pb.WatchExtractionRequest.SerializeToString,
        response_deserializer=pb.Extraction.FromString,
    )


async def upload_messages(count: int = 3) -> AsyncIterator[pb.UploadExtractionRequest]:
    """Metadata, a pause, then chunks. The pause keeps this test clear of a grpc.aio client race (grpc/grpc
    issue 36066): a write in progress as the server's early status arrives turns that status into
    INTERNAL "Internal error from Core" on the client."""
    yield pb.UploadExtractionRequest(metadata=pb.UploadMetadata(filename="held.pdf"))
    await asyncio.sleep(0.3)
    for _ in range(count):
        yield pb.UploadExtractionRequest(chunk=b"%PDF-1.7\n" + b"\0" * MiB)


async def until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        result = call()
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    return raised.value


@pytest.mark.parametrize(
    "metadata",
    [(), auth(key="wrong-key-" + "x" * 32), (("authorization", "Basic " + KEYS["tenant-a"]),)],
    ids=["no-key", "wrong-key", "wrong-scheme"],
)
async def test_unauthenticated_calls_are_refused_before_any_message_is_read(
    server: Server, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> None:
    create = create_call(channel)
    upload = upload_call(channel)
    watch = watch_call(channel)
    errors = [
        await refused(lambda: create(BIG, metadata=metadata, timeout=10)),
        await refused(lambda: upload(upload_messages(), metadata=metadata, timeout=10)),
        await refused(lambda: watch(pb.WatchExtractionRequest(id="x"), metadata=metadata, timeout=10)),
    ]
    for error in errors:
        assert (error.code(), error_reason(error)) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"), error
        assert "credentials" in (error.details() or "") or "invalid API key" in (error.details() or "")
    assert server.deserialized == 0, "a refused call's request was read"
    assert server.calls == []
    assert server.slots.in_flight == 0


async def test_admitted_calls_see_their_tenant(server: Server, channel: grpc.aio.Channel) -> None:
    created = await create_call(channel)(BIG, metadata=auth("tenant-a"), timeout=10)
    watched = [e async for e in watch_call(channel)(pb.WatchExtractionRequest(id="x"), metadata=auth("tenant-b"))]
    assert created.id == "tenant-a"
    assert [e.id for e in watched] == ["tenant-b"]
    assert server.calls == [("CreateExtraction", "tenant-a"), ("WatchExtraction", "tenant-b")]
    assert server.deserialized == 2
    assert server.slots.in_flight == 0


async def test_other_services_need_no_key(server: Server, channel: grpc.aio.Channel) -> None:
    ping = channel.unary_unary("/other.v1.Other/Ping", request_serializer=None, response_deserializer=None)
    assert await ping(b"", timeout=10) == b"pong"


async def test_tenant_cap_refuses_uploads_before_their_body_is_read(server: Server, channel: grpc.aio.Channel) -> None:
    upload = upload_call(channel)
    held = [upload(upload_messages(), metadata=auth("tenant-a"), timeout=30) for _ in range(2)]
    await until(lambda: server.slots.held("tenant-a") == 2 and len(server.calls) == 2)
    read = server.deserialized

    create = create_call(channel)
    for error in [
        await refused(lambda: create(BIG, metadata=auth("tenant-a"), timeout=10)),
        await refused(lambda: upload(upload_messages(), metadata=auth("tenant-a"), timeout=10)),
    ]:
        assert (error.code(), error_reason(error)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_UPLOADS")
        assert "at most 2 at once" in (error.details() or "")
    assert server.deserialized == read, "a refused upload's request was read"

    # Another tenant still gets the third process-wide slot.
    assert (await create(BIG, metadata=auth("tenant-b"), timeout=10)).id == "tenant-b"
    server.gate.set()
    assert [(await call).id for call in held] == ["tenant-a", "tenant-a"]
    assert server.slots.in_flight == 0
    assert (await create(BIG, metadata=auth("tenant-a"), timeout=10)).id == "tenant-a"


async def test_process_cap_queues_unread_then_refuses(server: Server, channel: grpc.aio.Channel) -> None:
    upload = upload_call(channel)
    held = [upload(upload_messages(), metadata=auth(tenant), timeout=30) for tenant in ("tenant-a", "tenant-a")]
    held.append(upload(upload_messages(), metadata=auth("tenant-b"), timeout=30))
    await until(lambda: server.slots.in_flight == 3 and len(server.calls) == 3)
    read = server.deserialized
    create = create_call(channel)
    error = await refused(lambda: create(BIG, metadata=auth("tenant-b"), timeout=10))
    assert (error.code(), error_reason(error)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_UPLOADS")
    assert "maximum of 3 uploads" in (error.details() or "")
    assert server.deserialized == read, "a queued upload's request was read"
    assert server.slots.held("tenant-b") == 1

    # A queued upload goes ahead, unread until then, as soon as a slot frees up.
    queued = create(BIG, metadata=auth("tenant-b"), timeout=10)
    await until(lambda: server.slots.held("tenant-b") == 2)
    assert server.deserialized == read
    server.gate.set()
    assert (await queued).id == "tenant-b"
    await asyncio.gather(*held)
    assert server.slots.in_flight == 0


async def test_slots_come_back_after_failures_and_cancels(server: Server, channel: grpc.aio.Channel) -> None:
    failing = pb.CreateExtractionRequest(content=b"%PDF-1.7", filename="fail.pdf")
    error = await refused(lambda: create_call(channel)(failing, metadata=auth("tenant-a"), timeout=10))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert server.slots.in_flight == 0

    upload = upload_call(channel)
    held = [upload(upload_messages(), metadata=auth("tenant-a"), timeout=30) for _ in range(2)]
    await until(lambda: server.slots.held("tenant-a") == 2)
    for call in held:
        call.cancel()
    await until(lambda: server.slots.in_flight == 0)
    assert (await create_call(channel)(BIG, metadata=auth("tenant-a"), timeout=10)).id == "tenant-a"


def test_caps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        UploadSlots(per_tenant=0, total=1)
