"""Configuration of the parser process."""

from __future__ import annotations

import os

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from clausework.runtime.settings import PIPELINE_CPU_NICE, ServerSettings, StoreClientSettings


class ParserSettings(StoreClientSettings, ServerSettings):
    model_config = SettingsConfigDict(env_prefix="PARSER_")

    port: int = 50052
    cpu_nice: int = Field(default=PIPELINE_CPU_NICE, ge=0, le=19)  # below submits (ServerSettings)
    # Documents parsed at once; each holds its PDF and text in memory, so this bounds memory too.
    concurrency: int = max(1, os.cpu_count() or 1)
    object_timeout_seconds: float = 120.0
    # Recognize scanned pages with Tesseract (Debian tesseract-ocr); off: scans fail with NO_TEXT_LAYER.
    ocr_enabled: bool = False
    ocr_language: str = "eng"
    ocr_max_pages: int = 300
    # Each document is parsed in a child process (services.parser.sandbox) that may use this much memory
    # beyond the document's own size, for at most this long; past either it fails DOCUMENT_TOO_COMPLEX.
    parse_memory_mib: int = 1024
    parse_timeout_seconds: float = 480.0
