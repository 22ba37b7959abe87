"""The HTTP side of the OpenAI-compatible extractor: one chat completion, 429 handling, errors.

The OpenAI client's own retries are off — the Temporal activity above retries the whole document. The
one exception is HTTP 429: its Retry-After is honoured here, bounded, by a cooldown shared by all
requests of the extractor (so N concurrent requests pause together instead of each hammering the
server), with jitter and a bounded number of retries per request. Everything else raises
`OpenAIBackendError`, whose `retryable` tells the caller whether trying the document again can help.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Literal, TypedDict, TypeVar, cast

import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.chat.completion_create_params import ResponseFormat

from clausework.llm import prompts

log = logging.getLogger(__name__)

# Alternatives per token asked for with log-probabilities (enough to see both "true" and "false").
TOP_LOGPROBS = 5
StructuredOutput = Literal["json_schema", "json_object", "none"]
T = TypeVar("T")


class OpenAIBackendError(Exception):
    """The server could not answer. `retryable`: a later attempt at the same document may succeed."""

    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code


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


class Cooldown:
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


async def gather_or_cancel(awaitables: Sequence[Awaitable[T]]) -> list[T]:
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


class ChatOptions(TypedDict, total=False):
    """ChatClient's keyword options, for callers that pass them through (OpenAIExtractor)."""

    timeout_seconds: float
    max_output_tokens: int
    max_tokens_field: str
    temperature: float | None
    structured_output: StructuredOutput
    max_rate_limit_retries: int
    max_retry_after_seconds: float
    default_headers: Mapping[str, str] | None
    extra_body: Mapping[str, object] | None
    http_client: httpx2.AsyncClient | None
    client: openai.AsyncOpenAI | None


class ChatClient:
    """Chat completions against one endpoint, with the reply format the extractor asks for."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        timeout_seconds: float = 120,
        max_output_tokens: int = 2048,
        max_tokens_field: str = "max_tokens",
        temperature: float | None = 0.0,
        structured_output: StructuredOutput = "json_schema",
        max_rate_limit_retries: int = 3,
        max_retry_after_seconds: float = 30.0,
        default_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, object] | None = None,
        http_client: httpx2.AsyncClient | None = None,
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        self.model = model
        self.structured_output: StructuredOutput = structured_output
        self._client = client or openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",  # local servers need none; the client insists on one
            max_retries=0,
            timeout=timeout_seconds,
            default_headers=dict(default_headers or {}),
            http_client=http_client,
        )
        self._cooldown = Cooldown()
        self._max_output_tokens = max_output_tokens
        self._max_tokens_field = max_tokens_field
        self._temperature = temperature
        self._max_rate_limit_retries = max_rate_limit_retries
        self._max_retry_after = max_retry_after_seconds
        self._extra_body = dict(extra_body or {})

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(
        self,
        messages: list[ChatCompletionMessageParam],
        names: list[str],
        *,
        schema_format: Mapping[str, Any] | None = None,
        logprobs: bool = False,
    ) -> ChatCompletion:
        """One chat completion; 429 waits out Retry-After (shared cooldown, bounded); other errors raise.

        `schema_format`: the json_schema response format to use instead of the clause list's;
        `logprobs`: ask for the tokens' log-probabilities (and the top alternatives of each).
        """
        response_format: ResponseFormat | openai.Omit = openai.omit
        if self.structured_output == "json_schema":
            response_format = cast(ResponseFormat, dict(schema_format or prompts.response_format(names)))
        elif self.structured_output == "json_object":
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
                    logprobs=True if logprobs else openai.omit,
                    top_logprobs=TOP_LOGPROBS if logprobs else openai.omit,
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
