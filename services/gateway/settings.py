"""Configuration of the gateway process."""

from __future__ import annotations

from pathlib import Path

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
    max_stream_upload_bytes: int = Field(default=512 * MiB, validation_alias="MAX_STREAM_UPLOAD_BYTES")
    # The request envelope around the largest unary upload must fit through gRPC.
    max_message_bytes: int = Field(default=32 * MiB + 64 * 1024, validation_alias="GATEWAY_MAX_MESSAGE_BYTES")
    # `tenant:sha256-of-key` pairs, comma separated (a Kubernetes Secret in production).
    api_keys: str = ""
    # Local/demo only: every caller is tenant "default". Logged loudly at start-up.
    auth_disabled: bool = False
    # TLS for the public port when both are set; internal services stay plaintext inside the cluster.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
