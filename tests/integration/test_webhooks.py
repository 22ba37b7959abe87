"""Completion webhooks on the real stack, to a real HTTP receiver on 127.0.0.1: signatures verified with
the `standardwebhooks` package, retries on 5xx, none on 404, a hanging receiver timed out, and URLs to
metadata or private addresses refused at submit — without any traffic to them (the gateway decides from
the URL alone; the test machine could not reach them anyway).

Tenants, behind a gateway replica with authentication on: the one the test stack's worker opts in to
clause text (WEBHOOK_CLAUSE_TEXT_TENANTS) gets the clauses GetExtraction shows, another gets none of
them, one with its own secret (WEBHOOK_TENANT_SIGNING_SECRETS) is signed with it, and an extraction
deleted while its delivery waits for a retry sends nothing."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import asyncpg
import grpc
import pytest
import standardwebhooks
from aiohttp import web
from temporalio.client import Client, WorkflowExecutionStatus

from clausework.pipeline.payloads import workflow_id
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import Stack
from services.gateway.auth import hash_key
from tests import pdfs

Gateway: TypeAlias = "extraction_pb2_grpc.ExtractionServiceAsyncStub"
Metadata: TypeAlias = tuple[tuple[str, str], ...]
# What every event's data holds; opted-in tenants' succeeded events add clauses and clauses_truncated.
BASE_FIELDS = {"id", "state", "error_code", "clause_count", "page_count"}
# A tenant neither opted in to clause text nor with a secret of its own.
PLAIN_TENANT = "hooks-plain"


@dataclass
class Receiver:
    """Answers POST /<name> with the statuses queued for it (then 200), or hangs."""

    url: str = ""
    statuses: dict[str, list[int]] = field(default_factory=dict)
    hanging: set[str] = field(default_factory=set)
    received: dict[str, list[tuple[dict[str, str], bytes]]] = field(default_factory=dict)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        headers = {key.lower(): value for key, value in request.headers.items()}
        self.received.setdefault(name, []).append((headers, await request.read()))
        if name in self.hanging:
            await self.released.wait()
        queued = self.statuses.get(name, [])
        return web.Response(status=queued.pop(0) if queued else 200)


async def listen(state: Receiver, port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve `state` on 127.0.0.1:`port` (0: any free port); returns the runner and the port."""
    app = web.Application()
    app.router.add_post("/{name}", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    runner, port = await listen(state)
    state.url = f"http://127.0.0.1:{port}"
    yield state
    state.released.set()
    await runner.cleanup()


@dataclass(frozen=True)
class Tenants:
    """The test stack's webhook tenants (deploy/local/stack.py TEST_ENV) and their API keys."""

    text: str  # opted in to clause text
    own_key: str  # signs with its own secret
    own_secret: str
    plain: str = PLAIN_TENANT

    def auth(self, tenant: str) -> Metadata:
        return (("authorization", f"Bearer {api_key(tenant)}"),)


def api_key(tenant: str) -> str:
    return f"key-{tenant}-" + "k" * 32


@pytest.fixture(scope="module")
def tenants(stack: Stack) -> Tenants:
    env = stack.env()
    own_key, _, own_secret = env["WEBHOOK_TENANT_SIGNING_SECRETS"].partition(":")
    found = Tenants(text=env["WEBHOOK_CLAUSE_TEXT_TENANTS"], own_key=own_key, own_secret=own_secret)
    assert len({found.text, found.own_key, found.plain}) == 3 and "," not in found.text
    return found


@pytest.fixture(scope="module")
async def api(stack: Stack, tenants: Tenants) -> AsyncIterator[Gateway]:
    """A gateway replica with authentication on, knowing the three tenants' API keys."""
    port = stack.profile.gateway + 25
    keys = ",".join(
        f"{tenant}:{hash_key(api_key(tenant))}" for tenant in (tenants.text, tenants.own_key, tenants.plain)
    )
    env = {"GATEWAY_PORT": str(port), "GATEWAY_AUTH_DISABLED": "false", "GATEWAY_API_KEYS": keys}
    stack.start_extra("gateway-hooks", "gateway", port, env)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield extraction_pb2_grpc.ExtractionServiceStub(channel)
    finally:
        stack.stop("gateway-hooks")


def unique_contract() -> bytes:
    return pdfs.text_pdf([*pdfs.CONTRACT_PAGES[:2], f"{pdfs.CONTRACT_PAGES[2]}\n\nRef {uuid.uuid4()}"])


async def submit(gateway: Gateway, url: str, metadata: Metadata = (), content: bytes | None = None) -> pb.Extraction:
    request = pb.CreateExtractionRequest(
        content=content or unique_contract(), filename="c.pdf", options=pb.ExtractionOptions(webhook_url=url)
    )
    return await gateway.CreateExtraction(request, metadata=metadata, timeout=30)


async def until(
    gateway: Gateway, ident: str, done: Callable[[pb.Extraction], bool], timeout: float = 90, metadata: Metadata = ()
) -> pb.Extraction:
    deadline = time.monotonic() + timeout
    while True:
        extraction = await gateway.GetExtraction(pb.GetExtractionRequest(id=ident), metadata=metadata, timeout=10)
        if done(extraction):
            return extraction
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout:.0f}s: {extraction.webhook}")
        await asyncio.sleep(0.2)


