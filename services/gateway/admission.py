"""Admission: who may call, and how many uploads may be in flight, decided from the headers alone.

`AdmissionInterceptor` authenticates every ExtractionService call from its metadata before any request
message is received. A refused call (a missing or wrong API key, or a tenant or gateway already at its
upload cap) gets a stream-request handler that fails at once without ever reading the request, so grpc
never receives and buffers a 32 MiB body it is about to refuse (the body still crosses the network
up to HTTP/2's flow-control window; it is not held). An admitted call runs with its tenant in
`current_tenant`, which the servicer reads.

Uploads (CreateExtraction and UploadExtraction) hold a slot of `UploadSlots` from admission until their
handler returns: at most `per_tenant` per tenant at once (more are refused at once), of which at most
`total` in the process are being received (the others wait a few seconds, unread, for a slot), so no
tenant and no crowd of clients can make the gateway hold more request bodies than it has memory for.
Over a cap the answer is RESOURCE_EXHAUSTED, reason TOO_MANY_UPLOADS: retry later, with backoff.

Install it inside `ErrorInterceptor` (clausework.runtime.rpc.serve's `interceptors`), which turns the
errors raised here into statuses with an `error-reason` trailer.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from clausework.runtime.errors import InvalidArgument, ResourceExhausted, ServiceError, rewrap_handler
from services.gateway.auth import ApiKeys, Unauthenticated

SERVICE = "/contracts.v1.ExtractionService/"
UPLOAD_METHODS = frozenset({SERVICE + "CreateExtraction", SERVICE + "UploadExtraction"})
# How long an upload may wait, unread, for one of the process-wide slots (at most its own deadline).
QUEUE_SECONDS = 10.0

# The tenant of the call being served, set by AdmissionInterceptor for the call's task.
current_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("current_tenant")


class UploadSlots:
    """Uploads in flight: at most `per_tenant` per tenant (refused at once beyond that), of which at most
    `total` in the whole process are being received; the others wait up to `queue_seconds` for one of
    those slots, their bodies unread, then are refused. Single event loop: no locking needed."""

    def __init__(self, per_tenant: int, total: int, queue_seconds: float = QUEUE_SECONDS) -> None:
        if per_tenant < 1 or total < 1:
            raise ValueError("upload caps must be at least 1")
        self.per_tenant = per_tenant
        self.total = total
        self.queue_seconds = queue_seconds
        self._held: Counter[str] = Counter()  # per tenant, running or waiting
        self._running = asyncio.Semaphore(total)
        self.in_flight = 0  # running

    def held(self, tenant: str) -> int:
        return self._held[tenant]

    async def acquire(self, tenant: str, time_remaining: float | None = None) -> None:
        if self._held[tenant] >= self.per_tenant:
            raise ResourceExhausted(
                f"too many uploads in flight for this tenant (at most {self.per_tenant} at once); "
                "retry when one has finished",
                reason="TOO_MANY_UPLOADS",
            )
        self._held[tenant] += 1
        wait = self.queue_seconds if time_remaining is None else max(0.0, min(self.queue_seconds, time_remaining))
        try:
            await asyncio.wait_for(self._running.acquire(), wait)
        except TimeoutError:
            self._forget(tenant)
            raise ResourceExhausted(
                f"the gateway is receiving its maximum of {self.total} uploads; retry shortly, with backoff",
                reason="TOO_MANY_UPLOADS",
            ) from None
        except BaseException:
            self._forget(tenant)
            raise
        self.in_flight += 1

    def release(self, tenant: str) -> None:
        self.in_flight -= 1
        self._running.release()
        self._forget(tenant)

    def _forget(self, tenant: str) -> None:
        self._held[tenant] -= 1
        if self._held[tenant] <= 0:
            del self._held[tenant]


def _codec(handler: Any) -> dict[str, Any]:
    return {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }


def refusing_handler(handler: Any, error: ServiceError) -> Any:
    """A handler for `handler`'s method that raises `error` without reading a single request message: a
    stream-request handler, whose requests grpc only receives when the handler asks for them."""

    if handler.unary_unary or handler.stream_unary:

        async def refuse(requests: AsyncIterator[Any], context: Any) -> Any:
            raise error

        return grpc.stream_unary_rpc_method_handler(refuse, **_codec(handler))

    async def refuse_stream(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        raise error
        yield  # an async generator, as a server-streaming handler must be

    return grpc.stream_stream_rpc_method_handler(refuse_stream, **_codec(handler))


async def _single(requests: AsyncIterator[Any]) -> Any:
    request = await anext(aiter(requests), None)
    if request is None:
        raise InvalidArgument("the call carried no request message")
    return request


def upload_handler(handler: Any, tenant: str, slots: UploadSlots) -> Any:
    """`handler` (CreateExtraction or UploadExtraction) behind an upload slot taken before the request is
    read and released when the handler returns or fails; a unary one becomes stream-request so that
    the slot is taken before grpc reads its body."""
    behavior = handler.unary_unary or handler.stream_unary
    if behavior is None:
        raise TypeError("uploads are unary-response methods")
    unary_request = handler.unary_unary is not None

    async def admitted(requests: AsyncIterator[Any], context: Any) -> Any:
        await slots.acquire(tenant, context.time_remaining())
        try:
            current_tenant.set(tenant)
            return await behavior(await _single(requests) if unary_request else requests, context)
        finally:
            slots.release(tenant)

    return grpc.stream_unary_rpc_method_handler(admitted, **_codec(handler))


def tenant_handler(handler: Any, tenant: str) -> Any:
    """`handler` with `current_tenant` set while it runs."""

    def unary(behavior: Callable[[Any, Any], Awaitable[Any]], streaming: bool) -> Any:
        async def wrapper(request: Any, context: Any) -> Any:
            current_tenant.set(tenant)
            return await behavior(request, context)

        return wrapper

    def stream(behavior: Callable[[Any, Any], AsyncIterator[Any]], streaming: bool) -> Any:
        async def wrapper(request: Any, context: Any) -> AsyncIterator[Any]:
            current_tenant.set(tenant)
            async for response in behavior(request, context):
                yield response

        return wrapper

    return rewrap_handler(handler, unary, stream)


class AdmissionInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Authenticates ExtractionService calls and caps uploads in flight, before any request is read.
    Other services (health, reflection) pass untouched."""

    def __init__(self, keys: ApiKeys, slots: UploadSlots) -> None:
        self._keys = keys
        self._slots = slots

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: Any = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(SERVICE):
            return handler
        try:
            tenant = self._keys.tenant(handler_call_details.invocation_metadata)  # type: ignore[arg-type]
        except Unauthenticated as error:
            return refusing_handler(handler, error)
        if method in UPLOAD_METHODS:
            return upload_handler(handler, tenant, self._slots)
        return tenant_handler(handler, tenant)
