"""Webhook signing and sending: signatures checked by the `standardwebhooks` package (an independent
implementation of the spec), the sender against a real HTTP server on 127.0.0.1, and what the delivery
activity puts in an event: clause text for opted-in tenants only, never for a deleted extraction."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import cast

import grpc
import pytest
import standardwebhooks
from aiohttp import web
from google.protobuf import timestamp_pb2
from grpc.aio import AioRpcError, Metadata
from temporalio.testing import ActivityEnvironment

from clausework.pipeline.payloads import WebhookInput
from clausework.runtime.webhook_targets import TargetPolicy
from contracts.internal.v1 import store_pb2, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from orchestrator.settings import WorkerSettings
from orchestrator.webhooks import (
    MAX_EVENT_BYTES,
    SigningKeys,
    WebhookActivities,
    WebhookSender,
    clause_fields,
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


BASE_FIELDS = {"id", "state", "error_code", "clause_count", "page_count"}
CLAUSES = [
    pb.Clause(
        category="Governing Law",
        text="This Agreement is governed by the laws of the State of New York.",
        page_start=4,
        page_end=4,
        char_start=9120,
        char_end=9185,
        confidence=0.875,
        answer="New York",
    ),
    pb.Clause(category="Parties", text="Müller GmbH and ACME Ltd.", page_start=1, page_end=1, char_end=25),
]


def event(
    state: pb.State.ValueType = pb.STATE_SUCCEEDED, url: str = "https://x", tenant: str = "t"
) -> store_pb2.GetWebhookEventResponse:
    answer = store_pb2.GetWebhookEventResponse(url=url, tenant=tenant, state=state, clause_count=7, page_count=3)
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
    assert set(body["data"]) == BASE_FIELDS


def test_clauses_carry_the_public_clause_fields() -> None:
    body = event_body(EXTRACTION_ID, event(), CLAUSES)
    data = json.loads(body)["data"]
    assert set(data) == BASE_FIELDS | {"clauses", "clauses_truncated"} and data["clauses_truncated"] is False
    assert data["clauses"] == [clause_fields(clause) for clause in CLAUSES]
    assert set(data["clauses"][0]) == {field.name for field in pb.Clause.DESCRIPTOR.fields}
    assert data["clauses"][0]["confidence"] == 0.875 and data["clauses"][1]["char_start"] == 0
    assert "Müller GmbH".encode() in body, "UTF-8 JSON, not \\u escapes"


def test_clauses_that_would_exceed_the_cap_are_left_out() -> None:
    huge = pb.Clause(category="Parties", text="x" * MAX_EVENT_BYTES, page_start=1, page_end=1)
    body = event_body(EXTRACTION_ID, event(), [*CLAUSES, huge])
    assert len(body) <= MAX_EVENT_BYTES
    data = json.loads(body)["data"]
    assert "clauses" not in data and data["clauses_truncated"] is True
    assert data["clause_count"] == 7, "the counts stay"
    assert CLAUSES[0].text.encode() not in body
    # Just under the cap, the clauses go.
    fitting = pb.Clause(category="Parties", text="x" * (MAX_EVENT_BYTES - 1000))
    assert json.loads(event_body(EXTRACTION_ID, event(), [fitting]))["data"]["clauses_truncated"] is False


def test_secrets_must_be_whsec_base64_and_tenants_may_have_their_own() -> None:
    for bad in ("plain", "whsec_not*base64", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            parse_secret(bad)
    keys = SigningKeys.parse(SECRET, f"tenant-b:{TENANT_SECRET}")
    assert keys.for_tenant("tenant-a") == parse_secret(SECRET)
    assert keys.for_tenant("tenant-b") == parse_secret(TENANT_SECRET)
    assert SigningKeys.parse("", "").for_tenant("x") is None
    with pytest.raises(ValueError):
        SigningKeys.parse(SECRET, f":{TENANT_SECRET}")


def test_clause_text_tenants_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().clause_text_tenants() == frozenset()
    monkeypatch.setenv("WEBHOOK_CLAUSE_TEXT_TENANTS", " acme, globex ,,")
    assert WorkerSettings().clause_text_tenants() == {"acme", "globex"}


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


def not_found() -> AioRpcError:
    return AioRpcError(grpc.StatusCode.NOT_FOUND, Metadata(), Metadata(), details="not found", debug_error_string="")


class FakeStore:
    """The store's webhook reads: an event, the clauses GetExtraction shows, or NOT_FOUND once deleted."""

    def __init__(self, answer: store_pb2.GetWebhookEventResponse, deleted_after_event: bool = False) -> None:
        self.answer = answer
        self.deleted_after_event = deleted_after_event
        self.clause_reads: list[store_pb2.GetExtractionRequest] = []
        self.recorded: list[store_pb2.RecordWebhookAttemptRequest] = []

    async def GetWebhookEvent(
        self, request: store_pb2.GetWebhookEventRequest, timeout: float
    ) -> store_pb2.GetWebhookEventResponse:
        return self.answer

    async def GetExtraction(
        self, request: store_pb2.GetExtractionRequest, timeout: float
    ) -> store_pb2.GetExtractionResponse:
        self.clause_reads.append(request)
        if self.deleted_after_event:
            raise not_found()
        return store_pb2.GetExtractionResponse(extraction=pb.Extraction(id=request.id, clauses=CLAUSES))

    async def RecordWebhookAttempt(self, request: store_pb2.RecordWebhookAttemptRequest, timeout: float) -> None:
        self.recorded.append(request)


