"""Which backend and which retrieval selector the llm service builds from its settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from clausework.chunking import KeywordSelector
from clausework.llm.fusion import FEATURES, Fusion
from clausework.llm.verify import VERIFY_VERSION
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


async def test_openai_backend_verifies_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """LLM_BACKEND=openai alone: verify, with the bundled model as proposer and the configured calibrator."""
    monkeypatch.setenv("LLM_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    weights = Fusion(tuple(0.5 for _ in FEATURES), "test")
    weights.dump(tmp_path / "fusion.json")
    monkeypatch.setenv("LLM_OPENAI_FUSION_FILE", str(tmp_path / "fusion.json"))
    backend = build_backend(LlmSettings())
    assert isinstance(backend, OpenAIBackend)
    extractor = backend._extractor
    assert extractor.strategy == "verify" and extractor.verifier is not None
    assert extractor.model_name.endswith(f"@{VERIFY_VERSION}+{extractor.verifier.model.model_name}")
    assert extractor.fusion == weights
    await backend.aclose()
