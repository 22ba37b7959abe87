"""Clause extraction through any OpenAI-compatible chat-completions server (OpenAI, Azure OpenAI, vLLM,
Ollama, llama.cpp's llama-server), with structured output and grounded quotes.

Pipeline for one document:
1. plan: a short text goes whole in one request; a long one is either cut into overlapping chunks on
   section boundaries (every category asked of every chunk), or — `retrieval` — split into passages
   that a pluggable selector scores per category (in the service: the embedded model), so each request
   carries only a few categories and their best passages (far fewer prompt tokens; see
   `tokens_report`); `auto`, the default, takes retrieval when it at least halves the prompt;
2. call: requests run concurrently under a semaphore; the reply must be JSON matching a versioned
   schema (`prompts`), repaired locally (code fences, trailing text, truncation) or re-asked with the
   validation error, a bounded number of times;
3. ground: every quote is located in the document (`grounding`); quotes that are not there are dropped
   and counted, never returned;
4. merge: spans of one category that overlap (the same clause seen by two chunks) become one.

Failure policy: the OpenAI client's own retries are off — the Temporal activity above retries the whole
document. The one exception is HTTP 429: its Retry-After is honoured here, bounded, by a cooldown
shared by all requests of the extractor (so N concurrent requests pause together instead of each
hammering the server), with jitter and a bounded number of retries per request. Everything else raises
`OpenAIBackendError`, whose `retryable` tells the caller whether trying the document again can help.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.chat.completion_create_params import ResponseFormat

from clausework.chunking import KeywordSelector, PassageSelector, Piece, chunk_text, passages, select
from clausework.llm import prompts
from clausework.llm.grounding import Grounder, clean_quote
from clausework.llm.prompts import PROMPT_VERSION, Category, ClauseItem, InvalidReply, parse_reply

log = logging.getLogger(__name__)

# Confidence used when the model reports none (or a non-number): the prior that a returned clause is right.
PRIOR_CONFIDENCE = 0.5
# Categories found in the opening of a contract: their first passages are always sent.
FRONT_MATTER = frozenset({"Document Name", "Parties", "Agreement Date", "Effective Date"})
FRONT_PASSAGES = 2
# A grounded quote needs this many letters/digits to be a clause rather than a stray word.
MIN_QUOTE_ALNUM = 3
# The invalid reply echoed back when asking for a repair is cut to this many characters.
ECHO_CHARS = 4000

Strategy = Literal["auto", "retrieval", "chunks"]
StructuredOutput = Literal["json_schema", "json_object", "none"]
T = TypeVar("T")


@dataclass(frozen=True)
class ClauseSpan:
    category: str  # exact CUAD name
    char_start: int  # offsets into the text passed to extract(), end exclusive
    char_end: int
    confidence: float  # [0, 1]
    answer: str  # normalized answer or ""


@dataclass(frozen=True)
class OpenAIResult:
    spans: list[ClauseSpan]  # grounded; text[char_start:char_end] is the verbatim quote
    prompt_tokens: int
    completion_tokens: int
    dropped_quotes: int  # quotes not found in the text (or too short to be a clause)
    requests: int = 0  # HTTP requests that got a reply (repairs and 429 retries included)
    failed_requests: int = 0  # planned requests whose reply stayed invalid after repairs: no spans from them


class OpenAIBackendError(Exception):
    """The server could not answer. `retryable`: a later attempt at the same document may succeed."""

    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code


@dataclass(frozen=True)
class PlannedRequest:
    """One chat completion to make: these categories, asked of these pieces of the text."""

    categories: tuple[Category, ...]
    pieces: tuple[Piece, ...]


@dataclass
class _Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0


@dataclass
class _Outcome:
    items: list[ClauseItem] = field(default_factory=list)
    usage: _Usage = field(default_factory=_Usage)
    failed: bool = False


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date); None if absent/invalid."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(value) if divisor == 1.0 else None
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


class _Cooldown:
    """A pause shared by all requests of one extractor, set by the server's Retry-After.

    Without it, each of N concurrent requests that hit 429 would sleep and retry on its own schedule,
    and requests that had not hit it yet would keep arriving: a storm the server just asked us to stop.
    """

    def __init__(self) -> None:
        self._until = 0.0

    def extend(self, seconds: float) -> None:
        self._until = max(self._until, time.monotonic() + seconds)

    async def wait(self) -> None:
        # A loop, not an Event: another request may extend the pause while this one sleeps.
        while (remaining := self._until - time.monotonic()) > 0:  # noqa: ASYNC110
            # Spread the resumption over a little jitter so the waiters do not all fire at the same instant.
            await asyncio.sleep(remaining + random.uniform(0.0, min(1.0, 0.1 * remaining)))


_DATE_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_DATE_US = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def normalize_answer(category: Category, answer: str) -> str:
    """CUAD answer conventions: "Yes" for Yes/No categories, m/d/yyyy dates without leading zeros."""
    if not category.typed:
        return "Yes"
    answer = " ".join(answer.split())
    if "mm/dd/yyyy" in category.answer_format:
        iso = _DATE_ISO.fullmatch(answer)
        if iso:
            return f"{int(iso.group(2))}/{int(iso.group(3))}/{iso.group(1)}"
        us = _DATE_US.fullmatch(answer)
        if us:
            return f"{int(us.group(1))}/{int(us.group(2))}/{us.group(3)}"
    return answer


def normalize_confidence(value: float | None) -> float:
    """The model's confidence clamped to [0, 1]; missing or non-finite values get the prior."""
    if value is None or not math.isfinite(value):
        return PRIOR_CONFIDENCE
    return min(1.0, max(0.0, value))


