"""Configuration of the gateway process."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import MiB, ServerSettings


class GatewaySettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    port: int = 50051
    store_address: str = Field(default="127.0.0.1:50054", validation_alias="STORE_ADDRESS")
    temporal_address: str = Field(default="127.0.0.1:7233", validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", validation_alias="TEMPORAL_NAMESPACE")
    task_queue: str = Field(default="extractions", validation_alias="TEMPORAL_TASK_QUEUE")
    max_upload_bytes: int = Field(default=32 * MiB, validation_alias="MAX_UPLOAD_BYTES")
    # The request envelope around the largest upload must fit through gRPC.
    max_message_bytes: int = Field(default=32 * MiB + 64 * 1024, validation_alias="GATEWAY_MAX_MESSAGE_BYTES")
