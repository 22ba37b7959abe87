"""Clause extraction through any OpenAI-compatible chat-completions server (OpenAI, Azure OpenAI, vLLM,
Ollama, llama.cpp's llama-server), with structured output and grounded quotes.

Pipeline for one document:
1. plan (`planner`): the requests — whole text, chunks, or retrieved passages per category;
2. call (`client`): requests run concurrently under a semaphore; the reply must be JSON matching a
   versioned schema (`prompts`), repaired locally (code fences, trailing text, truncation) or re-asked
   with the validation error, a bounded number of times;
3. ground (`grounding`): every quote is located in the document; quotes that are not there are dropped
   and counted, never returned;
4. snap: a clause's quote grows to the whole segmentation unit(s) it falls in (CUAD labels, and lawyers,
   want the whole sentence; a quote cut short fails the scorer's Jaccard match however right it is);
   names, titles and dates stay as quoted;
5. merge: spans of one category that overlap (the same clause seen by two chunks) become one.

`strategy="verify"` (the llm service's default) replaces 1-3: the embedded model proposes candidate
units, the LLM judges them, and `verify` fuses the two (see its docstring).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Unpack

from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from clausework.chunking import KeywordSelector, PassageSelector
from clausework.clauses import ClauseSpan
from clausework.llm import prompts, verify
from clausework.llm.client import ChatClient, ChatOptions, OpenAIBackendError, gather_or_cancel
from clausework.llm.fusion import Fusion
from clausework.llm.grounding import (
    MIN_QUOTE_ALNUM,
    Grounder,
    clean_quote,
    merge_spans,
    normalize_answer,
    normalize_confidence,
)
from clausework.llm.planner import PlannedRequest, Planner, QuoteStrategy
from clausework.llm.prompts import PROMPT_VERSION, Category, ClauseItem, InvalidReply, parse_reply
from clausework.llm.verify import VERIFY_VERSION, Verdict, VerifyPlan, VerifyPlanner, VerifyRequest
from clausework.model.embedded import POOLS, EmbeddedExtractor
from clausework.model.segmentation import Unit, segment

log = logging.getLogger(__name__)

# The invalid reply echoed back when asking for a repair is cut to this many characters.
ECHO_CHARS = 4000

Strategy = Literal["auto", "retrieval", "chunks", "verify"]

__all__ = ["OpenAIBackendError", "OpenAIExtractor", "OpenAIResult", "PlannedRequest", "Strategy"]


@dataclass(frozen=True)
class OpenAIResult:
    spans: list[ClauseSpan]  # grounded; text[char_start:char_end] is the verbatim quote
    prompt_tokens: int
    completion_tokens: int
    dropped_quotes: int  # quotes not found in the text (or too short to be a clause)
    requests: int = 0  # HTTP requests that got a reply (repairs and 429 retries included)
    failed_requests: int = 0  # planned requests whose reply stayed invalid after repairs: no spans from them
    # verify only: the plan and the LLM's verdicts, for evaluation (re-decoding with another fusion)
    trace: tuple[VerifyPlan, dict[str, Verdict]] | None = None


@dataclass
class _Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0


@dataclass
class _Outcome:
    items: list[ClauseItem] = field(default_factory=list)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    usage: _Usage = field(default_factory=_Usage)
    failed: bool = False


async def _all_reporting(
    calls: list[Coroutine[Any, Any, _Outcome]], on_progress: Callable[[int, int], None] | None
) -> list[_Outcome]:
    """Every request's outcome (the first error cancels the rest), `on_progress(done, total)` as they end."""
    finished = 0

    async def tracked(call: Coroutine[Any, Any, _Outcome]) -> _Outcome:
        nonlocal finished
        outcome = await call
        finished += 1
        if on_progress is not None:
            on_progress(finished, len(calls))
        return outcome

    if on_progress is not None:
        on_progress(0, len(calls))
    return await gather_or_cancel([tracked(call) for call in calls])


