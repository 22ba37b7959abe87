"""Gateway process: `python -m services.gateway`. The public gRPC API."""

from __future__ import annotations

import asyncio
import logging

import grpc

from clausework.runtime.jsonlog import configure_logging
from clausework.runtime.rpc import channel, serve, service_name
from clausework.runtime.telemetry import configure_tracing
from contracts.internal.v1 import store_pb2_grpc
from contracts.v1 import extraction_pb2, extraction_pb2_grpc
from services.gateway.admission import AdmissionInterceptor, UploadSlots
from services.gateway.auth import ApiKeys
from services.gateway.server import ExtractionServicer
from services.gateway.settings import GatewaySettings

log = logging.getLogger("services.gateway")


def api_keys(settings: GatewaySettings) -> ApiKeys:
    if settings.auth_disabled:
        log.warning("AUTHENTICATION IS OFF (GATEWAY_AUTH_DISABLED=true): every caller is tenant 'default'")
        return ApiKeys(None)
    try:
        return ApiKeys.parse(settings.api_keys)
    except ValueError as error:
        raise SystemExit(
            f"GATEWAY_API_KEYS: {error}. Configure tenant:sha256 pairs, or set GATEWAY_AUTH_DISABLED=true "
            "for local use only."
        ) from None


async def main(settings: GatewaySettings) -> None:
    keys = api_keys(settings)
    tls = None
    if settings.tls_cert_file and settings.tls_key_file:
        tls = (settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())
    store_channel = channel(settings.store_address, settings.max_message_bytes)
    servicer = ExtractionServicer(
        store_pb2_grpc.StoreServiceStub(store_channel),
        keys,
        max_upload_bytes=settings.max_upload_bytes,
        max_stream_upload_bytes=settings.max_stream_upload_bytes,
        upload_idle_seconds=settings.upload_idle_seconds,
        webhook_policy=settings.webhook_policy(),
    )
    admission = AdmissionInterceptor(keys, UploadSlots(settings.max_uploads_per_tenant, settings.max_uploads))

    def register(server: grpc.aio.Server) -> None:
        extraction_pb2_grpc.add_ExtractionServiceServicer_to_server(servicer, server)

    await serve(
        settings,
        service_names=[service_name(extraction_pb2, "ExtractionService")],
        register=register,
        on_stop=lambda: store_channel.close(grace=None),
        tls=tls,
        interceptors=[admission],
        options=[
            ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
            # A fixed window per call (GatewaySettings.stream_window_bytes says why).
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", settings.stream_window_bytes),
        ],
    )


if __name__ == "__main__":
    settings = GatewaySettings()
    settings.lower_cpu_priority()
    configure_logging("gateway", settings.log_level)
    configure_tracing("gateway")
    asyncio.run(main(settings))
