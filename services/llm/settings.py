"""Configuration of the llm process."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServerSettings


class LlmSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="LLM_")

    port: int = 50053
    store_address: str = Field(default="127.0.0.1:50054", validation_alias="STORE_ADDRESS")
    # `embedded`: the bundled CUAD-trained model, no network or key needed.
    backend: Literal["embedded"] = "embedded"
    # Directory of the embedded model's artefact; empty means the one committed in the package.
    model_dir: Path | None = None
    # Documents extracted at once (CPU bound).
    concurrency: int = 2
    object_timeout_seconds: float = 120.0
