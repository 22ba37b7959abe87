"""Configuration of the gateway process."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from clausework.runtime.settings import MiB, ServerSettings, StoreClientSettings
from clausework.runtime.webhook_targets import WebhookTargetSettings


class GatewaySettings(WebhookTargetSettings, StoreClientSettings, ServerSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    port: int = 50051
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
    # Uploads (CreateExtraction + UploadExtraction streams) in flight per tenant; more are refused at once
    # with RESOURCE_EXHAUSTED (reason TOO_MANY_UPLOADS) before their body is read.
    max_uploads_per_tenant: int = Field(default=32, ge=1)
    # Of those, uploads this process receives at once; the others wait (bodies unread) up to 10 s for a
    # slot, then get the same refusal. An admitted 32 MiB unary upload costs the gateway ~110-130 MiB
    # while it is forwarded (measured, docs/bad-inputs.md), so 6 stay inside the pod's 1 GiB limit.
    max_uploads: int = Field(default=6, ge=1)
    # HTTP/2 streams (calls) one client connection may have open at once; more wait in the client.
    max_concurrent_streams: int = Field(default=100, ge=1)
    # HTTP/2 flow-control window of each call: the bytes a client may send before the gateway reads
    # them. Fixed (gRPC's BDP probing off), because a refused upload's stream holds up to its window in
    # the gateway: with probing on, 24 refused 32 MiB uploads raised its peak RSS by 20-192 MiB from run
    # to run; at 4 MiB by 1-14 MiB (docs/bad-inputs.md, Memory). It also caps one upload at window /
    # round-trip time: 80 MiB/s at 50 ms.
    stream_window_bytes: int = Field(default=4 * MiB, ge=64 * 1024)
    # An UploadExtraction stream that sends no message for this long is DEADLINE_EXCEEDED (reason
    # UPLOAD_IDLE) and nothing is stored.
    upload_idle_seconds: float = Field(default=30.0, gt=0)