async def test_five_hundred_twice_then_ok_is_three_attempts_one_success(
    gateway: Gateway, receiver: Receiver, stack: Stack
) -> None:
    name = f"flaky-{uuid.uuid4()}"
    receiver.statuses[name] = [500, 500]
    created = await submit(gateway, f"{receiver.url}/{name}")
    assert created.webhook.state == pb.WEBHOOK_STATE_PENDING
    final = await until(gateway, created.id, lambda e: e.webhook.state == pb.WEBHOOK_STATE_DELIVERED)
    assert (final.webhook.attempts, final.webhook.last_status_code) == (3, 200)
    assert final.state == pb.STATE_SUCCEEDED
    attempts = receiver.received[name]
    assert len(attempts) == 3
    assert len({headers["webhook-id"] for headers, _ in attempts}) == 1, "a stable id for de-duplication"
    verifier = standardwebhooks.Webhook(stack.env()["WEBHOOK_SIGNING_SECRET"])
    for headers, body in attempts:
        event = verifier.verify(body, headers)
        assert event["type"] == "extraction.succeeded"
        assert event["data"]["id"] == created.id and event["data"]["state"] == "STATE_SUCCEEDED"
        assert event["data"]["clause_count"] == len(final.clauses)
    texts = [clause.text for clause in final.clauses]
    assert texts and not any(text in attempts[0][1].decode() for text in texts), "no clause text in events"
    assert json.loads(attempts[0][1])["data"].keys() == BASE_FIELDS


async def test_a_failed_extraction_sends_its_error_code(gateway: Gateway, receiver: Receiver, stack: Stack) -> None:
    name = f"failed-{uuid.uuid4()}"
    request = pb.CreateExtractionRequest(
        content=pdfs.encrypted_pdf(),
        filename="e.pdf",
        options=pb.ExtractionOptions(webhook_url=f"{receiver.url}/{name}"),
    )
    created = await gateway.CreateExtraction(request, timeout=30)
    await until(gateway, created.id, lambda e: e.webhook.state == pb.WEBHOOK_STATE_DELIVERED)
    headers, body = receiver.received[name][0]
    event = standardwebhooks.Webhook(stack.env()["WEBHOOK_SIGNING_SECRET"]).verify(body, headers)
    assert (event["type"], event["data"]["error_code"]) == ("extraction.failed", "ENCRYPTED_PDF")


