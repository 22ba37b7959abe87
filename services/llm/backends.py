"""The extraction backends behind one async interface: the embedded model, or an OpenAI-compatible LLM."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.llm.clauses import Span
from services.llm.settings import LlmSettings


class Result(Protocol):
    @property
    def spans(self) -> Sequence[Span]: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def dropped_quotes(self) -> int: ...


class Backend(Protocol):
    model_name: str

    async def extract(self, text: str) -> Result: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class EmbeddedResult:
    spans: Sequence[Span]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dropped_quotes: int = 0


class EmbeddedBackend:
    """The bundled CUAD model: CPU bound, so it runs in a worker thread off the event loop."""

    def __init__(self, settings: LlmSettings) -> None:
        from services.llm.embedded import EmbeddedExtractor

        self._extractor = EmbeddedExtractor.load(settings.model_dir)
        self.model_name = self._extractor.model_name

    async def extract(self, text: str) -> Result:
        return EmbeddedResult(spans=await asyncio.to_thread(self._extractor.extract, text))

    async def aclose(self) -> None:
        return None


def build_backend(settings: LlmSettings) -> Backend:
    if settings.backend == "embedded":
        return EmbeddedBackend(settings)
    raise ValueError(f"unknown LLM_BACKEND {settings.backend!r}")
