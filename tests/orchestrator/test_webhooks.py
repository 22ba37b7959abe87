"""Webhook signing and sending: signatures checked by the `standardwebhooks` package (an independent
implementation of the spec), and the sender against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks
from aiohttp import web
from google.protobuf import timestamp_pb2

from clausework.runtime.webhook_targets import TargetPolicy
from contracts.internal.v1 import store_pb2
from contracts.v1 import extraction_pb2 as pb
from orchestrator.webhooks import (
    SigningKeys,
    WebhookSender,
    event_body,
    judge,
    parse_secret,
    retry_after,
    sign,
    webhook_id,
)

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
TENANT_SECRET = "whsec_" + base64.b64encode(b"tenant-b-secret-key-32-bytes-long").decode()
LOOPBACK = TargetPolicy.parse("127.0.0.0/8", allow_insecure=True)
EXTRACTION_ID = "3f2b6a9e-8d1c-4b7a-9e0f-1a2b3c4d5e6f"


def event(state: pb.State.ValueType = pb.STATE_SUCCEEDED) -> store_pb2.GetWebhookEventResponse:
    answer = store_pb2.GetWebhookEventResponse(url="https://x", tenant="t", state=state, clause_count=7, page_count=3)
    answer.end_time.CopyFrom(timestamp_pb2.Timestamp(seconds=1_700_000_000))
    return answer


def test_signature_verifies_with_the_reference_implementation() -> None:
    body = event_body(EXTRACTION_ID, event())
    message_id = webhook_id(EXTRACTION_ID, pb.STATE_SUCCEEDED)
    now = int(datetime.now(UTC).timestamp())
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(now),
        "webhook-signature": sign(parse_secret(SECRET), message_id, now, body),
    }
    verified = standardwebhooks.Webhook(SECRET).verify(body, headers)
    assert verified["type"] == "extraction.succeeded"
    assert verified["data"] == {
        "id": EXTRACTION_ID,
        "state": "STATE_SUCCEEDED",
        "error_code": "",
        "clause_count": 7,
        "page_count": 3,
    }
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(TENANT_SECRET).verify(body, headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(body.replace(b"7", b"8"), headers)


def test_event_ids_are_stable_and_events_hold_no_text() -> None:
    assert webhook_id(EXTRACTION_ID, pb.STATE_FAILED) == webhook_id(EXTRACTION_ID, pb.STATE_FAILED)
    assert webhook_id(EXTRACTION_ID, pb.STATE_FAILED) != webhook_id(EXTRACTION_ID, pb.STATE_CANCELLED)
    body = json.loads(event_body(EXTRACTION_ID, event(pb.STATE_CANCELLED)))
    assert body["type"] == "extraction.cancelled"
    assert body["timestamp"] == "2023-11-14T22:13:20Z"
    assert set(body["data"]) == {"id", "state", "error_code", "clause_count", "page_count"}


def test_secrets_must_be_whsec_base64_and_tenants_may_have_their_own() -> None:
    for bad in ("plain", "whsec_not*base64", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            parse_secret(bad)
    keys = SigningKeys.parse(SECRET, f"tenant-b:{TENANT_SECRET}")
    assert keys.for_tenant("tenant-a") == parse_secret(SECRET)
    assert keys.for_tenant("tenant-b") == parse_secret(TENANT_SECRET)
    assert SigningKeys.parse("", "").for_tenant("x") is None


def test_status_codes_and_retry_after() -> None:
    assert judge(200, None).state == pb.WEBHOOK_STATE_DELIVERED
    assert judge(204, None).state == pb.WEBHOOK_STATE_DELIVERED
    for retried in (429, 500, 502, 503):
        assert judge(retried, None).state == pb.WEBHOOK_STATE_RETRYING
    for final in (301, 302, 400, 401, 404, 410):
        assert judge(final, None).state == pb.WEBHOOK_STATE_FAILED
    assert judge(429, "7").retry_after == timedelta(seconds=7)
    assert retry_after("999999") == timedelta(hours=1)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now) == timedelta(seconds=30)
    assert retry_after("soon") is None


class Receiver:
    """A real HTTP server on 127.0.0.1 that answers with the statuses it is told, in order."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.headers: dict[str, str] = {}
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.hang = False
        self.released = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if self.hang:
            await self.released.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        headers = {"location": "http://127.0.0.1:1/elsewhere"} if 300 <= status < 400 else self.headers
        return web.Response(status=status, headers=headers, body=b"x" * 100_000)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/hook", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/hook"
    yield state
    state.released.set()
    await runner.cleanup()


async def test_sender_posts_a_verifiable_event(receiver: Receiver) -> None:
    sender = WebhookSender(LOOPBACK, SigningKeys.parse(SECRET, ""), 2.0)
    try:
        body = event_body(EXTRACTION_ID, event())
        attempt = await sender.send(receiver.url, "t", "msg-1", body)
        assert (attempt.state, attempt.status_code) == (pb.WEBHOOK_STATE_DELIVERED, 200)
        headers, received = receiver.requests[0]
        assert received == body
        assert standardwebhooks.Webhook(SECRET).verify(received, headers)["data"]["id"] == EXTRACTION_ID
    finally:
        await sender.close()


async def test_sender_follows_no_redirects_and_times_out(receiver: Receiver) -> None:
    sender = WebhookSender(LOOPBACK, SigningKeys.parse(SECRET, ""), 1.0)
    try:
        receiver.statuses = [302]
        attempt = await sender.send(receiver.url, "t", "msg-1", b"{}")
        assert (attempt.state, attempt.status_code) == (pb.WEBHOOK_STATE_FAILED, 302)
        assert len(receiver.requests) == 1  # the Location was not visited
        receiver.statuses, receiver.headers = [429], {"retry-after": "3"}
        attempt = await sender.send(receiver.url, "t", "msg-1", b"{}")
        assert (attempt.state, attempt.retry_after) == (pb.WEBHOOK_STATE_RETRYING, timedelta(seconds=3))
        receiver.hang = True
        started = asyncio.get_running_loop().time()
        attempt = await sender.send(receiver.url, "t", "msg-1", b"{}")
        assert attempt.state == pb.WEBHOOK_STATE_RETRYING and "no answer within 1 s" in attempt.error
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await sender.close()


async def test_sender_refuses_addresses_before_connecting(receiver: Receiver) -> None:
    """The delivery-time check: loopback not allowed here, so nothing reaches the receiver — whether
    the URL names an address or a host name (the resolver refuses)."""
    sender = WebhookSender(TargetPolicy(allow_insecure=True), SigningKeys.parse(SECRET, ""), 2.0)
    try:
        for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
            attempt = await sender.send(url, "t", "msg-1", b"{}")
            assert attempt.state == pb.WEBHOOK_STATE_FAILED, url
            assert "not a public address" in attempt.error
        assert receiver.requests == []
        no_key = WebhookSender(LOOPBACK, SigningKeys(), 2.0)
        assert (await no_key.send(receiver.url, "t", "m", b"{}")).state == pb.WEBHOOK_STATE_FAILED
        assert receiver.requests == []
    finally:
        await sender.close()
