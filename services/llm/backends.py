"""The extraction backends behind one async interface: the embedded model, or an OpenAI-compatible LLM."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from clausework.clauses import ClauseSpan
from clausework.runtime.errors import FailedPrecondition, Unavailable
from services.llm.settings import LlmSettings


class Result(Protocol):
    @property
    def spans(self) -> Sequence[ClauseSpan]: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def dropped_quotes(self) -> int: ...


# Called with (chunks done, chunks total) as a backend works through a document.
Progress = Callable[[int, int], None]


class Backend(Protocol):
    model_name: str

    async def extract(self, text: str, on_progress: Progress | None = None) -> Result: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class EmbeddedResult:
    spans: Sequence[ClauseSpan]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dropped_quotes: int = 0


class EmbeddedBackend:
    """The bundled CUAD model: CPU bound, so it runs in a worker thread off the event loop."""

    def __init__(self, settings: LlmSettings) -> None:
        from clausework.model.embedded import EmbeddedExtractor

        self._extractor = EmbeddedExtractor.load(settings.model_dir)
        self.model_name = self._extractor.model_name

    async def extract(self, text: str, on_progress: Progress | None = None) -> Result:
        """The whole document in one pass: one chunk."""
        if on_progress is not None:
            on_progress(0, 1)
        spans = await asyncio.to_thread(self._extractor.extract, text)
        if on_progress is not None:
            on_progress(1, 1)
        return EmbeddedResult(spans=spans)

    async def aclose(self) -> None:
        return None


class OpenAIBackend:
    """An OpenAI-compatible server. One extractor per process, so its concurrency limit and 429 back-off
    hold for all documents; its errors become statuses the orchestrator retries or not."""

    def __init__(self, settings: LlmSettings) -> None:
        from clausework.chunking import PassageSelector
        from clausework.llm.extractor import OpenAIExtractor
        from clausework.llm.fusion import Fusion
        from clausework.model.embedded import EmbeddedExtractor, EmbeddedSelector

        verify = settings.openai_strategy == "verify"
        embedded = (
            EmbeddedExtractor.load(settings.model_dir) if verify or settings.openai_selector == "embedded" else None
        )
        selector: PassageSelector | None = None  # None: the extractor's keyword selector
        if settings.openai_selector == "embedded" and embedded is not None:
            selector = EmbeddedSelector(embedded, settings.openai_min_presence)
        self._extractor = OpenAIExtractor(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value() or "none",
            model=settings.openai_model,
            timeout_seconds=settings.openai_timeout_seconds,
            max_concurrency=settings.openai_max_concurrency,
            chunk_chars=settings.openai_chunk_chars,
            strategy=settings.openai_strategy,
            selector=selector,
            verifier=embedded if verify else None,
            fusion=Fusion.load(settings.openai_fusion_file),
            logprobs=settings.openai_logprobs,
            max_output_tokens=settings.openai_max_output_tokens,
        )
        self.model_name = self._extractor.model_name

    async def extract(self, text: str, on_progress: Progress | None = None) -> Result:
        from clausework.llm.extractor import OpenAIBackendError

        try:
            return await self._extractor.extract(text, on_progress)
        except OpenAIBackendError as error:
            if error.retryable:
                raise Unavailable(f"LLM endpoint unavailable: {error}", reason="LLM_UNAVAILABLE") from error
            raise FailedPrecondition(f"LLM endpoint refused the request: {error}", reason="LLM_REJECTED") from error

    async def aclose(self) -> None:
        await self._extractor.aclose()


def build_backend(settings: LlmSettings) -> Backend:
    if settings.backend == "openai":
        return OpenAIBackend(settings)
    return EmbeddedBackend(settings)
