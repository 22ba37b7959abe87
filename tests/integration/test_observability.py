"""Observability on the real stack: one document yields one trace across every process, moves each
process's Prometheus counters, and its workflow is found by its Temporal search attributes.

The module restarts our five processes with OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/gRPC
receiver run here (the opentelemetry-proto TraceService), and restarts them untraced afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeAlias

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from clausework.pipeline.payloads import workflow_id
from clausework.pipeline.search import EXTRACTION_ID, TENANT_ID
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import SERVICES, Stack
from tests import pdfs
from tests.conftest import wait_terminal

Gateway: TypeAlias = "extraction_pb2_grpc.ExtractionServiceAsyncStub"
Metrics: TypeAlias = dict[tuple[str, frozenset[tuple[str, str]]], float]
CREATE = "/contracts.v1.ExtractionService/CreateExtraction"
GET = "/contracts.v1.ExtractionService/GetExtraction"


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str
    name: str


@dataclass
class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace collector that keeps what it is sent."""

    spans: list[Span] = field(default_factory=list)

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            service = next(
                (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), ""
            )
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(Span(service, s.trace_id.hex(), s.name) for s in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@dataclass(frozen=True)
class Observed:
    extraction: pb.Extraction
    receiver: Receiver
    before: dict[str, Metrics]
    after: dict[str, Metrics]
    temporal_sdk_metrics: str


def restart_services(stack: Stack) -> None:
    for name in reversed(SERVICES):
        stack.stop(name)
    stack.start("store")
    for name in SERVICES[1:]:
        stack.start(name, wait=False)
    for name in SERVICES[1:]:
        stack.wait_ready(name)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


def scrape(stack: Stack) -> dict[str, Metrics]:
    result: dict[str, Metrics] = {}
    for name in SERVICES:
        text = fetch(f"http://127.0.0.1:{stack.profile.metrics_port(name)}/metrics")
        result[name] = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
    return result


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def delta(observed: Observed, process: str, name: str, **labels: str) -> float:
    return value(observed.after[process], name, **labels) - value(observed.before[process], name, **labels)


def trace_of(spans: list[Span], service: str, name: str) -> str:
    found = {s.trace_id for s in spans if s.service == service and s.name == name}
    assert len(found) == 1, f"{service} {name}: traces {found}"
    return found.pop()


# What one document's trace must hold: (service, span name).
EXPECTED_IN_TRACE = {
    ("gateway", CREATE),
    ("store", "StartWorkflow:ExtractionWorkflow"),  # by the outbox relay, in the submit's trace
    ("store", "/contracts.internal.v1.StoreService/CreateExtraction"),
    ("worker", "RunWorkflow:ExtractionWorkflow"),
    ("worker", "RunActivity:parse_document"),
    ("worker", "RunActivity:extract_clauses"),
    ("worker", "RunActivity:complete_extraction"),
    ("worker", "/contracts.internal.v1.ParserService/ParseDocument"),  # the activity's client span
    ("parser", "/contracts.internal.v1.ParserService/ParseDocument"),
    ("parser", "/contracts.internal.v1.StoreService/ReadObject"),
    ("llm", "/contracts.internal.v1.LlmService/ExtractClauses"),
    ("store", "/contracts.internal.v1.StoreService/CompleteExtraction"),
    ("store", "/contracts.internal.v1.StoreService/WriteObject"),
}


async def wait_for_trace(receiver: Receiver, wanted: set[str], timeout: float = 30) -> None:
    """Until one trace holds spans of every service in `wanted` and every span of EXPECTED_IN_TRACE
    (each process's exporter batches on its own: the store's last span can arrive after the worker's)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        creates = {s.trace_id for s in receiver.spans if s.service == "gateway" and s.name == CREATE}
        for trace_id in creates:
            in_trace = {(s.service, s.name) for s in receiver.spans if s.trace_id == trace_id}
            if wanted <= {service for service, _ in in_trace} and in_trace >= EXPECTED_IN_TRACE:
                return
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def observed(stack: Stack, gateway: Gateway, temporal: Client) -> AsyncIterator[Observed]:
    receiver = Receiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stack.extra_env.update(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    )
    try:
        await asyncio.to_thread(restart_services, stack)
        before = await asyncio.to_thread(scrape, stack)
        created = await gateway.CreateExtraction(
            pb.CreateExtractionRequest(
                content=pdfs.contract_pdf(),
                filename="observed.pdf",
                request_id=str(uuid.uuid4()),
                options=pb.ExtractionOptions(reprocess=True),
            ),
            timeout=30,
        )
        extraction = await wait_terminal(gateway, created.id)
        await temporal.get_workflow_handle(workflow_id(created.id)).result()  # the worker is done with it too
        # One failing call too, to see errors counted by code at the gateway and the store.
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await gateway.GetExtraction(pb.GetExtractionRequest(id=str(uuid.uuid4())), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        await wait_for_trace(receiver, set(SERVICES))
        after = await asyncio.to_thread(scrape, stack)
        sdk = ""
        for _ in range(50):  # the SDK records a completion as it reports it
            sdk = await asyncio.to_thread(fetch, f"http://127.0.0.1:{stack.profile.temporal_metrics_port}/metrics")
            if "temporal_workflow_completed" in sdk:
                break
            await asyncio.sleep(0.2)
        yield Observed(extraction, receiver, before, after, sdk)
    finally:
        stack.extra_env.clear()
        await asyncio.to_thread(restart_services, stack)
        await server.stop(None)


async def test_one_trace_spans_gateway_workflow_activities_and_services(observed: Observed, stack: Stack) -> None:
    assert observed.extraction.state == pb.STATE_SUCCEEDED
    spans = observed.receiver.spans
    trace_id = trace_of(spans, "gateway", CREATE)
    in_trace = {(s.service, s.name) for s in spans if s.trace_id == trace_id}
    assert in_trace >= EXPECTED_IN_TRACE, sorted(EXPECTED_IN_TRACE - in_trace)
    # The document's other calls are in no other trace; probes are not traced at all.
    assert trace_of(spans, "worker", "RunActivity:parse_document") == trace_id
    assert trace_of(spans, "llm", "/contracts.internal.v1.LlmService/ExtractClauses") == trace_id
    assert not [s for s in spans if "grpc.health" in s.name]

    # Log lines carry the trace: the llm's line about this extraction names the same trace id.
    lines = [json.loads(line) for line in (stack.logs / "llm.log").read_text().splitlines() if line.startswith("{")]
    extracted = [e for e in lines if e.get("msg") == "extracted" and e.get("extraction_id") == observed.extraction.id]
    assert [e["trace_id"] for e in extracted] == [trace_id]


async def test_metrics_count_calls_codes_pages_chunks_and_states(observed: Observed) -> None:
    pages = observed.extraction.document.page_count
    assert pages > 0
    requests = "clausework_grpc_server_requests_total"
    errors = "clausework_grpc_server_errors_total"
    # gRPC calls by method and code, with errors by code, at the gateway and the store behind it.
    assert delta(observed, "gateway", requests, method=CREATE, code="OK") == 1
    assert delta(observed, "gateway", requests, method=GET, code="OK") >= 1
    assert delta(observed, "gateway", errors, method=GET, code="NOT_FOUND") == 1
    store_get = "/contracts.internal.v1.StoreService/GetExtraction"
    assert delta(observed, "store", errors, method=store_get, code="NOT_FOUND") == 1
    assert (
        delta(observed, "store", requests, method="/contracts.internal.v1.StoreService/UpdateExtraction", code="OK")
        >= 3
    )
    assert delta(observed, "gateway", "clausework_grpc_server_duration_seconds_count", method=CREATE) == 1
    # Each service's own counters.
    assert delta(observed, "parser", "clausework_parser_documents_total") == 1
    assert delta(observed, "parser", "clausework_parser_pages_total") == pages
    assert delta(observed, "llm", "clausework_llm_documents_total") == 1
    assert delta(observed, "llm", "clausework_llm_chunks_total") >= 1
    assert delta(observed, "llm", "clausework_llm_clauses_total") == len(observed.extraction.clauses)
    assert ("clausework_llm_prompt_tokens_total", frozenset()) in observed.after["llm"]
    assert delta(observed, "store", "clausework_extractions_total", state="PENDING") == 1
    assert delta(observed, "store", "clausework_extractions_total", state="SUCCEEDED") == 1
    assert delta(observed, "store", "clausework_extractions_total", state="FAILED") == 0
    for activity in ("parse_document", "extract_clauses", "complete_extraction"):
        assert (
            delta(observed, "worker", "clausework_worker_activities_total", activity=activity, outcome="completed") == 1
        )
    # Three activities a document: the work activities record their own stages; update_status only ends
    # failed or cancelled extractions.
    assert (
        delta(observed, "worker", "clausework_worker_activities_total", activity="update_status", outcome="completed")
        == 0
    )
    # The Temporal SDK's own metrics, from the worker's second port.
    assert "temporal_workflow_completed" in observed.temporal_sdk_metrics
    assert "temporal_activity_execution_latency" in observed.temporal_sdk_metrics


async def test_workflow_found_by_search_attributes(observed: Observed, temporal: Client) -> None:
    extraction_id = observed.extraction.id
    found: list[str] = []
    deadline = time.monotonic() + 20
    while not found and time.monotonic() < deadline:  # visibility is eventually consistent
        found = [w.id async for w in temporal.list_workflows(f'ExtractionId="{extraction_id}"')]
        await asyncio.sleep(0.2)
    assert found == [workflow_id(extraction_id)]
    tenant = [w.id async for w in temporal.list_workflows(f'TenantId="default" AND ExtractionId="{extraction_id}"')]
    assert tenant == found
    description = await temporal.get_workflow_handle(found[0]).describe()
    assert description.typed_search_attributes.get(EXTRACTION_ID) == extraction_id
    assert description.typed_search_attributes.get(TENANT_ID) == "default"
    assert await description.memo() == {"filename": "observed.pdf", "tenant": "default"}
