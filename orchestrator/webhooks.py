"""Completion webhooks: a signed JSON event POSTed to the caller's URL when an extraction ends.

Signed per the Standard Webhooks spec (https://www.standardwebhooks.com), so receivers verify it with
that spec's libraries: headers `webhook-id` (the same on every retry, for de-duplication),
`webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">` under a `whsec_<base64>` secret (WEBHOOK_SIGNING_SECRET, or the tenant's from
WEBHOOK_TENANT_SIGNING_SECRETS). The event says what happened and nothing of the contract: id, state,
error code, counts.

Clause text only for tenants the operator opted in (WEBHOOK_CLAUSE_TEXT_TENANTS): their
`extraction.succeeded` events add `clauses` (each with the public Clause message's fields) and
`clauses_truncated`. The clauses are read from the store at each attempt — the workflow passes only the
id, so no text enters Temporal history — and an event is at most MAX_EVENT_BYTES: clauses that would make
it larger are left out (`clauses_truncated: true`; the receiver reads them with GetExtraction). An
extraction deleted or expired before an attempt reads it sends nothing at all, to anyone.

Delivery is one activity attempt per POST; Temporal retries it with exponential backoff for up to 24 h
on timeouts, connection errors, 429 and 5xx (a Retry-After header sets the next delay), never on other
4xx or redirects (which are not followed). Every attempt's outcome is recorded on the extraction. The
URL is checked against the SSRF policy again before each attempt, and the HTTP client's resolver
refuses disallowed addresses too, so a DNS answer that changed since submit cannot reach them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import grpc
from aiohttp.abc import AbstractResolver, ResolveResult
from google.protobuf import json_format
from temporalio import activity
from temporalio.exceptions import ApplicationError

from clausework.pipeline.payloads import WebhookInput, WebhookOutput
from clausework.runtime.settings import MiB
from clausework.runtime.webhook_targets import RefusedTarget, TargetPolicy
from contracts.internal.v1 import store_pb2, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from orchestrator.activities import to_application_error

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
# Bytes of a receiver's answer read at most (only to free the connection; never stored).
MAX_RESPONSE_BYTES = 4096
MAX_RETRY_AFTER = timedelta(hours=1)
# The largest event body sent (UTF-8 JSON): receivers and their proxies commonly cap request bodies near
# 1 MiB, and a body that size is sent again on every retry.
MAX_EVENT_BYTES = 1 * MiB
STORE_TIMEOUT_SECONDS = 10.0
EVENT_TYPES: dict[int, str] = {
    pb.STATE_SUCCEEDED: "extraction.succeeded",
    pb.STATE_FAILED: "extraction.failed",
    pb.STATE_CANCELLED: "extraction.cancelled",
}


def parse_secret(value: str) -> bytes:
    """The key of a `whsec_<base64>` secret (the Standard Webhooks format)."""
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook signing secret must look like {SECRET_PREFIX}<base64>")
    try:
        key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as error:
        raise ValueError("a webhook signing secret must be base64 after its whsec_ prefix") from error
    if len(key) < 16:
        raise ValueError("a webhook signing secret must hold at least 16 bytes")
    return key


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one attempt."""
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac).decode()}"


@dataclass(frozen=True)
class SigningKeys:
    """The deployment's key and tenants' own keys (`tenant:whsec_...` pairs, comma separated)."""

    default: bytes | None = None
    tenants: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def parse(cls, default: str, tenants: str) -> SigningKeys:
        pairs = []
        for entry in (part.strip() for part in tenants.split(",")):
            if entry:
                tenant, _, secret = entry.partition(":")
                if not tenant.strip():
                    raise ValueError("a tenant's webhook signing secret must be given as tenant:whsec_...")
                pairs.append((tenant.strip(), parse_secret(secret.strip())))
        return cls(parse_secret(default) if default else None, tuple(pairs))

    def for_tenant(self, tenant: str) -> bytes | None:
        return dict(self.tenants).get(tenant, self.default)


def webhook_id(extraction_id: str, state: int) -> str:
    """Stable across retries: an extraction has one terminal event."""
    return f"extraction_{extraction_id}_{EVENT_TYPES[state].rsplit('.', 1)[1]}"


