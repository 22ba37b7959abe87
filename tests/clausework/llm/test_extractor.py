"""OpenAIExtractor against a fake OpenAI-compatible HTTP server (aiohttp, loopback) that injects faults:
429 with Retry-After, 500, 400, slow replies, malformed JSON, quotes the contract does not contain."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from clausework.llm.client import OpenAIBackendError, parse_retry_after
from clausework.llm.extractor import OpenAIExtractor
from clausework.llm.prompts import PROMPT_VERSION
from clausework.llm.verify import VERIFY_VERSION
from clausework.model.embedded import EmbeddedExtractor

NBSP = "\xa0"
GOVERNING = "This Agreement shall be governed by the laws of the State of New York."
AUDIT = "Licensee shall keep accurate books and records and Licensor may audit them once per year."
TEXT = (
    "SOFTWARE LICENSE AGREEMENT\n"
    + "This Software License Agreement is entered into on March 3, 2021 by Acme Corp. and Beta LLC.\n"
    + f"1. LICENSE. Acme hereby grants Beta a non-exclusive license to use the Software.\n{AUDIT}\n"
    + f"2. LAW. {GOVERNING}\n"
).replace(" ", NBSP)

Handler = Callable[[dict[str, Any], "FakeServer"], Awaitable[web.StreamResponse]]


def completion(
    content: str, prompt_tokens: int = 100, completion_tokens: int = 20, finish: str = "stop"
) -> web.Response:
    return web.json_response(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def clauses(*items: tuple[str, str, str, float]) -> str:
    return json.dumps({"clauses": [{"category": c, "quote": q, "answer": a, "confidence": p} for c, q, a, p in items]})


def error(status: int, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": f"fake {status}", "type": "fake", "code": str(status)}}
    return web.json_response(body, status=status, headers=headers or {})


def user_text(body: dict[str, Any]) -> str:
    return str(body["messages"][1]["content"])


@dataclass
class FakeServer:
    """Answers POST /v1/chat/completions: scripted handlers first (one per request), then `default`."""

    base_url: str = ""
    script: list[Handler] = field(default_factory=list)
    default: Handler | None = None
    bodies: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    cancelled: int = 0  # handlers cancelled because the client went away

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        self.arrivals.append(time.monotonic())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            handler = self.script.pop(0) if self.script else self.default
            assert handler is not None, "unexpected request"
            return await handler(body, self)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    fake.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    try:
        yield fake
    finally:
        await runner.cleanup()


def extractor(server: FakeServer, **overrides: Any) -> OpenAIExtractor:
    options: dict[str, Any] = {"base_url": server.base_url, "api_key": "sk-test", "model": "fake-model"}
    options.update(overrides)
    return OpenAIExtractor(**options)


def reply(content: str, **usage: Any) -> Handler:
    async def handler(body: dict[str, Any], fake: FakeServer) -> web.StreamResponse:
        return completion(content, **usage)

    return handler


def fail(status: int, headers: dict[str, str] | None = None, delay: float = 0.0) -> Handler:
    async def handler(body: dict[str, Any], fake: FakeServer) -> web.StreamResponse:
        await asyncio.sleep(delay)
        return error(status, headers)

    return handler


GOOD = clauses(
    ("Governing Law", GOVERNING, "New York", 0.9),
    ("Audit Rights", "licensor may audit them once per year", "whatever", 0.7),
    ("Agreement Date", "March 3, 2021", "2021-03-03", 0.8),
)


async def test_extracts_grounded_spans_with_usage_and_versioned_model(server: FakeServer) -> None:
    server.script = [reply(GOOD, prompt_tokens=1234, completion_tokens=56)]
    llm = extractor(server)
    try:
        result = await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert llm.model_name == f"openai/fake-model@{PROMPT_VERSION}"
    assert (result.prompt_tokens, result.completion_tokens, result.dropped_quotes) == (1234, 56, 0)
    assert result.requests == 1 and result.failed_requests == 0
    by_category = {s.category: s for s in result.spans}
    assert set(by_category) == {"Governing Law", "Audit Rights", "Agreement Date"}
    law = by_category["Governing Law"]
    assert TEXT[law.char_start : law.char_end] == GOVERNING.replace(" ", NBSP)
    assert (law.answer, law.confidence) == ("New York", 0.9)
    audit = by_category["Audit Rights"]
    # a clause's quote is snapped to the whole sentence it is part of (a date's is not)
    assert TEXT[audit.char_start : audit.char_end].replace(NBSP, " ") == AUDIT
    assert audit.answer == "Yes"  # Yes/No categories answer "Yes" whatever the model wrote
    assert by_category["Agreement Date"].answer == "3/3/2021"

    body = server.bodies[0]
    assert body["model"] == "fake-model"
    assert body["temperature"] == 0
    assert body["max_tokens"] == 2048
    schema = body["response_format"]
    assert schema["type"] == "json_schema" and schema["json_schema"]["strict"] is True
    item = schema["json_schema"]["schema"]["properties"]["clauses"]["items"]
    assert len(item["properties"]["category"]["enum"]) == 41
    assert NBSP not in user_text(body), "the model reads plain spaces"


async def test_quote_not_in_text_is_dropped_and_counted(server: FakeServer) -> None:
    server.script = [
        reply(
            clauses(
                ("Governing Law", "This Agreement shall be governed by the laws of Delaware.", "Delaware", 0.9),
                ("Insurance", "Beta shall maintain insurance.", "Yes", 0.8),
                ("Parties", "Acme Corp.", "Acme Corp.", 1.7),
                ("Document Name", "a", "", 0.5),  # in the text, but no clause: too short
            )
        )
    ]
    llm = extractor(server)
    try:
        result = await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert result.dropped_quotes == 3
    assert [(s.category, s.confidence) for s in result.spans] == [("Parties", 1.0)]
    assert all("Delaware" not in TEXT[s.char_start : s.char_end] for s in result.spans)


async def test_429_honours_retry_after_then_succeeds(server: FakeServer) -> None:
    server.script = [fail(429, {"Retry-After": "1"}), reply(GOOD)]
    llm = extractor(server)
    try:
        result = await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert len(server.bodies) == 2
    assert server.arrivals[1] - server.arrivals[0] >= 1.0
    assert len(result.spans) == 3 and result.requests == 1  # the 429 got no completion: no tokens


async def test_429_cooldown_is_shared_by_concurrent_requests(server: FakeServer) -> None:
    """A request that starts while another waits out Retry-After waits too, instead of hitting 429 again."""
    limited_at: list[float] = []

    async def first(body: dict[str, Any], fake: FakeServer) -> web.StreamResponse:
        limited_at.append(time.monotonic())
        return error(429, {"Retry-After": "1.2"})

    async def slow_ok(body: dict[str, Any], fake: FakeServer) -> web.StreamResponse:
        await asyncio.sleep(0.3)
        return completion(clauses())

    server.script = [first, slow_ok]
    server.default = reply(clauses())
    llm = extractor(server, strategy="chunks", chunk_chars=1000, overlap_chars=0, max_concurrency=2)
    text = ("Filler sentence about nothing in particular. " * 100).replace(" ", NBSP)
    try:
        assert len(llm.plan(text)) >= 4
        result = await llm.extract(text)
    finally:
        await llm.aclose()
    later = [t for t in server.arrivals if t > limited_at[0] + 0.05]
    assert later and min(later) >= limited_at[0] + 1.2, "no request reached the server during the cooldown"
    assert result.failed_requests == 0 and len(server.bodies) == len(llm.plan(text)) + 1


async def test_429_with_excessive_retry_after_fails_fast_and_retryable(server: FakeServer) -> None:
    server.script = [fail(429, {"Retry-After": "3600"})]
    llm = extractor(server, max_retry_after_seconds=5)
    started = time.monotonic()
    try:
        with pytest.raises(OpenAIBackendError) as raised:
            await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert raised.value.retryable and raised.value.status_code == 429
    assert time.monotonic() - started < 2 and len(server.bodies) == 1


async def test_429_retries_are_bounded(server: FakeServer) -> None:
    server.default = fail(429, {"retry-after-ms": "50"})
    llm = extractor(server, max_rate_limit_retries=2)
    try:
        with pytest.raises(OpenAIBackendError) as raised:
            await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert raised.value.retryable and len(server.bodies) == 3


async def test_500_is_not_retried_by_the_client(server: FakeServer) -> None:
    server.default = fail(500)
    llm = extractor(server)
    try:
        with pytest.raises(OpenAIBackendError) as raised:
            await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert raised.value.retryable and raised.value.status_code == 500
    assert len(server.bodies) == 1, "the Temporal activity retries, not the HTTP client"


async def test_400_is_not_retryable(server: FakeServer) -> None:
    server.default = fail(400)
    llm = extractor(server)
    try:
        with pytest.raises(OpenAIBackendError) as raised:
            await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert not raised.value.retryable and raised.value.status_code == 400


async def test_timeout_raises_retryable_without_retrying(server: FakeServer) -> None:
    async def stall(body: dict[str, Any], fake: FakeServer) -> web.StreamResponse:
        await asyncio.sleep(3)
        return completion(GOOD)

    server.default = stall
    llm = extractor(server, timeout_seconds=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(OpenAIBackendError, match="timed out") as raised:
            await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert raised.value.retryable
    assert time.monotonic() - started < 2.5 and len(server.bodies) == 1


async def test_one_failed_request_cancels_the_others(server: FakeServer) -> None:
    async def slow(body: dict[str, Any], fake: FakeServer) -> web.StreamResponse:
        await asyncio.sleep(5)
        return completion(clauses())

    server.script = [fail(500, delay=0.2)]
    server.default = slow
    llm = extractor(server, strategy="chunks", chunk_chars=1000, overlap_chars=0, max_concurrency=3)
    text = ("Filler sentence about nothing in particular. " * 100).replace(" ", NBSP)
    started = time.monotonic()
    try:
        with pytest.raises(OpenAIBackendError):
            await llm.extract(text)
    finally:
        await llm.aclose()
    assert time.monotonic() - started < 3
    assert len(server.bodies) == 3, "no new request after the failure"
    await asyncio.sleep(0.2)
    assert server.cancelled == 2, "the two slow requests were abandoned, not left running"


async def test_malformed_json_is_reasked_with_the_error_then_accepted(server: FakeServer) -> None:
    server.script = [
        reply("Sure! Here are the clauses: governing law is New York.", prompt_tokens=100, completion_tokens=10),
        reply(GOOD, prompt_tokens=150, completion_tokens=30),
    ]
    llm = extractor(server)
    try:
        result = await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert len(result.spans) == 3 and result.failed_requests == 0
    assert (result.prompt_tokens, result.completion_tokens, result.requests) == (250, 40, 2)
    retry = server.bodies[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "Sure! Here are the clauses: governing law is New York."}
    assert retry[-1]["role"] == "user" and "rejected" in retry[-1]["content"]


async def test_schema_violation_is_reasked_with_the_validation_error(server: FakeServer) -> None:
    server.script = [
        reply(json.dumps({"clauses": [{"category": "Governing Lawz", "quote": GOVERNING}]})),
        reply(GOOD),
    ]
    llm = extractor(server)
    try:
        result = await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert len(result.spans) == 3
    assert "unknown category 'Governing Lawz'" in server.bodies[1]["messages"][-1]["content"]


@pytest.mark.parametrize(
    "content",
    [
        f"```json\n{GOOD}\n```",
        f"{GOOD}\nI hope this helps!",
        f"Here you go: {GOOD}",
        GOOD[: GOOD.rindex("{") - 2],  # cut off by the token limit after two complete clauses
    ],
    ids=["fenced", "trailing-text", "leading-text", "truncated"],
)
async def test_repairable_replies_are_repaired_without_another_request(server: FakeServer, content: str) -> None:
    server.script = [reply(content)]
    llm = extractor(server)
    try:
        result = await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert len(server.bodies) == 1
    assert {"Governing Law", "Audit Rights"} <= {s.category for s in result.spans}


async def test_reply_that_stays_invalid_is_counted_not_fatal(server: FakeServer) -> None:
    server.default = reply("no json here", prompt_tokens=10, completion_tokens=1)
    llm = extractor(server, max_repairs=2)
    try:
        result = await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert result.spans == [] and result.failed_requests == 1
    assert result.requests == 3 and result.prompt_tokens == 30


async def test_chunks_merge_a_clause_seen_twice(server: FakeServer) -> None:
    """The overlap puts the governing-law clause in two chunks; both quote it; one span comes out."""
    filler = "The parties shall cooperate in good faith in all matters relating to the services. "
    sections = [f"{n}. SECTION {n}. {filler * 6}" for n in range(1, 9)]
    sections.insert(4, f"5A. LAW. {GOVERNING} ")
    text = "\n".join(sections).replace(" ", NBSP)

    async def quote_if_present(body: dict[str, Any], fake: FakeServer) -> web.StreamResponse:
        prompt = user_text(body)
        found = [("Governing Law", GOVERNING, "New York", 0.8)] if GOVERNING in prompt else []
        if "Governing Law" in prompt and re.search(r"5A\. LAW\. This Agreement shall be governed by the la", prompt):
            # Only part of the clause made it into this chunk: quote what the chunk shows.
            tail = prompt[prompt.index("5A. LAW. ") + 9 :]
            found = found or [("Governing Law", tail[:40], "New York", 0.6)]
        return completion(clauses(*found), prompt_tokens=10, completion_tokens=5)

    server.default = quote_if_present
    llm = extractor(server, strategy="chunks", chunk_chars=1200, overlap_chars=400, max_concurrency=2)
    reported: list[tuple[int, int]] = []
    try:
        plan = llm.plan(text)
        result = await llm.extract(text, lambda done, total: reported.append((done, total)))
    finally:
        await llm.aclose()
    assert reported == [(done, len(plan)) for done in range(len(plan) + 1)], "progress: chunks done of total"
    start = text.index(GOVERNING.replace(" ", NBSP))
    holding = [r for r in plan if r.pieces[0].start <= start and start + 20 <= r.pieces[0].end]
    assert len(holding) >= 2, "the test needs the clause in the overlap of two chunks"
    assert result.requests == len(plan) and result.prompt_tokens == 10 * len(plan)
    assert server.max_in_flight <= 2
    law = [s for s in result.spans if s.category == "Governing Law"]
    assert len(law) == 1
    assert text[law[0].char_start : law[0].char_end] == GOVERNING.replace(" ", NBSP)
    assert law[0].confidence == 0.8


async def test_concurrency_is_bounded(server: FakeServer) -> None:
    async def slow(body: dict[str, Any], fake: FakeServer) -> web.StreamResponse:
        await asyncio.sleep(0.2)
        return completion(clauses())

    server.default = slow
    llm = extractor(server, strategy="chunks", chunk_chars=1000, overlap_chars=0, max_concurrency=2)
    text = ("Filler sentence about nothing in particular. " * 100).replace(" ", NBSP)
    try:
        await llm.extract(text)
    finally:
        await llm.aclose()
    assert len(server.bodies) >= 4 and server.max_in_flight == 2


def test_retry_after_parsing() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    http_date = parse_retry_after({"retry-after": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())})
    assert http_date is not None and http_date < 2


# -- verify: the same HTTP side, the verdict schema ------------------------------------------------------


def verdicts_accepting_all(body: dict[str, Any]) -> str:
    """A reply to a verify request: true for every proposed unit, read off the schema it was sent."""
    schema = body["response_format"]["json_schema"]["schema"]
    out: dict[str, dict[str, object]] = {}
    for name, entry in schema["properties"].items():
        out[name] = {
            k: True if v == {"type": "boolean"} else [] if k == "more" else "" for k, v in entry["properties"].items()
        }
    return json.dumps(out)


def answer_verdicts(**usage: Any) -> Handler:
    async def handler(body: dict[str, Any], fake: FakeServer) -> web.StreamResponse:
        return completion(verdicts_accepting_all(body), **usage)

    return handler


def verifier(server: FakeServer, **overrides: Any) -> OpenAIExtractor:
    return extractor(server, strategy="verify", verifier=EmbeddedExtractor.load(), **overrides)


async def test_verify_sends_the_verdict_schema_and_returns_whole_units(server: FakeServer) -> None:
    server.default = answer_verdicts(prompt_tokens=900, completion_tokens=70)
    llm = verifier(server)
    try:
        result = await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert llm.model_name.startswith(f"openai/fake-model@{VERIFY_VERSION}+embedded/")
    assert (result.prompt_tokens, result.completion_tokens, result.requests, result.failed_requests) == (900, 70, 1, 0)
    body = server.bodies[0]
    assert body["logprobs"] is True and body["top_logprobs"] >= 2
    assert body["response_format"]["json_schema"]["name"] == "cuad_verdicts"
    assert result.trace is not None
    plan, verdicts = result.trace
    assert verdicts and all(all(v.yes.values()) for v in verdicts.values())
    starts, ends = {u.start for u in plan.units}, {u.end for u in plan.units}
    assert {s.category for s in result.spans} >= {"Governing Law", "Audit Rights"}
    for span in result.spans:
        if span.category in verdicts:
            assert span.char_start in starts and span.char_end in ends


async def backend_error(llm: OpenAIExtractor) -> OpenAIBackendError:
    """The error extract() raises (the test fails if it returns), the extractor closed either way."""
    try:
        await llm.extract(TEXT)
    except OpenAIBackendError as error:
        return error
    finally:
        await llm.aclose()
    raise AssertionError("extract() returned")


@pytest.mark.parametrize("status", [500, 400])
async def test_verify_server_errors_raise_without_client_retries(server: FakeServer, status: int) -> None:
    server.default = fail(status)
    error = await backend_error(verifier(server))
    assert error.retryable is (status == 500) and error.status_code == status and len(server.bodies) == 1


async def test_verify_429_then_answers(server: FakeServer) -> None:
    server.script = [fail(429, {"retry-after": "0.2"})]
    server.default = answer_verdicts()
    llm = verifier(server)
    try:
        result = await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert len(server.bodies) == 2 and result.failed_requests == 0 and result.trace and result.trace[1]


async def test_verify_timeout_is_retryable(server: FakeServer) -> None:
    async def stall(body: dict[str, Any], fake: FakeServer) -> web.StreamResponse:
        await asyncio.sleep(3)
        return completion(verdicts_accepting_all(body))

    server.default = stall
    error = await backend_error(verifier(server, timeout_seconds=0.5))
    assert error.retryable and "timed out" in str(error)


async def test_verify_malformed_reply_is_reasked_then_the_embedded_result_stands(server: FakeServer) -> None:
    """Malformed JSON is re-asked with the verdict format's repair prompt; a reply that stays invalid
    leaves the document to the embedded model (no failure, no invented verdicts)."""
    server.default = reply("I think U3 is governing law.")
    llm = verifier(server, max_repairs=1)
    try:
        result = await llm.extract(TEXT)
    finally:
        await llm.aclose()
    assert result.requests == 2 and result.failed_requests == 1
    assert "true or false for each proposed unit" in server.bodies[1]["messages"][-1]["content"]
    assert result.trace is not None and result.trace[1] == {}
    assert result.spans == EmbeddedExtractor.load().extract(TEXT)
