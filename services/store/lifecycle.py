"""The end of an extraction's life: delete requests, their durable execution, expiry and webhook outcomes.

Deletion is two steps, so an outage between or during them finishes later and never leaves half:
- `request_delete` (DeleteExtraction, or `expire` for extractions past their expire_time) commits a
  `delete_requested_time` in one transaction: the row disappears from every public read at once, its
  request_id is freed, running work gets a durable cancel request (an extraction whose workflow never
  started is CANCELLED at once), and the outbox relay starts a DeletionWorkflow for it.
- `purge`, called by that workflow until it reports done, waits for the work to stop (a terminal row),
  deletes the objects named after the id, then in one transaction the rows and — under the document
  row's lock, when no other extraction of the tenant references it — the PDF and its document row.
  With the row already gone it deletes the id's objects again, for the workflow's late second sweep.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from prometheus_client import Counter

from clausework.pipeline import TERMINAL_STATES
from clausework.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from contracts.internal.v1 import store_pb2
from contracts.v1 import extraction_pb2 as pb
from services.store.changes import OUTBOX_CHANNEL
from services.store.extractions import EXTRACTIONS, ExtractionStore, parse_id, visible
from services.store.objects import ObjectStore

log = logging.getLogger(__name__)

MAX_EXPIRE_BATCH = 1000
MAX_WEBHOOK_ERROR_CHARS = 300
# Outcomes a delivery never leaves: a late or repeated report of an earlier attempt changes nothing.
SETTLED_WEBHOOK_STATES = (pb.WEBHOOK_STATE_DELIVERED, pb.WEBHOOK_STATE_FAILED)

DELETIONS = Counter("clausework_deletions", "Deletions, by step: requested (API or expiry), purged.", ["step"])

# Marks rows for deletion. Every SET expression sees the row as it was: a workflow never started is
# CANCELLED at once (the relay starts only PENDING rows without a delete request); running work gets a
# cancel request unless it has one.
_MARK = """
UPDATE extractions SET
    delete_requested_time = now(), request_id = NULL, fingerprint = NULL, update_time = now(),
    state = CASE WHEN state = $2 AND workflow_start_time IS NULL THEN $3 ELSE state END,
    stage = CASE WHEN state = $2 AND workflow_start_time IS NULL THEN $4 ELSE stage END,
    cancel_delivered_time = CASE WHEN state = $2 AND workflow_start_time IS NULL THEN now()
                                 ELSE cancel_delivered_time END,
    cancel_time = CASE WHEN state <> ALL($5::smallint[]) AND cancel_time IS NULL THEN now() ELSE cancel_time END
