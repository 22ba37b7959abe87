"""ExtractionOptions beyond reprocess: checked here, before anything is stored or sent anywhere."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import duration_pb2

from clausework.runtime.errors import InvalidArgument
from clausework.runtime.webhook_targets import RefusedTarget, Resolve, TargetPolicy
from contracts.v1 import extraction_pb2 as pb


@dataclass(frozen=True)
class CheckedOptions:
    retention: duration_pb2.Duration | None
    webhook_url: str


async def check_options(
    options: pb.ExtractionOptions, policy: TargetPolicy, resolve: Resolve | None = None
) -> CheckedOptions:
    """INVALID_ARGUMENT for a negative retention or a webhook URL the SSRF policy refuses. The URL's host
    is only resolved (an IP literal not even that): nothing is sent to it."""
    retention = None
    if options.HasField("retention"):
        if options.retention.seconds < 0 or options.retention.nanos < 0:
            raise InvalidArgument("options.retention must not be negative", reason="INVALID_RETENTION")
        if options.retention.ToNanoseconds() > 0:
            retention = options.retention
    url = options.webhook_url
    if url:
        try:
            await policy.check_url(url, resolve)
        except RefusedTarget as refused:
            raise InvalidArgument(str(refused), reason="INVALID_WEBHOOK_URL") from None
    return CheckedOptions(retention, url)
