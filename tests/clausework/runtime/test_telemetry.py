"""Tracing: off unless an OTLP endpoint is configured; when on, a trace crosses gRPC hops (client span →
metadata → server span → the server's own calls) and log lines name it."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from clausework.runtime import telemetry
from clausework.runtime.errors import ErrorInterceptor, NotFound
from clausework.runtime.jsonlog import JsonFormatter, log_fields
from clausework.runtime.metrics import MetricsInterceptor
from clausework.runtime.rpc import channel, read_object
from contracts.internal.v1 import parser_pb2, parser_pb2_grpc, store_pb2, store_pb2_grpc

Context = grpc.aio.ServicerContext[object, object]
log = logging.getLogger("tests.telemetry")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_on_only_with_an_endpoint(environ: dict[str, str], expected: bool) -> None:
    assert telemetry.tracing_configured(environ) is expected


def test_off_means_no_interceptors_at_all() -> None:
    assert not telemetry.tracing_enabled()
    assert telemetry.server_interceptors() == []
    assert telemetry.client_interceptors() == []
    assert telemetry.temporal_interceptors() == []
    assert telemetry.current_trace_ids() is None


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory (the provider is set here, not globally, so other tests stay untraced)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_provider", provider)
    yield exporter
    provider.shutdown()


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter("test"))
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


class Store(store_pb2_grpc.StoreServiceServicer):
    async def ReadObject(
        self, request: store_pb2.ReadObjectRequest, context: Context
    ) -> AsyncIterator[store_pb2.ReadObjectResponse]:
        if request.key == "missing":
            raise NotFound("no such object")
        yield store_pb2.ReadObjectResponse(data=b"%PDF")


class Parser(parser_pb2_grpc.ParserServiceServicer):
    """Calls the store over a `channel()`, as the real parser does."""

    def __init__(self, store_address: str) -> None:
        self.store_channel = channel(store_address)
        self.store = store_pb2_grpc.StoreServiceStub(self.store_channel)

    async def ParseDocument(
        self, request: parser_pb2.ParseDocumentRequest, context: Context
    ) -> parser_pb2.ParseDocumentResponse:
        with log_fields(extraction_id="x-1"):
            data = await read_object(self.store, request.source_key, 5)
            log.warning("parsed")
        return parser_pb2.ParseDocumentResponse(char_count=len(data))


async def test_a_trace_crosses_grpc_hops_and_reaches_the_logs(spans: InMemorySpanExporter) -> None:
    lines = Lines()
    log.addHandler(lines)
    servers = []
    try:
        for register in ("store", "parser"):
            server = grpc.aio.server(
                interceptors=[*telemetry.server_interceptors(), MetricsInterceptor(), ErrorInterceptor()]
            )
            port = server.add_insecure_port("127.0.0.1:0")
            if register == "store":
                store_pb2_grpc.add_StoreServiceServicer_to_server(Store(), server)  # type: ignore[abstract]
                parser = Parser(f"127.0.0.1:{port}")
            else:
                parser_pb2_grpc.add_ParserServiceServicer_to_server(parser, server)
                parser_port = port
            await server.start()
            servers.append(server)
        async with channel(f"127.0.0.1:{parser_port}") as client:
            stub = parser_pb2_grpc.ParserServiceStub(client)
            answer = await stub.ParseDocument(parser_pb2.ParseDocumentRequest(source_key="doc"))
            assert answer.char_count == 4
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.ParseDocument(parser_pb2.ParseDocumentRequest(source_key="missing"))
        await parser.store_channel.close(None)
    finally:
        log.removeHandler(lines)
        for server in servers:
            await server.stop(None)

    finished = spans.get_finished_spans()
    by_trace: dict[int, list[tuple[str, str]]] = {}
    for span in finished:
        by_trace.setdefault(span.context.trace_id, []).append((span.name, span.kind.name))
    parse = "/contracts.internal.v1.ParserService/ParseDocument"
    read = "/contracts.internal.v1.StoreService/ReadObject"
    assert len(by_trace) == 2, "one trace per top-level call"
    for trace_spans in by_trace.values():
        assert sorted(trace_spans) == sorted([(parse, "CLIENT"), (parse, "SERVER"), (read, "CLIENT"), (read, "SERVER")])
    # The failed call's server spans carry its status code (set through the ErrorInterceptor's abort).
    not_found = grpc.StatusCode.NOT_FOUND.value[0]
    failed = [
        s
        for s in finished
        if s.kind == SpanKind.SERVER and (s.attributes or {}).get("rpc.grpc.status_code") == not_found
    ]
    assert sorted(s.name for s in failed) == [parse, read]
    # The log line written while serving names its trace and span, and the bound fields.
    (line,) = [line for line in lines.lines if line["msg"] == "parsed"]
    parse_server = next(
        s
        for s in finished
        if s.name == parse and s.kind == SpanKind.SERVER and s.context.trace_id != failed[0].context.trace_id
    )
    assert line["trace_id"] == format(parse_server.context.trace_id, "032x")
    assert line["span_id"] == format(parse_server.context.span_id, "016x")
    assert line["extraction_id"] == "x-1"


async def test_health_and_reflection_are_not_traced(spans: InMemorySpanExporter) -> None:
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.aio.server(interceptors=telemetry.server_interceptors())
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)  # type: ignore[attr-defined]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as client:
            await health_pb2_grpc.HealthStub(client).Check(health_pb2.HealthCheckRequest())
    finally:
        await server.stop(None)
    assert spans.get_finished_spans() == ()


def test_log_fields_nest_and_unwind() -> None:
    formatter = JsonFormatter("test")

    def line() -> dict[str, object]:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        return dict(json.loads(formatter.format(record)))

    with log_fields(workflow_id="w"):
        with log_fields(extraction_id="e"):
            assert (line()["workflow_id"], line()["extraction_id"]) == ("w", "e")
        assert "extraction_id" not in line()
    assert "workflow_id" not in line()
    assert "trace_id" not in line(), "no trace ids while tracing is off"