def clause_fields(clause: pb.Clause) -> dict[str, Any]:
    """A clause as the public API's Clause message has it (proto field names, defaults included)."""
    return json_format.MessageToDict(
        clause, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _dump(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def event_body(
    extraction_id: str, event: store_pb2.GetWebhookEventResponse, clauses: Sequence[pb.Clause] | None = None
) -> bytes:
    """The JSON event: ids, state, error code and counts; never filenames or document content, and clause
    text only when `clauses` is given (an opted-in tenant's succeeded extraction) and the body stays
    within MAX_EVENT_BYTES."""
    data: dict[str, Any] = {
        "id": extraction_id,
        "state": pb.State.Name(event.state),
        "error_code": event.error_code,
        "clause_count": event.clause_count,
        "page_count": event.page_count,
    }
    payload = {
        "type": EVENT_TYPES[event.state],
        "timestamp": event.end_time.ToDatetime(UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    if clauses is None:
        return _dump(payload)
    data.update(clauses=[clause_fields(clause) for clause in clauses], clauses_truncated=False)
    body = _dump(payload)
    if len(body) <= MAX_EVENT_BYTES:
        return body
    del data["clauses"]
    data["clauses_truncated"] = True
    return _dump(payload)


def retry_after(value: str | None, now: datetime | None = None) -> timedelta | None:
    """A Retry-After header (seconds or an HTTP date) as a delay, capped at MAX_RETRY_AFTER."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = when - (now or datetime.now(UTC))
    return max(timedelta(seconds=1), min(delay, MAX_RETRY_AFTER))


@dataclass(frozen=True)
class Attempt:
    """One POST's outcome."""

    state: int  # contracts.v1.WebhookState: DELIVERED, RETRYING or FAILED
    status_code: int = 0
    error: str = ""
    retry_after: timedelta | None = None


def judge(status: int, retry_after_header: str | None) -> Attempt:
    if 200 <= status < 300:
        return Attempt(pb.WEBHOOK_STATE_DELIVERED, status)
    if status == 429 or status >= 500:
        return Attempt(pb.WEBHOOK_STATE_RETRYING, status, f"HTTP {status}", retry_after(retry_after_header))
    if 300 <= status < 400:
        return Attempt(pb.WEBHOOK_STATE_FAILED, status, f"HTTP {status}: redirects are not followed")
    return Attempt(pb.WEBHOOK_STATE_FAILED, status, f"HTTP {status}")


class GuardedResolver(AbstractResolver):
    """Resolves as the system does, then refuses the connection if any answer is not allowed."""

    def __init__(self, policy: TargetPolicy) -> None:
        self._policy = policy
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        self._policy.check_addresses(host, [answer["host"] for answer in answers])
        return answers

    async def close(self) -> None:
        await self._inner.close()


class WebhookSender:
    """POSTs signed events: no redirects, no proxies or cookies, short timeouts, a small read."""

    def __init__(self, policy: TargetPolicy, keys: SigningKeys, timeout_seconds: float) -> None:
        self._policy = policy
        self._keys = keys
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, connect=min(5.0, timeout_seconds))
        self._timeout_seconds = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use, inside the worker's event loop
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._policy), use_dns_cache=False)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, url: str, tenant: str, message_id: str, body: bytes) -> Attempt:
        key = self._keys.for_tenant(tenant)
        if key is None:
            return Attempt(pb.WEBHOOK_STATE_FAILED, error="no signing secret is configured (WEBHOOK_SIGNING_SECRET)")
        try:
            await self._policy.check_url(url)
        except RefusedTarget as refused:
            return Attempt(pb.WEBHOOK_STATE_FAILED, error=str(refused))
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "Clausework-Webhooks/1",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, message_id, timestamp, body),
        }
        try:
            async with self._client().post(url, data=body, headers=headers, allow_redirects=False) as response:
                await response.content.read(MAX_RESPONSE_BYTES)
                return judge(response.status, response.headers.get("retry-after"))
        except TimeoutError:
            return Attempt(pb.WEBHOOK_STATE_RETRYING, error=f"no answer within {self._timeout_seconds:g} s")
        except aiohttp.ClientConnectorDNSError as error:
            if isinstance(error.os_error, RefusedTarget):
                return Attempt(pb.WEBHOOK_STATE_FAILED, error=str(error.os_error))
            return Attempt(pb.WEBHOOK_STATE_RETRYING, error="the host does not resolve")
        except aiohttp.ClientError as error:
            return Attempt(pb.WEBHOOK_STATE_RETRYING, error=f"{type(error).__name__}: {str(error)[:200]}")