async def deliver(store: FakeStore, opted_in: frozenset[str]) -> int:
    sender = WebhookSender(LOOPBACK, SigningKeys.parse(SECRET, ""), 2.0)
    activities = WebhookActivities(cast("store_pb2_grpc.StoreServiceAsyncStub", store), sender, opted_in)
    try:
        output = await ActivityEnvironment().run(activities.deliver_webhook, WebhookInput(EXTRACTION_ID))
    finally:
        await sender.close()
    return output.state


async def test_only_opted_in_tenants_get_clause_text(receiver: Receiver) -> None:
    store = FakeStore(event(url=receiver.url, tenant="acme"))
    assert await deliver(store, frozenset({"globex"})) == pb.WEBHOOK_STATE_DELIVERED
    assert store.clause_reads == [], "not opted in: the clauses are not even read"
    headers, body = receiver.requests[-1]
    assert set(standardwebhooks.Webhook(SECRET).verify(body, headers)["data"]) == BASE_FIELDS
    assert not any(clause.text.encode() in body for clause in CLAUSES)

    assert await deliver(store, frozenset({"acme"})) == pb.WEBHOOK_STATE_DELIVERED
    assert [(read.id, read.tenant) for read in store.clause_reads] == [(EXTRACTION_ID, "acme")]
    headers, body = receiver.requests[-1]
    data = standardwebhooks.Webhook(SECRET).verify(body, headers)["data"]
    assert [clause["text"] for clause in data["clauses"]] == [clause.text for clause in CLAUSES]


async def test_failed_events_of_opted_in_tenants_carry_no_clauses(receiver: Receiver) -> None:
    store = FakeStore(event(pb.STATE_FAILED, url=receiver.url, tenant="acme"))
    assert await deliver(store, frozenset({"acme"})) == pb.WEBHOOK_STATE_DELIVERED
    assert store.clause_reads == []
    assert set(json.loads(receiver.requests[-1][1])["data"]) == BASE_FIELDS


async def test_an_extraction_deleted_before_its_clauses_are_read_sends_nothing(receiver: Receiver) -> None:
    store = FakeStore(event(url=receiver.url, tenant="acme"), deleted_after_event=True)
    assert await deliver(store, frozenset({"acme"})) == pb.WEBHOOK_STATE_UNSPECIFIED
    assert len(store.clause_reads) == 1
    assert receiver.requests == [] and store.recorded == [], "nothing sent, no attempt recorded"
