"""Prometheus metrics of a process: served over HTTP on its `*_METRICS_PORT` (0 = off).

Every gRPC server counts its calls through `MetricsInterceptor` (by method and status code, with a
latency histogram); each service adds its own counters next to the code that moves them (pages parsed,
tokens, extractions by state, activity outcomes, S3 requests by operation). prometheus_client's default
collectors add process CPU, memory and file descriptors. All our metric names start with `clausework_`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram, start_http_server

from clausework.runtime.errors import rewrap_handler

log = logging.getLogger(__name__)

GRPC_REQUESTS = Counter(
    "clausework_grpc_server_requests",
    "gRPC calls handled by this process, by full method name and status code.",
    ["method", "code"],
)
GRPC_ERRORS = Counter(
    "clausework_grpc_server_errors",
    "gRPC calls that ended with a status other than OK, by full method name and status code.",
    ["method", "code"],
)
GRPC_DURATION = Histogram(
    "clausework_grpc_server_duration_seconds",
    "Time from the start of a gRPC call to its status (streams: to the last message), by full method name.",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)


def serve_metrics(host: str, port: int) -> int:
    """Serve /metrics on host:port in a background thread; returns the bound port (port 0: any free one)."""
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as error:
        raise SystemExit(f"cannot serve metrics on {host}:{port}: {error}") from None
    bound = int(server.server_port)
    log.info("serving metrics", extra={"address": f"{host}:{bound}"})
    return bound


def _code_name(context: Any) -> str:
    """The status the handler set (context.abort / set_code); UNKNOWN if it set none."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):  # some grpc versions hand back the numeric value
        return next((each.name for each in grpc.StatusCode if each.value[0] == code), "UNKNOWN")
    return "UNKNOWN"


def _record(method: str, code: str, started: float) -> None:
    GRPC_REQUESTS.labels(method, code).inc()
    if code != "OK":
        GRPC_ERRORS.labels(method, code).inc()
    GRPC_DURATION.labels(method).observe(time.perf_counter() - started)


def _wrap_unary(behavior: Callable[[Any, Any], Awaitable[Any]], method: str) -> Callable[[Any, Any], Awaitable[Any]]:
    async def wrapper(request: Any, context: Any) -> Any:
        started = time.perf_counter()
        code = "UNKNOWN"
        try:
            response = await behavior(request, context)
            code = "OK"
            return response
        except grpc.aio.AbortError:
            code = _code_name(context)
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            _record(method, code, started)

    return wrapper


def _wrap_stream(
    behavior: Callable[[Any, Any], AsyncIterator[Any]], method: str
) -> Callable[[Any, Any], AsyncIterator[Any]]:
    async def wrapper(request: Any, context: Any) -> AsyncIterator[Any]:
        started = time.perf_counter()
        code = "UNKNOWN"
        try:
            result: Any = behavior(request, context)
            if hasattr(result, "__aiter__"):
                async for response in result:
                    yield response
            else:  # a handler that streams with context.write() (e.g. grpc's health Watch)
                await result
            code = "OK"
        except grpc.aio.AbortError:
            code = _code_name(context)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = "CANCELLED"
            raise
        finally:
            _record(method, code, started)

    return wrapper


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Counts every call by method and final status code, and times it. Install it outside the
    `ErrorInterceptor`, so that exceptions have already become statuses when it looks."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: Any = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        return rewrap_handler(
            handler,
            lambda behavior, _: _wrap_unary(behavior, method),
            lambda behavior, _: _wrap_stream(behavior, method),
        )
