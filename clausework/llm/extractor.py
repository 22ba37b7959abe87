"""Clause extraction through any OpenAI-compatible chat-completions server (OpenAI, Azure OpenAI, vLLM,
Ollama, llama.cpp's llama-server), with structured output and grounded quotes.

Pipeline for one document:
1. plan (`planner`): the requests — whole text, chunks, or retrieved passages per category;
2. call (`client`): requests run concurrently under a semaphore; the reply must be JSON matching a
   versioned schema (`prompts`), repaired locally (code fences, trailing text, truncation) or re-asked
   with the validation error, a bounded number of times;
3. ground (`grounding`): every quote is located in the document; quotes that are not there are dropped
   and counted, never returned;
4. merge: spans of one category that overlap (the same clause seen by two chunks) become one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Unpack

from openai.types.chat import ChatCompletionMessageParam

from clausework.chunking import KeywordSelector, PassageSelector
from clausework.clauses import ClauseSpan
from clausework.llm import prompts
from clausework.llm.client import ChatClient, ChatOptions, OpenAIBackendError, gather_or_cancel
from clausework.llm.grounding import (
    MIN_QUOTE_ALNUM,
    Grounder,
    clean_quote,
    merge_spans,
    normalize_answer,
    normalize_confidence,
)
from clausework.llm.planner import PlannedRequest, Planner, Strategy
from clausework.llm.prompts import PROMPT_VERSION, Category, ClauseItem, InvalidReply, parse_reply

log = logging.getLogger(__name__)

# The invalid reply echoed back when asking for a repair is cut to this many characters.
ECHO_CHARS = 4000

__all__ = ["OpenAIBackendError", "OpenAIExtractor", "OpenAIResult", "PlannedRequest", "Strategy"]


@dataclass(frozen=True)
class OpenAIResult:
    spans: list[ClauseSpan]  # grounded; text[char_start:char_end] is the verbatim quote
    prompt_tokens: int
    completion_tokens: int
    dropped_quotes: int  # quotes not found in the text (or too short to be a clause)
    requests: int = 0  # HTTP requests that got a reply (repairs and 429 retries included)
    failed_requests: int = 0  # planned requests whose reply stayed invalid after repairs: no spans from them


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


class OpenAIExtractor:
    """Extracts CUAD clauses with an OpenAI-compatible server; one instance per process, shared by documents."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        max_concurrency: int = 4,
        chunk_chars: int = 6000,
        overlap_chars: int = 600,
        strategy: Strategy = "auto",
        auto_max_ratio: float = 0.5,
        selector: PassageSelector | None = None,
        top_k: int = 4,
        max_categories_per_request: int = 41,
        categories: Sequence[Category] | None = None,
        max_repairs: int = 2,
        **chat: Unpack[ChatOptions],
    ) -> None:
        """`chat`: the HTTP side's options (timeouts, reply format, 429 handling), see `ChatClient`."""
        if max_concurrency < 1:
            raise ValueError("max_concurrency >= 1")
        self.model = model
        self.model_name = f"openai/{model}@{PROMPT_VERSION}"
        self.categories = tuple(categories) if categories is not None else tuple(prompts.load_categories())
        self._by_name = {c.name: c for c in self.categories}
        self._chat = ChatClient(base_url=base_url, api_key=api_key, model=model, **chat)
        self.planner = Planner(
            self.categories,
            selector or KeywordSelector({c.name: c.description for c in self.categories}),
            chunk_chars=chunk_chars,
            overlap_chars=overlap_chars,
            strategy=strategy,
            auto_max_ratio=auto_max_ratio,
            top_k=top_k,
            max_categories_per_request=max_categories_per_request,
            schema_in_prompt=self._chat.structured_output != "json_schema",
        )
        self._slots = asyncio.Semaphore(max_concurrency)
        self._max_repairs = max_repairs

    @property
    def selector(self) -> PassageSelector:
        return self.planner.selector

    async def aclose(self) -> None:
        await self._chat.aclose()

    def plan(self, text: str, strategy: Strategy | None = None) -> list[PlannedRequest]:
        """The requests that extract() makes for `text` (also used to measure prompt sizes)."""
        return self.planner.plan(text, strategy)

    def messages(self, text: str, request: PlannedRequest) -> list[ChatCompletionMessageParam]:
        return self.planner.messages(text, request)

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
        outcomes = await gather_or_cancel([tracked(request) for request in plan])
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
                completion = await self._chat.complete(messages, names)
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
