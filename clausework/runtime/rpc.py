"""gRPC bootstrap shared by every server and client.

`serve` runs a server the way every process here must: standard health service and server
reflection (so grpcurl and Kubernetes probes work), the error interceptor, raised message limits,
and graceful shutdown on SIGTERM/SIGINT — health turns NOT_SERVING first, then in-flight calls get
`shutdown_grace_seconds` to finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from clausework.runtime.errors import ErrorInterceptor
from clausework.runtime.metrics import MetricsInterceptor, serve_metrics
from clausework.runtime.settings import MiB, ServerSettings
from clausework.runtime.telemetry import client_interceptors, server_interceptors
from contracts.internal.v1 import store_pb2, store_pb2_grpc

log = logging.getLogger(__name__)


def message_size_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


def channel(address: str, max_message_bytes: int = 64 * MiB) -> grpc.aio.Channel:
    """A client channel to an internal service.

    `round_robin` over every address the name resolves to: with a headless Kubernetes Service and a
    `dns:///` target each replica gets calls, instead of one long-lived HTTP/2 connection pinning a
    client to one pod. Keepalive notices dead peers (a SIGKILLed pod) in seconds, not minutes. With
    tracing on, each call gets a client span whose context travels in the call's metadata.
    """
    options = [
        *message_size_options(max_message_bytes),
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]
    return grpc.aio.insecure_channel(address, options=options, interceptors=client_interceptors() or None)


async def serve(
    settings: ServerSettings,
    *,
    service_names: Sequence[str],
    register: Callable[[grpc.aio.Server], None],
    on_stop: Callable[[], Awaitable[None]] | None = None,
    stop_when: asyncio.Future[Any] | None = None,
    tls: tuple[bytes, bytes] | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),  # type: ignore[type-arg]
    options: Sequence[tuple[str, Any]] = (),
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop_when` completes), then drain. `register` adds servicers.

    Interceptors, outermost first: the tracing span (when tracing is on), metrics, error mapping, then
    the caller's `interceptors` (inside error mapping, so their ServiceErrors become statuses). Extra
    channel `options` (e.g. grpc.max_concurrent_streams) are appended to ours. Metrics are served on
    `settings.metrics_port` unless it is 0.
    """
    if settings.metrics_port:
        serve_metrics(settings.host, settings.metrics_port)
    server = grpc.aio.server(
        interceptors=[*server_interceptors(), MetricsInterceptor(), ErrorInterceptor(), *interceptors],
        options=[
            *message_size_options(settings.max_message_bytes),
            # Accept client keepalive pings as often as our own clients send them.
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            # Clients reconnect (and re-resolve DNS) every few minutes, so replicas added by an
            # autoscaler get traffic from long-lived round_robin clients too; long streams may finish.
            ("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * 1000)),
            ("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_grace_seconds * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            *options,
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    if tls is not None:  # (private key, certificate chain), PEM
        port = server.add_secure_port(settings.address, grpc.ssl_server_credentials([tls]))
    else:
        port = server.add_insecure_port(settings.address)
    if port == 0:
        raise RuntimeError(f"cannot bind {settings.address}")
    await server.start()
    for name in ("", *service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", extra={"address": f"{settings.host}:{port}", "services": list(service_names)})

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if stop_when is not None:
        stop_when.add_done_callback(lambda _: stop.set())
    await stop.wait()

    log.info("shutting down", extra={"grace_seconds": settings.shutdown_grace_seconds})
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.shutdown_grace_seconds)
    if on_stop is not None:
        await on_stop()
    log.info("stopped")


def service_name(descriptor_module: object, service: str) -> str:
    """The full name of `service` in a generated *_pb2 module, e.g. contracts.v1.ExtractionService."""
    return str(descriptor_module.DESCRIPTOR.services_by_name[service].full_name)  # type: ignore[attr-defined]


OBJECT_CHUNK_BYTES = 1 * MiB


async def read_object(store: store_pb2_grpc.StoreServiceAsyncStub, key: str, deadline: float) -> bytes:
    """Fetch a claim-check object through the store (the only process holding S3 credentials)."""
    call = store.ReadObject(store_pb2.ReadObjectRequest(key=key), timeout=deadline)
    return b"".join([message.data async for message in call])


async def write_object(store: store_pb2_grpc.StoreServiceAsyncStub, key: str, data: bytes, deadline: float) -> None:
    """Write a claim-check object through the store, in chunks that fit any message limit."""

    async def messages() -> AsyncIterator[store_pb2.WriteObjectRequest]:
        starts = range(0, max(len(data), 1), OBJECT_CHUNK_BYTES)
        for start in starts:
            yield store_pb2.WriteObjectRequest(
                key=key if start == 0 else "",
                data=data[start : start + OBJECT_CHUNK_BYTES],
                finish=start == starts[-1],
            )

    await store.WriteObject(messages(), timeout=deadline)
