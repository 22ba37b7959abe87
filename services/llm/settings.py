"""Configuration of the llm process."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from clausework.runtime.settings import PIPELINE_CPU_NICE, ServerSettings, StoreClientSettings


class LlmSettings(StoreClientSettings, ServerSettings):
    model_config = SettingsConfigDict(env_prefix="LLM_")

    port: int = 50053
    cpu_nice: int = Field(default=PIPELINE_CPU_NICE, ge=0, le=19)  # below submits (ServerSettings)
    # `embedded`: the bundled CUAD-trained model, no network or key needed. `openai`: any
    # OpenAI-compatible chat completions endpoint (OpenAI, Azure OpenAI, vLLM, Ollama, llama-server).
    backend: Literal["embedded", "openai"] = "embedded"
    # Directory of the embedded model's artefact; empty means the one committed in the package.
    model_dir: Path | None = None
    # Documents extracted at once per replica.
    concurrency: int = 2
    openai_base_url: str = Field(default="https://api.openai.com/v1", validation_alias="OPENAI_BASE_URL")
    openai_api_key: SecretStr = Field(default=SecretStr(""), validation_alias="OPENAI_API_KEY")
    openai_model: str = Field(default="gpt-4o-mini", validation_alias="LLM_MODEL")
    openai_timeout_seconds: float = 120.0
    # Requests in flight per replica, shared by all documents (with the 429 back-off).
    openai_max_concurrency: int = 4
    openai_chunk_chars: int = 6000
    # `verify`: the embedded model proposes candidate units, the LLM judges them, a calibrator fuses the
    # two (docs/llm-backends.md); `auto`, `retrieval`, `chunks`: the LLM quotes clauses itself.
    openai_strategy: Literal["verify", "auto", "retrieval", "chunks"] = "verify"
    # verify: ask for token log-probabilities (the calibrator's P(yes)); off for servers that refuse them.
    openai_logprobs: bool = True
    # verify: the calibrator's weights; empty means the shipped ones (fitted on Qwen2.5-Coder-0.5B).
    openai_fusion_file: Path | None = None
    # Who picks the passages `retrieval` sends: the embedded model (the artefact at model_dir) or BM25.
    openai_selector: Literal["embedded", "keyword"] = "embedded"
    # With the embedded selector: skip categories the model gives less than this presence probability
    # (0.05: 0.40x the whole contract's prompt tokens, 85% of labelled clauses sent; docs/llm-backends.md).
    openai_min_presence: float = Field(default=0.05, ge=0.0, le=1.0)
    openai_max_output_tokens: int = 2048
    object_timeout_seconds: float = 120.0
