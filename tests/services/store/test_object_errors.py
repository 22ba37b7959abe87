"""S3 errors that mean "try again" are UNAVAILABLE for callers, others are not."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from clausework.runtime.errors import _is_transient
from services.store import objects  # noqa: F401 -- registers the store's transient errors


@pytest.mark.parametrize(("code", "transient"), [("InternalError", True), ("SlowDown", True), ("503", True),
                                                  ("NoSuchKey", False), ("AccessDenied", False)])  # fmt: skip
def test_s3_error_codes(code: str, transient: bool) -> None:
    error = ClientError({"Error": {"Code": code, "Message": "m"}}, "GetObject")
    assert _is_transient(error) is transient