def merge_spans(spans: Sequence[ClauseSpan]) -> list[ClauseSpan]:
    """One span per clause: spans of a category that overlap (two chunks saw it) become their union.

    The union is still verbatim text; the confidence is the highest, the answer that of the most
    confident span that has one.
    """
    merged: list[ClauseSpan] = []
    by_category: dict[str, list[ClauseSpan]] = {}
    for span in spans:
        by_category.setdefault(span.category, []).append(span)
    for category, group in by_category.items():
        group.sort(key=lambda s: (s.char_start, s.char_end))
        current = group[0]
        answers = [(current.confidence, current.answer)]
        for span in group[1:]:
            if span.char_start < current.char_end:
                answers.append((span.confidence, span.answer))
                current = ClauseSpan(
                    category,
                    current.char_start,
                    max(current.char_end, span.char_end),
                    max(current.confidence, span.confidence),
                    "",
                )
                continue
            merged.append(_with_best_answer(current, answers))
            current, answers = span, [(span.confidence, span.answer)]
        merged.append(_with_best_answer(current, answers))
    return sorted(merged, key=lambda s: (s.char_start, s.char_end, s.category))


def _with_best_answer(span: ClauseSpan, answers: list[tuple[float, str]]) -> ClauseSpan:
    given = [a for a in answers if a[1]]
    answer = max(given, key=lambda a: a[0])[1] if given else ""
    return ClauseSpan(span.category, span.char_start, span.char_end, span.confidence, answer)


