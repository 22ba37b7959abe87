"""LLM process: `python -m services.llm`. Loads the model once, then serves."""

from __future__ import annotations

import asyncio
import logging

import grpc

from clausework.runtime.jsonlog import configure_logging
from clausework.runtime.rpc import channel, serve, service_name
from clausework.runtime.telemetry import configure_tracing
from contracts.internal.v1 import llm_pb2, llm_pb2_grpc, store_pb2_grpc
from services.llm.backends import build_backend
from services.llm.server import LlmServicer
from services.llm.settings import LlmSettings

log = logging.getLogger("services.llm")


async def main(settings: LlmSettings) -> None:
    backend = build_backend(settings)
    log.info("model loaded", extra={"model": backend.model_name})
    store_channel = channel(settings.store_address, settings.max_message_bytes)
    servicer = LlmServicer(
        store_pb2_grpc.StoreServiceStub(store_channel),
        backend,
        settings.concurrency,
        settings.object_timeout_seconds,
    )

    async def stop() -> None:
        await store_channel.close(grace=None)
        await backend.aclose()

    def register(server: grpc.aio.Server) -> None:
        llm_pb2_grpc.add_LlmServiceServicer_to_server(servicer, server)

    await serve(
        settings,
        service_names=[service_name(llm_pb2, "LlmService")],
        register=register,
        on_stop=stop,
    )


if __name__ == "__main__":
    settings = LlmSettings()
    settings.lower_cpu_priority()
    configure_logging("llm", settings.log_level)
    configure_tracing("llm")
    asyncio.run(main(settings))
