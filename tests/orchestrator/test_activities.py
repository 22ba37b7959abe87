"""Which gRPC failures the workflow retries: transient ones always, input errors never, bugs briefly."""

from __future__ import annotations

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from orchestrator.activities import MAX_ATTEMPTS_ON_BUGS, to_application_error


def rpc_error(code: grpc.StatusCode, reason: str = "") -> AioRpcError:
    trailing = Metadata(("error-reason", reason)) if reason else Metadata()
    return AioRpcError(code, Metadata(), trailing, details="details here", debug_error_string="")


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_transient_errors_are_always_retried(code: grpc.StatusCode) -> None:
    assert not to_application_error(rpc_error(code), attempt=1000).non_retryable


def test_input_errors_are_never_retried_and_keep_their_reason() -> None:
    error = to_application_error(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "ENCRYPTED_PDF"), attempt=1)
    assert error.non_retryable and error.type == "ENCRYPTED_PDF" and error.message == "details here"


def test_server_bugs_get_a_few_attempts_only() -> None:
    internal = rpc_error(grpc.StatusCode.INTERNAL)
    assert not to_application_error(internal, attempt=MAX_ATTEMPTS_ON_BUGS - 1).non_retryable
    assert to_application_error(internal, attempt=MAX_ATTEMPTS_ON_BUGS).non_retryable
