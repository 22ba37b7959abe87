"""Gateway process: `python -m services.gateway`. The public gRPC API."""

from __future__ import annotations

import asyncio

import grpc
from temporalio.client import Client

from contracts.internal.v1 import store_pb2_grpc
from contracts.v1 import extraction_pb2, extraction_pb2_grpc
from services.common.jsonlog import configure_logging
from services.common.rpc import channel, serve, service_name
from services.gateway.server import ExtractionServicer
from services.gateway.settings import GatewaySettings


async def main(settings: GatewaySettings) -> None:
    temporal = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    store_channel = channel(settings.store_address, settings.max_message_bytes)
    servicer = ExtractionServicer(
        store_pb2_grpc.StoreServiceStub(store_channel), temporal, settings.task_queue, settings.max_upload_bytes
    )

    def register(server: grpc.aio.Server) -> None:
        extraction_pb2_grpc.add_ExtractionServiceServicer_to_server(servicer, server)

    await serve(
        settings,
        service_names=[service_name(extraction_pb2, "ExtractionService")],
        register=register,
        on_stop=lambda: store_channel.close(grace=None),
    )


if __name__ == "__main__":
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    asyncio.run(main(settings))
