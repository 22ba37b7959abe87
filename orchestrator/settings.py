"""Configuration of the worker process."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from clausework.pipeline import DEFAULT_TASK_QUEUE
from clausework.runtime.settings import ServerSettings, StoreClientSettings


class WorkerSettings(StoreClientSettings, ServerSettings):
    """The worker serves only gRPC health (for probes) on its port; its work comes from Temporal."""

    model_config = SettingsConfigDict(env_prefix="WORKER_")

    port: int = 50055
    temporal_address: str = Field(default="127.0.0.1:7233", validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", validation_alias="TEMPORAL_NAMESPACE")
    task_queue: str = Field(default=DEFAULT_TASK_QUEUE, validation_alias="TEMPORAL_TASK_QUEUE")
    parser_address: str = Field(default="127.0.0.1:50052", validation_alias="PARSER_ADDRESS")
    llm_address: str = Field(default="127.0.0.1:50053", validation_alias="LLM_ADDRESS")
    # Activities mostly wait on gRPC calls, so many can run at once per worker.
    max_concurrent_activities: int = 64
    max_concurrent_workflow_tasks: int = 64
    # The Temporal SDK's own metrics (Prometheus format, served by its core) on this port; 0 = off.
    temporal_metrics_port: int = 0