class WebhookActivities:
    def __init__(
        self,
        store: store_pb2_grpc.StoreServiceAsyncStub,
        sender: WebhookSender,
        clause_text_tenants: Collection[str] = frozenset(),
    ) -> None:
        self._store = store
        self._sender = sender
        self._clause_text_tenants = frozenset(clause_text_tenants)

    async def _record(self, extraction_id: str, state: int, attempts: int, status: int = 0, error: str = "") -> None:
        request = store_pb2.RecordWebhookAttemptRequest(
            id=extraction_id,
            state=state,  # type: ignore[arg-type]
            attempts=attempts,
            last_status_code=status,
            last_error=error,
        )
        try:
            await self._store.RecordWebhookAttempt(request, timeout=STORE_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as failure:
            raise to_application_error(failure, activity.info().attempt, persist=True) from None

    async def _clauses(self, extraction_id: str, tenant: str) -> Sequence[pb.Clause] | None:
        """The extraction's clauses as GetExtraction shows them to its tenant; None once it is deleted or
        expired (the store hides it from that moment)."""
        try:
            found: Any = await self._store.GetExtraction(
                store_pb2.GetExtractionRequest(id=extraction_id, tenant=tenant), timeout=STORE_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as failure:
            if failure.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise to_application_error(failure, activity.info().attempt, persist=True) from None
        clauses: Sequence[pb.Clause] = found.extraction.clauses
        return clauses

    @activity.defn
    async def deliver_webhook(self, task: WebhookInput) -> WebhookOutput:
        """One attempt; raises a retryable error to be tried again (after Retry-After, if given)."""
        try:
            event: Any = await self._store.GetWebhookEvent(
                store_pb2.GetWebhookEventRequest(id=task.extraction_id), timeout=STORE_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as failure:
            if failure.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                return WebhookOutput(pb.WEBHOOK_STATE_UNSPECIFIED)  # deleted meanwhile: nobody to tell
            raise to_application_error(failure, activity.info().attempt, persist=True) from None
        if not event.url:
            return WebhookOutput(pb.WEBHOOK_STATE_UNSPECIFIED)
        clauses = None
        if event.state == pb.STATE_SUCCEEDED and event.tenant in self._clause_text_tenants:
            clauses = await self._clauses(task.extraction_id, event.tenant)
            if clauses is None:
                return WebhookOutput(pb.WEBHOOK_STATE_UNSPECIFIED)  # deleted between the two reads
        attempt_number = activity.info().attempt
        message_id = webhook_id(task.extraction_id, event.state)
        body = event_body(task.extraction_id, event, clauses)
        attempt = await self._sender.send(event.url, event.tenant, message_id, body)
        await self._record(task.extraction_id, attempt.state, attempt_number, attempt.status_code, attempt.error)
        log.info(
            "webhook attempt",
            extra={
                "extraction_id": task.extraction_id,
                "attempt": attempt_number,
                "status_code": attempt.status_code,
                "state": pb.WebhookState.Name(attempt.state),  # type: ignore[arg-type]
                "with_clauses": clauses is not None,
            },
        )
        if attempt.state == pb.WEBHOOK_STATE_DELIVERED:
            return WebhookOutput(attempt.state, attempt.status_code)
        raise ApplicationError(
            attempt.error or "webhook delivery failed",
            type="WEBHOOK_RETRYING" if attempt.state == pb.WEBHOOK_STATE_RETRYING else "WEBHOOK_FAILED",
            non_retryable=attempt.state == pb.WEBHOOK_STATE_FAILED,
            next_retry_delay=attempt.retry_after,
        )

    @activity.defn
    async def give_up_webhook(self, task: WebhookInput) -> None:
        """After the retry budget ran out: FAILED, keeping the last attempt's status and error."""
        await self._record(task.extraction_id, pb.WEBHOOK_STATE_FAILED, 0)
