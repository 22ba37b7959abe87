"""Error → gRPC status mapping.

Logic modules raise `ServiceError` subclasses and know nothing of gRPC; `ErrorInterceptor` turns them
into a status code, a human message and a machine-readable reason in the `error-reason` trailer (the
orchestrator reads it to tell bad input from transient faults). A failed downstream call passes its
status through; anything else becomes INTERNAL, logged with its traceback but never sent to the client.
A request that is not a valid message (e.g. invalid UTF-8 in a string field) is INVALID_ARGUMENT with
reason MALFORMED_REQUEST, not grpc's UNKNOWN.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

log = logging.getLogger(__name__)

REASON_KEY = "error-reason"


class ServiceError(Exception):
    """An error whose message is safe and useful to show the caller."""

    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.code.name


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """The reason a server put in the `error-reason` trailer, else the status code's name."""
    metadata: Any = error.trailing_metadata() or ()
    for key, value in metadata:
        if key == REASON_KEY:
            return str(value)
    return error.code().name


class _Malformed:
    """Stands in for a request message that failed to parse, so the servicer call can refuse it."""

    def __init__(self, error: str) -> None:
        self.error = error


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as exc:
            return _Malformed(str(exc))

    return deserialize


def _check(request: Any) -> Any:
    if isinstance(request, _Malformed):
        raise InvalidArgument(
            f"the request is not a valid protobuf message (string fields must be UTF-8): {request.error}",
            reason="MALFORMED_REQUEST",
        )
    return request


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _check(request)


# Exceptions of client libraries that mean "the dependency is unreachable right now" (registered by the
# module that uses the library): UNAVAILABLE, so callers retry, instead of INTERNAL.
_transient: tuple[type[BaseException], ...] = ()


_transient_checks: list[Callable[[BaseException], bool]] = []


def register_transient(*types: type[BaseException]) -> None:
    global _transient
    _transient = (*_transient, *types)


def register_transient_check(check: Callable[[BaseException], bool]) -> None:
    """Like register_transient, for errors told apart by their content (e.g. an S3 `InternalError`)."""
    _transient_checks.append(check)


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _transient) or any(check(exc) for check in _transient_checks)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception, method: str) -> None:
    if isinstance(exc, ServiceError):
        log.info("rpc error", extra={"method": method, "code": exc.code.name, "reason": exc.reason})
        await context.abort(exc.code, exc.message, trailing_metadata=((REASON_KEY, exc.reason),))
    if isinstance(exc, grpc.aio.AioRpcError):  # a downstream call failed: pass its status through
        code = grpc.StatusCode.UNAVAILABLE if exc.code() == grpc.StatusCode.CANCELLED else exc.code()
        log.warning("downstream error", extra={"method": method, "code": exc.code().name})
        await context.abort(code, exc.details() or "", trailing_metadata=((REASON_KEY, error_reason(exc)),))
    if _is_transient(exc):
        log.warning("dependency unavailable", extra={"method": method, "error": type(exc).__name__})
        unavailable = ((REASON_KEY, "UNAVAILABLE"),)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "a dependency is unavailable", trailing_metadata=unavailable)
    log.exception("unexpected error", extra={"method": method})
    await context.abort(grpc.StatusCode.INTERNAL, "internal error", trailing_metadata=((REASON_KEY, "INTERNAL"),))


def _wrap_unary(
    behavior: Callable[[Any, Any], Awaitable[Any]], method: str, streaming: bool = False
) -> Callable[[Any, Any], Awaitable[Any]]:
    async def wrapper(request: Any, context: Any) -> Any:
        try:
            return await behavior(_checked(request) if streaming else _check(request), context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, method)

    return wrapper


def _wrap_stream(
    behavior: Callable[[Any, Any], AsyncIterator[Any]], method: str, streaming: bool = False
) -> Callable[[Any, Any], AsyncIterator[Any]]:
    async def wrapper(request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            result: Any = behavior(_checked(request) if streaming else _check(request), context)
            if hasattr(result, "__aiter__"):
                async for response in result:
                    yield response
            else:  # a handler that streams with context.write() (e.g. grpc's health Watch)
                await result
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, method)

    return wrapper


# (servicer behavior, whether the client streams) -> the wrapped behavior
Wrap = Callable[[Any, bool], Any]


def rewrap_handler(handler: Any, unary: Wrap, stream: Wrap, *, request_deserializer: Any = None) -> Any:
    """A copy of an RPC method handler with its behavior wrapped: the one place that knows the four RPC
    kinds, for server interceptors (`unary` wraps unary-response kinds, `stream` server-streaming ones)."""
    codec = {
        "request_deserializer": request_deserializer or handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary, False), **codec)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary, True), **codec)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream, False), **codec)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream, True), **codec)
    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Maps exceptions raised by servicer methods to statuses, for all four RPC kinds."""

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
            lambda behavior, streaming: _wrap_unary(behavior, method, streaming),
            lambda behavior, streaming: _wrap_stream(behavior, method, streaming),
            request_deserializer=_lenient(handler.request_deserializer),
        )