async def test_not_found_is_not_retried(gateway: Gateway, receiver: Receiver) -> None:
    name = f"gone-{uuid.uuid4()}"
    receiver.statuses[name] = [404, 404, 404]
    created = await submit(gateway, f"{receiver.url}/{name}")
    final = await until(gateway, created.id, lambda e: e.webhook.state == pb.WEBHOOK_STATE_FAILED)
    assert (final.webhook.attempts, final.webhook.last_status_code) == (1, 404)
    await asyncio.sleep(4)  # retries would come after 1 s, 2 s
    assert len(receiver.received[name]) == 1


async def test_a_hanging_receiver_is_timed_out_and_retried(gateway: Gateway, receiver: Receiver) -> None:
    name = f"hang-{uuid.uuid4()}"
    receiver.hanging.add(name)
    created = await submit(gateway, f"{receiver.url}/{name}")
    started = time.monotonic()
    retrying = await until(gateway, created.id, lambda e: e.webhook.state == pb.WEBHOOK_STATE_RETRYING)
    assert retrying.webhook.last_status_code == 0 and "no answer within 2 s" in retrying.webhook.last_error
    second = await until(gateway, created.id, lambda e: e.webhook.attempts >= 2, timeout=30)
    assert second.webhook.state == pb.WEBHOOK_STATE_RETRYING
    assert time.monotonic() - started < 30
    # Deleting the extraction ends the retries: the next attempt finds nothing to send.
    await gateway.DeleteExtraction(pb.DeleteExtractionRequest(id=created.id), timeout=10)
    await asyncio.sleep(8)
    count = len(receiver.received[name])
    await asyncio.sleep(6)
    assert len(receiver.received[name]) == count


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254/hook",
        "https://10.0.0.1/hook",
        "http://10.0.0.1:8080/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "ftp://127.0.0.1/hook",
    ],
)
async def test_private_and_metadata_urls_are_refused_at_submit(gateway: Gateway, db: asyncpg.Pool, url: str) -> None:
    async with db.acquire() as connection:
        before = await connection.fetchval("SELECT count(*) FROM extractions")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await submit(gateway, url)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    upload = gateway.UploadExtraction(
        iter(
            [
                pb.UploadExtractionRequest(
                    metadata=pb.UploadMetadata(filename="c.pdf", options=pb.ExtractionOptions(webhook_url=url))
                ),
                pb.UploadExtractionRequest(chunk=unique_contract()),
            ]
        ),
        timeout=30,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await upload
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    async with db.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM extractions") == before, "nothing stored"


def verified(secret: str, attempt: tuple[dict[str, str], bytes]) -> dict[str, Any]:
    """The event of one received attempt, its signature checked with `secret`."""
    headers, body = attempt
    event: dict[str, Any] = standardwebhooks.Webhook(secret).verify(body, headers)
    return event


def delivered(extraction: pb.Extraction) -> bool:
    return extraction.webhook.state == pb.WEBHOOK_STATE_DELIVERED


def as_event(clause: pb.Clause) -> dict[str, Any]:
    """A clause of GetExtraction's answer as the event carries it (proto field names)."""
    return {field.name: getattr(clause, field.name) for field in pb.Clause.DESCRIPTOR.fields}


def assert_same_clauses(sent: list[dict[str, Any]], shown: list[pb.Clause]) -> None:
    assert len(sent) == len(shown)
    for event_clause, clause in zip(sent, shown, strict=True):
        expected = as_event(clause)
        assert event_clause.keys() == expected.keys()
        assert event_clause["confidence"] == pytest.approx(expected.pop("confidence"), abs=1e-6)
        assert {key: event_clause[key] for key in expected} == expected


async def test_only_the_opted_in_tenant_gets_clause_text(
    api: Gateway, receiver: Receiver, tenants: Tenants, stack: Stack
) -> None:
    """The same PDF for two tenants: the opted-in one's event carries the clauses GetExtraction shows,
    the other's not a word of them."""
    content = unique_contract()
    names = {tenant: f"{tenant}-{uuid.uuid4()}" for tenant in (tenants.text, tenants.plain)}
    made = {
        tenant: await submit(api, f"{receiver.url}/{name}", tenants.auth(tenant), content)
        for tenant, name in names.items()
    }
    final = {
        tenant: await until(api, extraction.id, delivered, metadata=tenants.auth(tenant))
        for tenant, extraction in made.items()
    }
    secret = stack.env()["WEBHOOK_SIGNING_SECRET"]
    events = {tenant: verified(secret, receiver.received[name][0]) for tenant, name in names.items()}

    shown = list(final[tenants.text].clauses)
    assert final[tenants.text].state == pb.STATE_SUCCEEDED and shown, "the contract must yield clauses"
    opted_in = events[tenants.text]["data"]
    assert opted_in.keys() == BASE_FIELDS | {"clauses", "clauses_truncated"}
    assert opted_in["clauses_truncated"] is False and opted_in["clause_count"] == len(shown)
    assert_same_clauses(opted_in["clauses"], shown)

    plain_texts = [clause.text for clause in final[tenants.plain].clauses]
    assert plain_texts, "the same document: the same clauses exist for the other tenant"
    plain = events[tenants.plain]["data"]
    assert plain.keys() == BASE_FIELDS and plain["clause_count"] == len(plain_texts)
    _, raw = receiver.received[names[tenants.plain]][0]
    assert not any(text in raw.decode() for text in plain_texts), "no clause text in the body"


async def test_a_tenant_with_its_own_secret_is_signed_with_it(
    api: Gateway, receiver: Receiver, tenants: Tenants, stack: Stack
) -> None:
    name = f"own-key-{uuid.uuid4()}"
    created = await submit(api, f"{receiver.url}/{name}", tenants.auth(tenants.own_key))
    await until(api, created.id, delivered, metadata=tenants.auth(tenants.own_key))
    headers, body = receiver.received[name][0]
    event = standardwebhooks.Webhook(tenants.own_secret).verify(body, headers)
    assert event["data"]["id"] == created.id
    assert event["data"].keys() == BASE_FIELDS, "its own secret, not clause text"
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(stack.env()["WEBHOOK_SIGNING_SECRET"]).verify(body, headers)


def free_port() -> int:
    """A port nothing listens on now (bound later by a receiver that starts late)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_extraction_deleted_before_delivery_sends_nothing(
    api: Gateway, tenants: Tenants, temporal: Client, stack: Stack
) -> None:
    """Two extractions of the opted-in tenant whose receivers are not up yet (connection refused, so the
    first attempts reach no one and are retried); one is deleted, then both receivers start. The kept one
    gets its event with clauses — retries do reach a receiver that starts late — and the deleted one's
    delivery ends without sending anything."""
    auth = tenants.auth(tenants.text)
    ports = {"kept": free_port(), "deleted": free_port()}
    made = {name: await submit(api, f"http://127.0.0.1:{port}/{name}", auth) for name, port in ports.items()}
    for extraction in made.values():
        waiting = await until(api, extraction.id, lambda e: e.webhook.attempts >= 1, metadata=auth)
        assert waiting.webhook.state == pb.WEBHOOK_STATE_RETRYING, waiting.webhook
    await api.DeleteExtraction(pb.DeleteExtractionRequest(id=made["deleted"].id), metadata=auth, timeout=10)
    late = Receiver()
    runners = [(await listen(late, port))[0] for port in ports.values()]
    try:
        await until(api, made["kept"].id, delivered, timeout=60, metadata=auth)
        assert verified(stack.env()["WEBHOOK_SIGNING_SECRET"], late.received["kept"][0])["data"]["clauses"]
        handle = temporal.get_workflow_handle(workflow_id(made["deleted"].id))
        deadline = time.monotonic() + 60
        while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            assert time.monotonic() < deadline, "the deleted extraction's delivery did not end"
            await asyncio.sleep(0.5)
        assert "deleted" not in late.received, "a deleted extraction's event was sent"
    finally:
        for runner in runners:
            await runner.cleanup()
