"""Store process: `python -m services.store`. Migrates the database, ensures the bucket, serves, and
runs the outbox relay (workflow starts and cancels) and the janitor (leftover objects) beside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

import asyncpg
import grpc
from temporalio.client import Client

from clausework.runtime.jsonlog import configure_logging
from clausework.runtime.rpc import serve, service_name
from clausework.runtime.telemetry import configure_tracing, temporal_interceptors
from contracts.internal.v1 import store_pb2, store_pb2_grpc
from services.store.changes import ChangeFeed
from services.store.extractions import ExtractionStore
from services.store.janitor import Janitor
from services.store.lifecycle import Lifecycle
from services.store.migrations import migrate
from services.store.objects import ObjectStore
from services.store.pagetokens import PageTokens
from services.store.relay import OutboxRelay
from services.store.retention import Retention
from services.store.server import StoreServicer
from services.store.settings import StoreSettings

log = logging.getLogger("services.store")


async def main(settings: StoreSettings) -> None:
    async with ObjectStore.from_settings(settings) as objects:
        await objects.ensure_bucket()
        pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=1,
            max_size=settings.database_pool_size,
            command_timeout=60,
            reset=keep_session,
        )
        assert pool is not None
        await migrate(pool)
        changes = ChangeFeed(settings.database_url)
        await changes.start()
        retention = Retention.from_days(settings.retention_days, settings.retention_max_days)
        extractions = ExtractionStore(pool, objects, page_tokens(settings), retention)
        servicer = StoreServicer(extractions, objects, changes, Lifecycle(pool, objects, extractions))
        # Lazy: the store serves (and accepts submits) while Temporal is down; the relay retries.
        temporal = await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            interceptors=temporal_interceptors(),
            lazy=True,
        )
        relay = OutboxRelay(
            pool,
            changes,
            temporal,
            namespace=settings.temporal_namespace,
            task_queue=settings.task_queue,
            poll_seconds=settings.relay_poll_seconds,
            deletion_settle_seconds=settings.deletion_settle_seconds,
        )
        janitor = Janitor(
            pool,
            objects,
            extractions,
            interval_seconds=settings.sweep_interval_seconds,
            upload_grace_seconds=settings.upload_grace_seconds,
            settle_seconds=settings.sweep_settle_seconds,
        )
        background = [asyncio.create_task(relay.run()), asyncio.create_task(janitor.run())]

        async def stop() -> None:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
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


async def keep_session(connection: asyncpg.Connection) -> None:
    """No reset when a connection returns to the pool (asyncpg's default costs a round trip per query):
    pooled connections never change session state — no SET, LISTEN, cursors or held advisory locks (the
    ChangeFeed listens on a connection of its own; migrations unlock their lock before releasing)."""


def page_tokens(settings: StoreSettings) -> PageTokens:
    if settings.page_token_key is None:
        log.warning(
            "STORE_PAGE_TOKEN_KEY is not set: page tokens are signed with a random key of this process, so they"
            " do not survive a restart or work across replicas; set it (the same on every replica) outside local use"
        )
        return PageTokens(secrets.token_bytes(32))
    return PageTokens(settings.page_token_key.get_secret_value().encode())


if __name__ == "__main__":
    settings = StoreSettings()
    settings.lower_cpu_priority()
    configure_logging("store", settings.log_level)
    configure_tracing("store")
    asyncio.run(main(settings))
