"""Change notifications for watchers: one LISTEN connection per store process, fanned out to waiters.

Rows announce their changes with pg_notify (migration 0002), so a watcher wakes when any store replica
(or the database itself) changes an extraction. Notifications can be missed (a dropped connection),
so waiters also wake on a timeout and re-read: the database stays the source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "extraction_changed"
# New work for the outbox relay (an extraction to start, a cancel to deliver); payload: the id.
OUTBOX_CHANNEL = "extraction_outbox"


class ChangeFeed:
    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._connection: Any = None
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        # Set on every outbox notification; the relay clears it before each pass.
        self.outbox = asyncio.Event()

    async def start(self) -> None:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await self._connect()

    async def _connect(self) -> None:
        self._connection = await asyncpg.connect(self._database_url)
        await self._connection.add_listener(CHANNEL, self._notified)
        await self._connection.add_listener(OUTBOX_CHANNEL, self._outbox_notified)

    async def ensure_connected(self) -> None:
        """Reconnect after the database went away (notifications sent meanwhile are lost: callers poll too)."""
        if self._connection is None or self._connection.is_closed():
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await self._connect()

    def _outbox_notified(self, connection: object, pid: int, channel: str, payload: str) -> None:
        self.outbox.set()

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    def _notified(self, connection: object, pid: int, channel: str, payload: str) -> None:
        for event in self._waiters.get(payload, ()):
            event.set()

    @contextlib.asynccontextmanager
    async def subscribe(self, extraction_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever the extraction changes; the subscriber clears it after each read."""
        await self.ensure_connected()
        event = asyncio.Event()
        self._waiters[extraction_id].add(event)
        try:
            yield event
        finally:
            self._waiters[extraction_id].discard(event)
            if not self._waiters[extraction_id]:
                del self._waiters[extraction_id]
