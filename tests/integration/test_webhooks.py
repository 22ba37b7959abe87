"""Completion webhooks on the real stack, to a real HTTP receiver on 127.0.0.1: signatures verified with
the `standardwebhooks` package, retries on 5xx, none on 404, a hanging receiver timed out, and URLs to
metadata or private addresses refused at submit — without any traffic to them (the gateway decides from
the URL alone; the test machine could not reach them anyway)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeAlias

import asyncpg
import grpc
import pytest
import standardwebhooks
from aiohttp import web

from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import Stack
from tests import pdfs

Gateway: TypeAlias = "extraction_pb2_grpc.ExtractionServiceAsyncStub"


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


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/{name}", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield state
    state.released.set()
    await runner.cleanup()


def unique_contract() -> bytes:
    return pdfs.text_pdf([*pdfs.CONTRACT_PAGES[:2], f"{pdfs.CONTRACT_PAGES[2]}\n\nRef {uuid.uuid4()}"])


async def submit(gateway: Gateway, url: str) -> pb.Extraction:
    request = pb.CreateExtractionRequest(
        content=unique_contract(), filename="c.pdf", options=pb.ExtractionOptions(webhook_url=url)
    )
    return await gateway.CreateExtraction(request, timeout=30)


async def until(
    gateway: Gateway, ident: str, done: Callable[[pb.Extraction], bool], timeout: float = 90
) -> pb.Extraction:
    deadline = time.monotonic() + timeout
    while True:
        extraction = await gateway.GetExtraction(pb.GetExtractionRequest(id=ident), timeout=10)
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
    assert json.loads(attempts[0][1])["data"].keys() == {"id", "state", "error_code", "clause_count", "page_count"}


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
