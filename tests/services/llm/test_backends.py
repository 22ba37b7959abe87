"""Which backend and which retrieval selector the llm service builds from its settings."""

from __future__ import annotations

import pytest

from clausework.chunking import KeywordSelector
from clausework.model.embedded import EmbeddedSelector
from services.llm.backends import EmbeddedBackend, OpenAIBackend, build_backend
from services.llm.settings import LlmSettings


def test_embedded_is_the_default_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_BACKEND", raising=False)
    assert isinstance(build_backend(LlmSettings()), EmbeddedBackend)


@pytest.mark.parametrize(("selector", "kind"), [("embedded", EmbeddedSelector), ("keyword", KeywordSelector)])
async def test_openai_backend_retrieves_with_the_configured_selector(
    monkeypatch: pytest.MonkeyPatch, selector: str, kind: type
) -> None:
    monkeypatch.setenv("LLM_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("LLM_OPENAI_SELECTOR", selector)
    monkeypatch.setenv("LLM_OPENAI_MIN_PRESENCE", "0.25")
    backend = build_backend(LlmSettings())
    assert isinstance(backend, OpenAIBackend)
    chosen = backend._extractor.selector
    assert isinstance(chosen, kind)
    if isinstance(chosen, EmbeddedSelector):
        assert chosen.min_presence == 0.25
    await backend.aclose()


def test_min_presence_is_a_probability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_OPENAI_MIN_PRESENCE", "1.5")
    with pytest.raises(ValueError, match="min_presence"):
        LlmSettings()