WHERE id = ANY($1::uuid[]) AND delete_requested_time IS NULL
RETURNING id, (state = $3 AND cancel_delivered_time = now() AND workflow_start_time IS NULL) AS cancelled_now
"""


class Lifecycle:
    def __init__(self, pool: asyncpg.Pool, objects: ObjectStore, extractions: ExtractionStore) -> None:
        self._pool = pool
        self._objects = objects
        self._extractions = extractions

    async def _mark(self, connection: Any, ids: list[Any]) -> int:
        rows = await connection.fetch(
            _MARK, ids, pb.STATE_PENDING, pb.STATE_CANCELLED, pb.STAGE_DONE, list(TERMINAL_STATES)
        )
        if rows:
            await connection.execute("SELECT pg_notify($1, $2)", OUTBOX_CHANNEL, "delete")
        cancelled = sum(1 for row in rows if row["cancelled_now"])
        if cancelled:
            EXTRACTIONS.labels("CANCELLED").inc(cancelled)
        DELETIONS.labels("requested").inc(len(rows))
        return len(rows)

    async def request_delete(self, extraction_id: str, tenant: str = "") -> None:
        """Record a durable delete request. NOT_FOUND for an unknown id, another tenant's, or a second
        request (the first one already made it invisible)."""
        ident = parse_id(extraction_id)
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                f"SELECT e.tenant FROM extractions e WHERE e.id = $1 AND {visible()} FOR UPDATE", ident
            )
            if row is None or (tenant and row["tenant"] != tenant):
                raise NotFound(f"extraction {extraction_id} not found")
            await self._mark(connection, [ident])
        log.info("delete requested", extra={"extraction_id": extraction_id})

    async def expire(self, limit: int) -> int:
        """Record delete requests for up to `limit` extractions past their expire_time; the number marked."""
        if not 0 < limit <= MAX_EXPIRE_BATCH:
            raise InvalidArgument(f"limit must be between 1 and {MAX_EXPIRE_BATCH}")
        async with self._pool.acquire() as connection, connection.transaction():
            ids = await connection.fetch(
                "SELECT id FROM extractions WHERE expire_time <= now() AND delete_requested_time IS NULL"
                " ORDER BY expire_time LIMIT $1 FOR UPDATE SKIP LOCKED",
                limit,
            )
            marked = await self._mark(connection, [row["id"] for row in ids]) if ids else 0
        if marked:
            log.info("expired extractions marked for deletion", extra={"count": marked})
        return marked

    async def purge(self, extraction_id: str) -> store_pb2.PurgeExtractionResponse:
        """One step of a DeletionWorkflow (idempotent; see the module docstring)."""
        ident = parse_id(extraction_id)
        async with self._pool.acquire() as connection:
            row = await connection.fetchrow(
                "SELECT tenant, document_sha256, state, delete_requested_time FROM extractions WHERE id = $1", ident
            )
        if row is None:  # purged before: sweep objects a cancelled call may have landed late
            await self._extractions.discard_objects(extraction_id)
            return store_pb2.PurgeExtractionResponse()
        if row["delete_requested_time"] is None:
            raise FailedPrecondition(f"extraction {extraction_id} has no delete request")
        if row["state"] not in TERMINAL_STATES:
            return store_pb2.PurgeExtractionResponse(pending=True)
        await self._extractions.discard_objects(extraction_id)
        tenant, sha256 = row["tenant"], row["document_sha256"]
        async with self._pool.acquire() as connection, connection.transaction():
            # Locked: a concurrent upload of the same bytes waits for us (its foreign key check), then
            # either references the document we kept or finds it gone and uploads the PDF again.
            document = await connection.fetchrow(
                "SELECT object_key FROM documents WHERE tenant = $1 AND sha256 = $2 FOR UPDATE", tenant, sha256
            )
            shared = await connection.fetchval(
                "SELECT EXISTS (SELECT 1 FROM extractions WHERE tenant = $1 AND document_sha256 = $2 AND id <> $3)",
                tenant,
                sha256,
                ident,
            )
            await connection.execute("DELETE FROM extractions WHERE id = $1", ident)  # clause rows cascade
            document_deleted = document is not None and not shared
            if document is not None and document_deleted:
                # Inside the transaction: if this fails, the rows stay and the next attempt repeats it all.
                await self._objects.delete(str(document["object_key"]))
                await connection.execute("DELETE FROM documents WHERE tenant = $1 AND sha256 = $2", tenant, sha256)
                # For an upload of the same bytes racing us (ExtractionStore._insert); the janitor forgets it.
                await connection.execute(
                    "INSERT INTO purged_documents (tenant, sha256) VALUES ($1, $2)"
                    " ON CONFLICT (tenant, sha256) DO UPDATE SET purge_time = now()",
                    tenant,
                    sha256,
                )
        DELETIONS.labels("purged").inc()
        log.info("extraction purged", extra={"extraction_id": extraction_id, "document_deleted": document_deleted})
        return store_pb2.PurgeExtractionResponse(document_deleted=document_deleted)

    async def webhook_event(self, extraction_id: str) -> store_pb2.GetWebhookEventResponse:
        """Where to send the terminal event and what it says: ids, state, error code and counts only."""
        ident = parse_id(extraction_id)
        async with self._pool.acquire() as connection:
            row = await connection.fetchrow(
                "SELECT e.tenant, e.state, e.error_code, e.page_count, e.webhook_url, e.update_time,"
                " (SELECT count(*) FROM clauses c WHERE c.extraction_id = e.id) AS clause_count"
                f" FROM extractions e WHERE e.id = $1 AND {visible()}",
                ident,
            )
        if row is None:
            raise NotFound(f"extraction {extraction_id} not found")
        if row["state"] not in TERMINAL_STATES:
            raise FailedPrecondition(f"extraction {extraction_id} has not ended")
        answer = store_pb2.GetWebhookEventResponse(
            url=row["webhook_url"] or "",
            tenant=row["tenant"],
            state=row["state"],
            error_code=row["error_code"] or "",
            clause_count=row["clause_count"],
            page_count=row["page_count"] or 0,
        )
        answer.end_time.FromDatetime(row["update_time"])
        return answer

    async def record_webhook(self, request: store_pb2.RecordWebhookAttemptRequest) -> None:
        """The outcome of a delivery attempt; attempts = 0 changes only the state (giving up)."""
        async with self._pool.acquire() as connection:
            await connection.execute(
                "UPDATE extractions SET webhook_state = $2,"
                " webhook_attempts = GREATEST(webhook_attempts, $3),"
                " webhook_last_status_code = CASE WHEN $3 > 0 THEN $4 ELSE webhook_last_status_code END,"
                " webhook_last_error = COALESCE(NULLIF($5, ''),"
                "  CASE WHEN $3 > 0 THEN NULL ELSE webhook_last_error END),"
                " webhook_last_attempt_time = CASE WHEN $3 > 0 THEN now() ELSE webhook_last_attempt_time END"
                " WHERE id = $1 AND webhook_url IS NOT NULL AND webhook_state <> ALL($6::smallint[])",
                parse_id(request.id),
                request.state,
                request.attempts,
                request.last_status_code,
                request.last_error[:MAX_WEBHOOK_ERROR_CHARS],
                list(SETTLED_WEBHOOK_STATES),
            )