async def _gather_or_cancel(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """All results, or the first error after cancelling the rest (no request is left running).

    The siblings are cancelled by the failing task itself, in the same step that releases its
    concurrency slot, so a request waiting for that slot never gets to send.
    """
    tasks: list[asyncio.Future[T]] = []

    async def guarded(awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except BaseException:
            for task in tasks:
                if task is not asyncio.current_task():
                    task.cancel()
            raise

    tasks.extend(asyncio.ensure_future(guarded(a)) for a in awaitables)
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def display_text(text: str) -> str:
    """What the model reads: the parser's non-breaking spaces as plain spaces (fewer tokens, same words)."""
    return text.replace("\xa0", " ")


class OpenAIExtractor:
    """Extracts CUAD clauses with an OpenAI-compatible server; one instance per process, shared by documents."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        timeout_seconds: float = 120,
        max_concurrency: int = 4,
        chunk_chars: int = 6000,
        overlap_chars: int = 600,
        strategy: Strategy = "auto",
        auto_max_ratio: float = 0.5,
        selector: PassageSelector | None = None,
        top_k: int = 4,
        max_categories_per_request: int = 41,
        categories: Sequence[Category] | None = None,
        max_output_tokens: int = 2048,
        max_tokens_field: str = "max_tokens",
        temperature: float | None = 0.0,
        structured_output: StructuredOutput = "json_schema",
        max_repairs: int = 2,
        max_rate_limit_retries: int = 3,
        max_retry_after_seconds: float = 30.0,
        default_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, object] | None = None,
        http_client: httpx2.AsyncClient | None = None,
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        if max_concurrency < 1 or chunk_chars < 500 or top_k < 1 or max_categories_per_request < 1:
            raise ValueError("max_concurrency, top_k, max_categories_per_request >= 1 and chunk_chars >= 500")
        self.model = model
        self.model_name = f"openai/{model}@{PROMPT_VERSION}"
        self.categories = tuple(categories) if categories is not None else tuple(prompts.load_categories())
        self._by_name = {c.name: c for c in self.categories}
        self._client = client or openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",  # local servers need none; the client insists on one
            max_retries=0,
            timeout=timeout_seconds,
            default_headers=dict(default_headers or {}),
            http_client=http_client,
        )
        self._slots = asyncio.Semaphore(max_concurrency)
        self._cooldown = _Cooldown()
        self.chunk_chars = chunk_chars
        self.overlap_chars = overlap_chars
        self.strategy: Strategy = strategy
        self.auto_max_ratio = auto_max_ratio
        self.selector: PassageSelector = selector or KeywordSelector({c.name: c.description for c in self.categories})
        self.top_k = top_k
        self.max_categories_per_request = max_categories_per_request
        self._max_output_tokens = max_output_tokens
        self._max_tokens_field = max_tokens_field
        self._temperature = temperature
        self._structured_output: StructuredOutput = structured_output
        self._max_repairs = max_repairs
        self._max_rate_limit_retries = max_rate_limit_retries
        self._max_retry_after = max_retry_after_seconds
        self._extra_body = dict(extra_body or {})

    async def aclose(self) -> None:
        await self._client.close()

    # -- planning -------------------------------------------------------------------------------

    def plan(self, text: str, strategy: Strategy | None = None) -> list[PlannedRequest]:
        """The requests that extract() makes for `text` (also used to measure prompt sizes).

        `auto` plans both ways (milliseconds, no LLM call) and takes retrieval only when it cuts the
        prompt by enough to be worth its lower recall: on long contracts, not on short ones.
        """
        strategy = strategy or self.strategy
        if not text.strip():
            return []
        chunks = [
            PlannedRequest(self.categories, (chunk,))
            for chunk in chunk_text(text, self.chunk_chars, self.overlap_chars)
        ]
        if strategy == "chunks" or len(chunks) == 1:
            return chunks
        retrieval = self._plan_retrieval(text)
        if strategy == "retrieval":
            return retrieval
        if self.prompt_chars(text, retrieval) <= self.auto_max_ratio * self.prompt_chars(text, chunks):
            return retrieval
        return chunks

    def prompt_chars(self, text: str, plan: Sequence[PlannedRequest]) -> int:
        return sum(len(str(m.get("content") or "")) for r in plan for m in self.messages(text, r))

    def _plan_retrieval(self, text: str) -> list[PlannedRequest]:
        pieces = passages(text)
        if not pieces:
            return []
        names = [c.name for c in self.categories]
        scores = self.selector(text, pieces, names)
        wanted: list[tuple[Category, list[int]]] = []
        for category, row in zip(self.categories, scores, strict=True):
            forced: list[int] = list(range(FRONT_PASSAGES)) if category.name in FRONT_MATTER else []
            if category.name == "Parties":
                forced.append(len(pieces) - 1)  # the signature block
            chosen = select(row, self.top_k, forced)
            wanted.extend((category, group) for group in self._split(chosen, pieces))
        # Pack categories into requests, each joining the request it shares the most passages with.
        batches: list[tuple[list[Category], set[int]]] = []
        for category, chosen in sorted(wanted, key=lambda w: (w[1][0], w[0].name)):
            best: tuple[int, int] | None = None
            for index, (members, used) in enumerate(batches):
                union = used | set(chosen)
                full = len(members) >= self.max_categories_per_request or category in members
                if full or self._chars(union, pieces) > self.chunk_chars:
                    continue
                added = self._chars(union, pieces) - self._chars(used, pieces)
                if best is None or added < best[0]:
                    best = (added, index)
            if best is None:
                batches.append(([category], set(chosen)))
            else:
                batches[best[1]][0].append(category)
                batches[best[1]][1].update(chosen)
        return [PlannedRequest(tuple(members), tuple(pieces[i] for i in sorted(used))) for members, used in batches]

    def _split(self, chosen: list[int], pieces: list[Piece]) -> list[list[int]]:
        """A category's passages in groups (in document order) that each fit one request."""
        groups: list[list[int]] = []
        for index in chosen:
            if groups and self._chars({*groups[-1], index}, pieces) <= self.chunk_chars:
                groups[-1].append(index)
            else:
                groups.append([index])
        return groups

    @staticmethod
    def _chars(indices: set[int], pieces: list[Piece]) -> int:
        return sum(pieces[i].end - pieces[i].start for i in indices)

    def messages(self, text: str, request: PlannedRequest) -> list[ChatCompletionMessageParam]:
        system = prompts.SYSTEM_PROMPT
        if self._structured_output != "json_schema":
            schema = prompts.json_schema([c.name for c in request.categories])
            system += "\nJSON schema of the reply:\n" + json.dumps(schema)
        return [
            {"role": "system", "content": system},
            {
                "role": "user",
                "content": prompts.user_prompt(
                    request.categories, [display_text(text[p.start : p.end]) for p in request.pieces]
                ),
            },
        ]

    # -- extraction -----------------------------------------------------------------------------

    async def extract(self, text: str, on_progress: Callable[[int, int], None] | None = None) -> OpenAIResult:
        """`on_progress(done, total)` is called as planned requests (chunks) finish."""
        plan = await asyncio.to_thread(self.plan, text)  # a learned selector is CPU work
        grounder = Grounder(text)
        finished = 0

        async def tracked(request: PlannedRequest) -> _Outcome:
            nonlocal finished
            outcome = await self._run(text, request)
            finished += 1
            if on_progress is not None:
                on_progress(finished, len(plan))
            return outcome

        if on_progress is not None:
            on_progress(0, len(plan))
        outcomes = await _gather_or_cancel([tracked(request) for request in plan])
        spans: list[ClauseSpan] = []
        dropped = 0
        usage = _Usage()
        for request, outcome in zip(plan, outcomes, strict=True):
            usage.prompt_tokens += outcome.usage.prompt_tokens
            usage.completion_tokens += outcome.usage.completion_tokens
            usage.requests += outcome.usage.requests
            within = [(p.start, p.end) for p in request.pieces]
            for item in outcome.items:
                located = grounder.locate(item.quote, within)
                if located is None or sum(ch.isalnum() for ch in text[located.start : located.end]) < MIN_QUOTE_ALNUM:
                    dropped += 1
                    log.debug("quote dropped", extra={"category": item.category})
                    continue
                category = self._by_name[item.category]
                spans.append(
                    ClauseSpan(
                        category.name,
                        located.start,
                        located.end,
                        normalize_confidence(item.confidence),
                        normalize_answer(category, item.answer),
                    )
                )
        failed = sum(o.failed for o in outcomes)
        log.info(
            "openai extraction",
            extra={
                "requests": usage.requests,
                "planned": len(plan),
                "failed_requests": failed,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "dropped_quotes": dropped,
            },
        )
        return OpenAIResult(
            spans=merge_spans(spans),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            dropped_quotes=dropped,
            requests=usage.requests,
            failed_requests=failed,
        )

    async def _run(self, text: str, request: PlannedRequest) -> _Outcome:
        """One planned request: call, validate, and re-ask with the error (bounded) until the reply is valid."""
        names = [c.name for c in request.categories]
        messages = self.messages(text, request)
        outcome = _Outcome()
        async with self._slots:
            for attempt in range(self._max_repairs + 1):
                completion = await self._complete(messages, names)
                outcome.usage.requests += 1
                if completion.usage is not None:
                    outcome.usage.prompt_tokens += completion.usage.prompt_tokens
                    outcome.usage.completion_tokens += completion.usage.completion_tokens
                choice = completion.choices[0] if completion.choices else None
                content = (choice.message.content if choice else None) or ""
                try:
                    reply, repaired = parse_reply(content, names)
                except InvalidReply as error:
                    finish = choice.finish_reason if choice else None
                    log.warning("invalid reply", extra={"attempt": attempt, "error": str(error)[:300], "end": finish})
                    hint = str(error)
                    if choice is not None and choice.finish_reason == "length":
                        hint += " (the reply hit the length limit: return fewer, shorter quotes)"
                    messages = [
                        *messages,
                        {"role": "assistant", "content": content[:ECHO_CHARS]},
                        {"role": "user", "content": prompts.REPAIR_PROMPT.format(error=hint)},
                    ]
                    continue
                if repaired:
                    log.info("reply repaired locally", extra={"attempt": attempt})
                # A looping model repeats itself: one item per (category, quote).
                seen: set[tuple[str, str]] = set()
                for item in reply.clauses:
                    key = (item.category, clean_quote(item.quote))
                    if key not in seen:
                        seen.add(key)
                        outcome.items.append(item)
                return outcome
        outcome.failed = True
        return outcome

    async def _complete(self, messages: list[ChatCompletionMessageParam], names: list[str]) -> ChatCompletion:
        """One chat completion; 429 waits out Retry-After (shared cooldown, bounded); other errors raise."""
        response_format: ResponseFormat | openai.Omit = openai.omit
        if self._structured_output == "json_schema":
            response_format = cast(ResponseFormat, prompts.response_format(names))
        elif self._structured_output == "json_object":
            response_format = {"type": "json_object"}
        body: dict[str, Any] = {self._max_tokens_field: self._max_output_tokens, **self._extra_body}
        rate_limited = 0
        while True:
            await self._cooldown.wait()
            try:
                return await self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    response_format=response_format,
                    temperature=self._temperature if self._temperature is not None else openai.omit,
                    extra_body=body,
                )
            except openai.RateLimitError as error:
                delay = parse_retry_after(error.response.headers)
                too_long = delay is not None and delay > self._max_retry_after
                if rate_limited >= self._max_rate_limit_retries or too_long:
                    raise OpenAIBackendError(
                        f"rate limited {rate_limited + 1} times (retry-after {delay}s)", retryable=True, status_code=429
                    ) from error
                if delay is None:  # no hint: exponential backoff, bounded
                    delay = min(self._max_retry_after, 2.0**rate_limited)
                rate_limited += 1
                log.warning("rate limited", extra={"retry_after": delay, "attempt": rate_limited})
                self._cooldown.extend(delay)
            except openai.APITimeoutError as error:
                raise OpenAIBackendError("LLM request timed out", retryable=True) from error
            except openai.APIConnectionError as error:
                raise OpenAIBackendError(f"cannot reach the LLM server: {error}", retryable=True) from error
            except openai.APIStatusError as error:
                status = error.status_code
                retryable = status >= 500 or status in (408, 409)
                raise OpenAIBackendError(
                    f"LLM server answered {status}: {error.message}", retryable=retryable, status_code=status
                ) from error
