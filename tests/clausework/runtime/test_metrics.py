"""MetricsInterceptor on a real gRPC server: calls of every kind counted by method and final status code,
behind the ErrorInterceptor as `serve` installs them; and the /metrics endpoint over HTTP."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import REGISTRY

from clausework.runtime.errors import ErrorInterceptor, InvalidArgument, NotFound
from clausework.runtime.metrics import MetricsInterceptor, serve_metrics
from contracts.internal.v1 import parser_pb2, parser_pb2_grpc, store_pb2, store_pb2_grpc

PARSE = "/contracts.internal.v1.ParserService/ParseDocument"
READ = "/contracts.internal.v1.StoreService/ReadObject"
WRITE = "/contracts.internal.v1.StoreService/WriteObject"
Context = grpc.aio.ServicerContext[object, object]


class Parser(parser_pb2_grpc.ParserServiceServicer):
    async def ParseDocument(
        self, request: parser_pb2.ParseDocumentRequest, context: Context
    ) -> parser_pb2.ParseDocumentResponse:
        if request.source_key == "bad":
            raise InvalidArgument("bad key")
        if request.source_key == "bug":
            raise RuntimeError("a bug")
        if request.source_key == "abort":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
        return parser_pb2.ParseDocumentResponse(page_count=1)


class Store(store_pb2_grpc.StoreServiceServicer):
    def __init__(self) -> None:
        self.stream_started = asyncio.Event()

    async def ReadObject(
        self, request: store_pb2.ReadObjectRequest, context: Context
    ) -> AsyncIterator[store_pb2.ReadObjectResponse]:
        if request.key == "missing":
            raise NotFound("no such object")
        yield store_pb2.ReadObjectResponse(data=b"a")
        if request.key == "forever":
            self.stream_started.set()
            await asyncio.sleep(3600)
        yield store_pb2.ReadObjectResponse(data=b"b")

    async def WriteObject(
        self, request_iterator: AsyncIterator[store_pb2.WriteObjectRequest], context: Context
    ) -> store_pb2.WriteObjectResponse:
        size = sum([len(m.data) async for m in request_iterator])
        return store_pb2.WriteObjectResponse(size_bytes=size)


def count(metric: str, method: str, code: str) -> float:
    return REGISTRY.get_sample_value(metric, {"method": method, "code": code}) or 0.0


def requests(method: str, code: str) -> float:
    return count("clausework_grpc_server_requests_total", method, code)


def errors(method: str, code: str) -> float:
    return count("clausework_grpc_server_errors_total", method, code)


def timed(method: str) -> float:
    return REGISTRY.get_sample_value("clausework_grpc_server_duration_seconds_count", {"method": method}) or 0.0


@pytest.fixture
async def servers() -> AsyncIterator[tuple[grpc.aio.Channel, Store]]:
    server = grpc.aio.server(interceptors=[MetricsInterceptor(), ErrorInterceptor()])
    store = Store()  # type: ignore[abstract]  # the methods under test only
    parser_pb2_grpc.add_ParserServiceServicer_to_server(Parser(), server)
    store_pb2_grpc.add_StoreServiceServicer_to_server(store, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel, store
    await server.stop(None)


async def test_unary_calls_counted_by_method_and_final_code(servers: tuple[grpc.aio.Channel, Store]) -> None:
    channel, _ = servers
    parser = parser_pb2_grpc.ParserServiceStub(channel)
    before = {
        code: (requests(PARSE, code), errors(PARSE, code))
        for code in ("OK", "INVALID_ARGUMENT", "INTERNAL", "PERMISSION_DENIED")
    }
    timed_before = timed(PARSE)
    await parser.ParseDocument(parser_pb2.ParseDocumentRequest(source_key="good"))
    await parser.ParseDocument(parser_pb2.ParseDocumentRequest(source_key="good"))
    for key, code in (("bad", "INVALID_ARGUMENT"), ("bug", "INTERNAL"), ("abort", "PERMISSION_DENIED")):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await parser.ParseDocument(parser_pb2.ParseDocumentRequest(source_key=key))
        assert failed.value.code().name == code
    after = {code: (requests(PARSE, code), errors(PARSE, code)) for code in before}
    assert after["OK"] == (before["OK"][0] + 2, before["OK"][1])  # successes are no errors
    for code in ("INVALID_ARGUMENT", "INTERNAL", "PERMISSION_DENIED"):
        assert after[code] == (before[code][0] + 1, before[code][1] + 1), code
    assert timed(PARSE) == timed_before + 5


async def test_streams_counted_when_they_end(servers: tuple[grpc.aio.Channel, Store]) -> None:
    channel, store = servers
    stub = store_pb2_grpc.StoreServiceStub(channel)
    ok, missing = requests(READ, "OK"), errors(READ, "NOT_FOUND")
    assert [m.data async for m in stub.ReadObject(store_pb2.ReadObjectRequest(key="k"))] == [b"a", b"b"]
    with pytest.raises(grpc.aio.AioRpcError):
        _ = [m async for m in stub.ReadObject(store_pb2.ReadObjectRequest(key="missing"))]
    assert (requests(READ, "OK"), errors(READ, "NOT_FOUND")) == (ok + 1, missing + 1)

    written = requests(WRITE, "OK")

    async def chunks() -> AsyncIterator[store_pb2.WriteObjectRequest]:
        for data in (b"12", b"345"):
            yield store_pb2.WriteObjectRequest(key="k", data=data)

    assert (await stub.WriteObject(chunks())).size_bytes == 5
    assert requests(WRITE, "OK") == written + 1

    # A client that goes away mid-stream: the call ends CANCELLED on the server.
    cancelled = requests(READ, "CANCELLED")
    call = stub.ReadObject(store_pb2.ReadObjectRequest(key="forever"))
    first = await call.read()
    assert isinstance(first, store_pb2.ReadObjectResponse) and first.data == b"a"
    await store.stream_started.wait()
    call.cancel()
    for _ in range(100):
        if requests(READ, "CANCELLED") == cancelled + 1:
            break
        await asyncio.sleep(0.05)
    assert requests(READ, "CANCELLED") == cancelled + 1


async def test_metrics_served_over_http(servers: tuple[grpc.aio.Channel, Store]) -> None:
    channel, _ = servers
    await parser_pb2_grpc.ParserServiceStub(channel).ParseDocument(parser_pb2.ParseDocumentRequest(source_key="x"))
    port = serve_metrics("127.0.0.1", 0)
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read())
    text = body.decode()
    assert f'clausework_grpc_server_requests_total{{code="OK",method="{PARSE}"}}' in text
    assert "clausework_grpc_server_duration_seconds_bucket" in text
    assert "process_cpu_seconds_total" in text


def test_a_taken_port_is_a_clear_error() -> None:
    port = serve_metrics("127.0.0.1", 0)
    with pytest.raises(SystemExit, match=f"cannot serve metrics on 127.0.0.1:{port}"):
        serve_metrics("127.0.0.1", port)
