"""Gateway process: `python -m services.gateway`. The public gRPC API."""

from __future__ import annotations

import asyncio
import logging

import grpc
from temporalio.client import Client
from temporalio.service import RPCError

from contracts.internal.v1 import store_pb2_grpc
from contracts.v1 import extraction_pb2, extraction_pb2_grpc
from orchestrator.search import CREATE_COMMAND, missing_search_attributes
from services.common.jsonlog import configure_logging
from services.common.rpc import channel, serve, service_name
from services.common.telemetry import configure_tracing, temporal_interceptors
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


async def use_search_attributes(temporal: Client, namespace: str) -> bool:
    """Whether to start workflows with the ExtractionId and TenantId search attributes, which Temporal
    rejects unless the namespace defines them. Missing ones are an operator's error, reported loudly, but
    not worth refusing uploads for: workflows then start without them."""
    try:
        missing = await missing_search_attributes(temporal, namespace)
    except RPCError as error:  # e.g. a namespace-scoped credential without operator rights: assume they exist
        log.warning("could not list Temporal search attributes", extra={"error": str(error)})
        return True
    if missing:
        log.error(
            "Temporal search attributes missing: workflows start without them, so they cannot be found by "
            "extraction or tenant; create them, then restart the gateway",
            extra={"missing": missing, "command": CREATE_COMMAND.format(namespace=namespace)},
        )
        return False
    return True


async def main(settings: GatewaySettings) -> None:
    keys = api_keys(settings)
    tls = None
    if settings.tls_cert_file and settings.tls_key_file:
        tls = (settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())
    temporal = await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, interceptors=temporal_interceptors()
    )
    store_channel = channel(settings.store_address, settings.max_message_bytes)
    servicer = ExtractionServicer(
        store_pb2_grpc.StoreServiceStub(store_channel),
        temporal,
        keys,
        task_queue=settings.task_queue,
        max_upload_bytes=settings.max_upload_bytes,
        max_stream_upload_bytes=settings.max_stream_upload_bytes,
        search_attributes=await use_search_attributes(temporal, settings.temporal_namespace),
    )

    def register(server: grpc.aio.Server) -> None:
        extraction_pb2_grpc.add_ExtractionServiceServicer_to_server(servicer, server)

    await serve(
        settings,
        service_names=[service_name(extraction_pb2, "ExtractionService")],
        register=register,
        on_stop=lambda: store_channel.close(grace=None),
        tls=tls,
    )


if __name__ == "__main__":
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    configure_tracing("gateway")
    asyncio.run(main(settings))
