"""OpenTelemetry tracing for every process, on only when an OTLP endpoint is configured.

`configure_tracing(service)` reads the standard variables: with `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set it installs an SDK tracer provider that batches spans to that
OTLP/gRPC endpoint (`OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_*` tune it), with `service.name` = `service`
unless `OTEL_SERVICE_NAME` says otherwise. Without one nothing is installed: the interceptor lists below
are empty, so an untraced process pays nothing, not even a no-op span per call.

Where traced, the trace context crosses every hop: gRPC metadata (`traceparent`) between our processes,
Temporal headers from the gateway's start of a workflow to the workflow and its activities.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used, so that an untraced process loads none of it
    import grpc
    import temporalio.client

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Probes and grpcurl's reflection calls would only be noise in traces.
UNTRACED_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)

_provider: Any = None  # the SDK TracerProvider once configured


def tracing_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces (an OTLP endpoint, and the SDK not switched off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def configure_tracing(service: str) -> bool:
    """Install the OTLP-exporting tracer provider if configured; returns whether tracing is on."""
    global _provider
    if _provider is not None:
        return True
    if not tracing_configured():
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or service
    # Spans still buffered are exported at interpreter exit (the provider's atexit hook), after the drain.
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    endpoint = next(os.environ[v] for v in ENDPOINT_VARIABLES if os.environ.get(v, "").strip())
    log.info("tracing on", extra={"otlp_endpoint": endpoint, "service_name": name})
    return True


def tracing_enabled() -> bool:
    return _provider is not None


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:  # type: ignore[type-arg]
    """A server span per call, continuing the caller's trace; empty when tracing is off."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    untraced = filters.any_of(*(filters.service_name(name) for name in UNTRACED_SERVICES))
    return [aio_server_interceptor(_provider, filter_=filters.negate(untraced))]  # type: ignore[no-untyped-call]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """A client span per call, its context sent along in metadata; empty when tracing is off."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    interceptors: list[grpc.aio.ClientInterceptor] = aio_client_interceptors(_provider)  # type: ignore[no-untyped-call]
    return interceptors


def temporal_interceptors() -> list[temporalio.client.Interceptor]:
    """For `Client.connect`: spans for starting workflows and, on a worker, for running workflows and
    activities, the context carried in Temporal headers; empty when tracing is off."""
    if _provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(_provider.get_tracer(__name__))]


def current_trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span active here, for log lines; None when there is none."""
    if _provider is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def current_trace_carrier() -> str:
    """The active trace context as a W3C `traceparent` string ("" when tracing is off or no span is
    active), to store beside work that another process continues later (the outbox)."""
    if _provider is None:
        return ""
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def continued_trace(traceparent: str) -> Iterator[None]:
    """Make a stored `traceparent` the current context, so spans started inside join that trace."""
    if _provider is None or not traceparent:
        yield
        return
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)
