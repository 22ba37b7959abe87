"""The janitor: deletes objects nothing references, so no upload or cancelled work is left behind.

Two kinds of leftovers, each swept every `sweep_interval_seconds` by every store replica (deletes are
idempotent, so replicas may overlap harmlessly):
- `uploads/` objects and multipart uploads older than `upload_grace_seconds`: a streamed upload lives
  there only between its last chunk and CreateExtraction moving it (seconds), so an old one belongs to a
  store or gateway that died in between. Operators may also expire them by an S3 lifecycle rule
  (deploy/s3/lifecycle.json).
- the intermediate objects of extractions that ended FAILED or CANCELLED more than
  `settle_seconds` ago and were not swept yet: the workflow deletes them when it ends, but a parser or
  llm call cancelled mid-write may still land an object afterwards.
It also forgets notes of purged PDFs (purged_documents) older than `upload_grace_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import Counter

from clausework.pipeline import UPLOADS_PREFIX
from contracts.v1 import extraction_pb2 as pb
from services.store.extractions import ExtractionStore
from services.store.objects import ObjectStore

log = logging.getLogger(__name__)

SWEEP_BATCH = 500

SWEPT = Counter(
    "clausework_janitor_deleted",
    "Leftovers the janitor deleted, by kind: objects (uploads, multipart, ended) and purge_notes rows.",
    ["kind"],
)


class Janitor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        objects: ObjectStore,
        extractions: ExtractionStore,
        *,
        interval_seconds: float,
        upload_grace_seconds: float,
        settle_seconds: float,
    ) -> None:
        self._pool = pool
        self._objects = objects
        self._extractions = extractions
        self._interval = interval_seconds
        self._upload_grace = timedelta(seconds=upload_grace_seconds)
        self._settle = timedelta(seconds=settle_seconds)

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as error:  # S3 or PostgreSQL away: try again next time
                log.warning("janitor sweep failed", extra={"error": repr(error)[:300]})
            await asyncio.sleep(self._interval)

    async def sweep(self) -> dict[str, int]:
        """One sweep; returns what it deleted, by kind."""
        before = datetime.now(UTC) - self._upload_grace
        uploads = await self._objects.older_than(UPLOADS_PREFIX, before)
        for key in uploads:
            await self._objects.delete(key)
        aborted = 0
        try:
            aborted = await self._objects.abort_stale_multipart(UPLOADS_PREFIX, before)
        except Exception as error:  # not every S3 implementation lists multipart uploads
            log.info("could not list multipart uploads", extra={"error": repr(error)[:200]})
        async with self._pool.acquire() as connection:
            ended = await connection.fetch(
                "SELECT id FROM extractions WHERE state IN ($1, $2) AND swept_time IS NULL"
                " AND update_time < now() - $3::interval ORDER BY update_time LIMIT $4",
                pb.STATE_FAILED,
                pb.STATE_CANCELLED,
                self._settle,
                SWEEP_BATCH,
            )
            # Notes of purged PDFs outlive any upload that could have raced the purge (ExtractionStore._insert).
            notes: int = await connection.fetchval(
                "WITH forgotten AS (DELETE FROM purged_documents WHERE purge_time < now() - $1::interval"
                " RETURNING 1) SELECT count(*) FROM forgotten",
                self._upload_grace,
            )
        for row in ended:
            await self._extractions.discard_objects(str(row["id"]))
        if ended:
            async with self._pool.acquire() as connection:
                await connection.execute(
                    "UPDATE extractions SET swept_time = now() WHERE id = ANY($1::uuid[])", [r["id"] for r in ended]
                )
        counts = {"uploads": len(uploads), "multipart": aborted, "ended": len(ended), "purge_notes": notes}
        for kind, count in counts.items():
            SWEPT.labels(kind).inc(count)
        if uploads or aborted:
            log.info("janitor deleted leftover uploads", extra=counts)
        return counts
