"""Store process: `python -m services.store`. Migrates the database, ensures the bucket, serves."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import grpc

from contracts.internal.v1 import store_pb2, store_pb2_grpc
from services.common.jsonlog import configure_logging
from services.common.rpc import serve, service_name
from services.common.telemetry import configure_tracing
from services.store.changes import ChangeFeed
from services.store.extractions import ExtractionStore
from services.store.migrations import migrate
from services.store.objects import ObjectStore
from services.store.server import StoreServicer
from services.store.settings import StoreSettings

log = logging.getLogger("services.store")


async def main(settings: StoreSettings) -> None:
    async with ObjectStore.from_settings(settings) as objects:
        await objects.ensure_bucket()
        pool = await asyncpg.create_pool(
            settings.database_url, min_size=1, max_size=settings.database_pool_size, command_timeout=60
        )
        assert pool is not None
        await migrate(pool)
        changes = ChangeFeed(settings.database_url)
        await changes.start()
        servicer = StoreServicer(ExtractionStore(pool, objects), objects, changes)

        async def stop() -> None:
            await changes.close()
            await pool.close()

        def register(server: grpc.aio.Server) -> None:
            store_pb2_grpc.add_StoreServiceServicer_to_server(servicer, server)

        await serve(
            settings,
            service_names=[service_name(store_pb2, "StoreService")],
            register=register,
            on_stop=stop,
        )


if __name__ == "__main__":
    settings = StoreSettings()
    configure_logging("store", settings.log_level)
    configure_tracing("store")
    asyncio.run(main(settings))
