"""Migrations on a real PostgreSQL: applied once, in order, idempotent, safe under concurrent start-ups."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from deploy.local.stack import Stack
from services.store.migrations import available, migrate

pytestmark = pytest.mark.integration


@pytest.fixture
async def fresh_database(stack: Stack) -> AsyncIterator[str]:
    name = f"migrations_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(stack.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = stack.database_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_applied_once_in_order_even_concurrently(fresh_database: str) -> None:
    pools = [await asyncpg.create_pool(fresh_database, min_size=1, max_size=2) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(pool) for pool in pools))
        versions = [v for v, _, _ in available()]
        assert sorted(v for applied in results for v in applied) == versions, "each migration ran exactly once"
        assert await migrate(pools[0]) == []
        async with pools[0].acquire() as connection:
            recorded = [
                r["version"] for r in await connection.fetch("SELECT version FROM schema_migrations ORDER BY 1")
            ]
            tables = {
                r["tablename"]
                for r in await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            }
        assert recorded == versions
        assert {"documents", "extractions", "clauses", "schema_migrations"} <= tables
    finally:
        for pool in pools:
            await pool.close()


def test_versions_are_unique_and_sequential() -> None:
    versions = [v for v, _, _ in available()]
    assert versions == list(range(1, len(versions) + 1))
