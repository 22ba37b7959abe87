"""Settings base: every process reads its configuration from environment variables, with local defaults."""

from __future__ import annotations

import os

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
# The nice value of the pipeline's processes: a CFS weight of 110 against the default 1024 (10x less).
PIPELINE_CPU_NICE = 10


class ProcessSettings(BaseSettings):
    """What every process has: a log level. Subclasses add their own fields and an env_prefix."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")


class ServerSettings(ProcessSettings):
    """What every gRPC server has. `host`/`port` take the subclass's env_prefix, e.g. PARSER_PORT."""

    host: str = "127.0.0.1"
    port: int = 0
    # Prometheus metrics over HTTP on this port (the same host), e.g. PARSER_METRICS_PORT; 0 = off.
    metrics_port: int = 0
    # How long in-flight calls may run after SIGTERM; Kubernetes' terminationGracePeriodSeconds must exceed it.
    shutdown_grace_seconds: float = Field(default=20.0, validation_alias="SHUTDOWN_GRACE_SECONDS")
    max_message_bytes: int = Field(default=64 * MiB, validation_alias="GRPC_MAX_MESSAGE_BYTES")
    max_connection_age_seconds: float = Field(default=300.0, validation_alias="GRPC_MAX_CONNECTION_AGE_SECONDS")
    max_connection_age_grace_seconds: float = Field(
        default=3600.0, validation_alias="GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS"
    )
    # Added to the process's nice value at start-up (e.g. PARSER_CPU_NICE). The pipeline's processes
    # (parser, llm, worker) default to PIPELINE_CPU_NICE, so on shared cores a submit — gateway, store,
    # PostgreSQL — is not queued behind parsing and extraction (BENCHMARKS.md, Submit).
    cpu_nice: int = Field(default=0, ge=0, le=19)

    def lower_cpu_priority(self) -> None:
        """Apply cpu_nice. Linux keeps a nice value per thread and new threads inherit it, so call this
        first, before anything (tracing, gRPC, a forkserver) starts a thread or a process."""
        if self.cpu_nice:
            os.nice(self.cpu_nice)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class StoreClientSettings(ProcessSettings):
    """Mixed into the settings of every process that calls the store: one variable, one default."""

    store_address: str = Field(default="127.0.0.1:50054", validation_alias="STORE_ADDRESS")