def snap_to_units(units: list[Unit], start: int, end: int) -> tuple[int, int]:
    """The smallest run of whole units that covers `start:end` (unchanged where no unit overlaps)."""
    first = bisect.bisect_right([u.end for u in units], start)
    covering = [u for u in units[first:] if u.start < end]
    if not covering:
        return start, end
    return min(start, covering[0].start), max(end, covering[-1].end)


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
        verifier: EmbeddedExtractor | None = None,
        fusion: Fusion | None = None,
        verify_per_category: int = verify.PER_CATEGORY,
        verify_min_presence: float = verify.MIN_PRESENCE,
        logprobs: bool = True,
        auto_max_ratio: float = 0.5,
        selector: PassageSelector | None = None,
        top_k: int = 4,
        max_categories_per_request: int = 41,
        categories: Sequence[Category] | None = None,
        max_repairs: int = 2,
        **chat: Unpack[ChatOptions],
    ) -> None:
        """`chat`: the HTTP side's options (timeouts, reply format, 429 handling), see `ChatClient`.

        `verifier`: the embedded model whose candidates `strategy="verify"` has judged (required
        for it); `fusion`: its calibrator (default: the shipped weights).
        """
        if max_concurrency < 1:
            raise ValueError("max_concurrency >= 1")
        if strategy == "verify" and verifier is None:
            raise ValueError("strategy 'verify' needs the embedded model (verifier=)")
        self.model = model
        self.strategy: Strategy = strategy
        version = f"{VERIFY_VERSION}+{verifier.model_name}" if strategy == "verify" and verifier else PROMPT_VERSION
        self.model_name = f"openai/{model}@{version}"
        self.categories = tuple(categories) if categories is not None else tuple(prompts.load_categories())
        self._by_name = {c.name: c for c in self.categories}
        self._chat = ChatClient(base_url=base_url, api_key=api_key, model=model, **chat)
        self.planner = Planner(
            self.categories,
            selector or KeywordSelector({c.name: c.description for c in self.categories}),
            chunk_chars=chunk_chars,
            overlap_chars=overlap_chars,
            strategy="auto" if strategy == "verify" else strategy,
            auto_max_ratio=auto_max_ratio,
            top_k=top_k,
            max_categories_per_request=max_categories_per_request,
            schema_in_prompt=self._chat.structured_output != "json_schema",
        )
        self.verifier: VerifyPlanner | None = None
        if verifier is not None:
            self.verifier = VerifyPlanner(
                verifier,
                self.categories,
                per_category=verify_per_category,
                min_presence=verify_min_presence,
                max_categories_per_request=max_categories_per_request,
                schema_in_prompt=self._chat.structured_output != "json_schema",
            )
        self.fusion = fusion or Fusion.load()
        self._logprobs = logprobs
        self._slots = asyncio.Semaphore(max_concurrency)
        self._max_repairs = max_repairs

    @property
    def selector(self) -> PassageSelector:
        return self.planner.selector

    async def aclose(self) -> None:
        await self._chat.aclose()

    def plan(self, text: str, strategy: QuoteStrategy | None = None) -> list[PlannedRequest]:
        """The requests that a quoting strategy makes for `text` (also used to measure prompt sizes)."""
        return self.planner.plan(text, strategy)

    def messages(self, text: str, request: PlannedRequest) -> list[ChatCompletionMessageParam]:
        return self.planner.messages(text, request)

    async def extract(self, text: str, on_progress: Callable[[int, int], None] | None = None) -> OpenAIResult:
        """`on_progress(done, total)` is called as planned requests (chunks) finish."""
        if self.strategy == "verify":
            return await self._extract_verified(text, on_progress)
        plan = await asyncio.to_thread(self.plan, text)  # a learned selector is CPU work
        units = await asyncio.to_thread(segment, text)
        grounder = Grounder(text)
        outcomes = await _all_reporting([self._run(text, request) for request in plan], on_progress)
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
                start, end = located.start, located.end
                if category.name not in POOLS:
                    start, end = snap_to_units(units, start, end)
                spans.append(
                    ClauseSpan(
                        category.name,
                        start,
                        end,
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

    async def _extract_verified(self, text: str, on_progress: Callable[[int, int], None] | None) -> OpenAIResult:
        assert self.verifier is not None
        verifier = self.verifier
        plan = await asyncio.to_thread(verifier.plan, text)
        outcomes = await _all_reporting([self._verify(plan, r) for r in plan.requests], on_progress)
        verdicts = {name: v for o in outcomes for name, v in o.verdicts.items()}
        spans = await asyncio.to_thread(
            verify.decide, verifier.model, plan, verdicts, self.fusion, categories=self.categories
        )
        usage = _Usage(
            sum(o.usage.prompt_tokens for o in outcomes),
            sum(o.usage.completion_tokens for o in outcomes),
            sum(o.usage.requests for o in outcomes),
        )
        failed = sum(o.failed for o in outcomes)
        log.info(
            "openai verify",
            extra={
                "requests": usage.requests,
                "planned": len(plan.requests),
                "failed_requests": failed,
                "judged_categories": len(verdicts),
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            },
        )
        return OpenAIResult(
            spans=spans,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            dropped_quotes=0,
            requests=usage.requests,
            failed_requests=failed,
            trace=(plan, verdicts),
        )

    async def _verify(self, plan: VerifyPlan, request: VerifyRequest) -> _Outcome:
        assert self.verifier is not None
        names = [c.name for c in request.categories]

        def accept(content: str, completion: ChatCompletion, outcome: _Outcome) -> None:
            choice = completion.choices[0]
            outcome.verdicts, repaired = verify.parse_verdicts(content, request, choice.logprobs)
            if repaired:
                log.info("verdicts repaired locally")

        return await self._call(
            self.verifier.messages(plan, request),
            names,
            accept,
            schema_format=verify.response_format(request),
            logprobs=self._logprobs,
            repair=verify.REPAIR_PROMPT,
            length_hint="keep the answers short",
        )

    async def _run(self, text: str, request: PlannedRequest) -> _Outcome:
        """One planned quoting request."""
        names = [c.name for c in request.categories]

        def accept(content: str, completion: ChatCompletion, outcome: _Outcome) -> None:
            reply, repaired = parse_reply(content, names)
            if repaired:
                log.info("reply repaired locally")
            # A looping model repeats itself: one item per (category, quote).
            seen: set[tuple[str, str]] = set()
            for item in reply.clauses:
                key = (item.category, clean_quote(item.quote))
                if key not in seen:
                    seen.add(key)
                    outcome.items.append(item)

        messages = self.messages(text, request)
        return await self._call(
            messages, names, accept, repair=prompts.REPAIR_PROMPT, length_hint="return fewer quotes"
        )

    async def _call(
        self,
        messages: list[ChatCompletionMessageParam],
        names: list[str],
        accept: Callable[[str, ChatCompletion, _Outcome], None],
        *,
        repair: str,
        length_hint: str,
        **options: Any,
    ) -> _Outcome:
        """Call, validate with `accept`, and re-ask with the error (bounded) until the reply is valid."""
        outcome = _Outcome()
        async with self._slots:
            for attempt in range(self._max_repairs + 1):
                completion = await self._chat.complete(messages, names, **options)
                outcome.usage.requests += 1
                if completion.usage is not None:
                    outcome.usage.prompt_tokens += completion.usage.prompt_tokens
                    outcome.usage.completion_tokens += completion.usage.completion_tokens
                choice = completion.choices[0] if completion.choices else None
                content = (choice.message.content if choice else None) or ""
                try:
                    if choice is None:
                        raise InvalidReply("the reply had no choices")
                    accept(content, completion, outcome)
                except InvalidReply as error:
                    finish = choice.finish_reason if choice else None
                    log.warning("invalid reply", extra={"attempt": attempt, "error": str(error)[:300], "end": finish})
                    hint = str(error)
                    if finish == "length":
                        hint += f" (the reply hit the length limit: {length_hint})"
                    messages = [
                        *messages,
                        {"role": "assistant", "content": content[:ECHO_CHARS]},
                        {"role": "user", "content": repair.format(error=hint)},
                    ]
                    continue
                return outcome
        outcome.failed = True
        return outcome
