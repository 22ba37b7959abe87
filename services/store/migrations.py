"""Versioned, idempotent schema migrations, applied at start-up.

Files `migrations/NNNN_name.sql` are applied in order, each in its own transaction, and recorded in
`schema_migrations`. A PostgreSQL advisory lock serializes concurrent start-ups (several store
replicas rolling out at once), so each migration runs exactly once.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

# Any constant shared by all store replicas; identifies "the migration lock" among advisory locks.
_LOCK_ID = 0x0C1A05E


def available() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every bundled migration, in order."""
    found = []
    for entry in resources.files("services.store").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {sorted(versions)}")
    return sorted(found)


async def migrate(pool: asyncpg.Pool) -> list[int]:
    """Apply the migrations this database lacks; return the versions applied now."""
    async with pool.acquire() as connection:
        return await _migrate(connection)


async def _migrate(connection: Any) -> list[int]:
    applied_now = []
    await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_time timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in available():
            if version in done:
                continue
            async with connection.transaction():
                await connection.execute(sql)
                await connection.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            log.info("migration applied", extra={"version": version, "migration": name})
            applied_now.append(version)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return applied_now
