"""The outbox relay: starts the workflows of new extractions and delivers cancel requests to Temporal.

Why: a submit that starts its workflow itself fails, or leaves a PENDING row nothing ever starts, when
Temporal is briefly down; a cancel that reaches the row but not the workflow is lost. Instead the row
is the intent (a transactional outbox): CreateExtraction commits a PENDING row with no
`workflow_start_time`, CancelExtraction commits a `cancel_time`, DeleteExtraction (or expiry) a
`delete_requested_time` without `deletion_start_time`, and this relay carries them out: it starts the
workflow, delivers the cancel, or starts the DeletionWorkflow `deletion-<id>` (services/store/lifecycle.py).

Mechanism: every store replica runs one relay. It wakes on a NOTIFY from the committing transaction
(ChangeFeed.outbox) or, failing that, every `relay_poll_seconds` (the sweep that catches what a lost
notification missed). It claims a batch with `FOR UPDATE SKIP LOCKED` — replicas never take the same
rows — and holds the row locks while it calls Temporal, so a concurrent cancel waits for the start to
be recorded. Starts use REJECT_DUPLICATE on the workflow id `extraction-<id>`: a start repeated after
a lost commit is "already started", i.e. done. While Temporal is unreachable the relay backs off
(up to MAX_BACKOFF_SECONDS) and the `clausework_outbox_oldest_unstarted_seconds` gauge grows — alert on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from clausework.pipeline import TERMINAL_STATES
from clausework.pipeline.payloads import (
    DELETION_WORKFLOW_NAME,
    WORKFLOW_NAME,
    DeletionInput,
    ExtractionInput,
    deletion_workflow_id,
    workflow_id,
)
from clausework.pipeline.search import extraction_attributes, use_search_attributes
from clausework.runtime.telemetry import continued_trace
from contracts.v1 import extraction_pb2 as pb
from services.store.changes import ChangeFeed
from services.store.extractions import EXTRACTIONS

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 10.0
TEMPORAL_RPC_TIMEOUT = timedelta(seconds=5)

OLDEST_UNSTARTED = Gauge(
    "clausework_outbox_oldest_unstarted_seconds",
    "Age of the oldest PENDING extraction whose workflow is not started yet (0 when none): alert when it grows.",
)
UNSTARTED = Gauge("clausework_outbox_unstarted", "PENDING extractions whose workflow is not started yet.")
UNDELIVERED_CANCELS = Gauge("clausework_outbox_undelivered_cancels", "Cancel requests not yet delivered to Temporal.")
UNSTARTED_DELETIONS = Gauge(
    "clausework_outbox_unstarted_deletions", "Delete requests whose DeletionWorkflow is not started yet."
)
RELAYED = Counter("clausework_outbox_relayed", "Outbox entries carried out, by kind (start, cancel, delete).", ["kind"])
RELAY_FAILURES = Counter("clausework_outbox_failures", "Relay passes that could not reach Temporal or the database.")


class TemporalUnreachable(Exception):
    """A pass stopped because Temporal did not answer; what was done before is committed."""


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        changes: ChangeFeed,
        temporal: Client,
        *,
        namespace: str,
        task_queue: str,
        poll_seconds: float = 2.0,
        batch: int = 50,
        deletion_settle_seconds: float = 0.0,
    ) -> None:
        self._pool = pool
        self._changes = changes
        self._temporal = temporal
        self._namespace = namespace
        self._task_queue = task_queue
        self._poll_seconds = poll_seconds
        self._batch = batch
        self._deletion_settle_seconds = deletion_settle_seconds
        self._search_attributes: bool | None = None  # decided on the first reachable pass
        self._next_measure = 0.0

    async def run(self) -> None:
        """Forever: carry out what the outbox holds, then wait for a notification or the poll interval."""
        backoff = 0.0
        while True:
            self._changes.outbox.clear()
            busy = False
            try:
                await self._changes.ensure_connected()
                busy = await self.pass_once()
                backoff = 0.0
            except Exception as error:  # Temporal or PostgreSQL away: back off, never die
                RELAY_FAILURES.inc()
                backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF_SECONDS)
                log.warning("outbox relay backing off", extra={"error": repr(error)[:300], "seconds": backoff})
            if time.monotonic() >= self._next_measure:  # at most once a poll interval, however busy
                self._next_measure = time.monotonic() + self._poll_seconds
                with contextlib.suppress(Exception):
                    await self.measure()
            if backoff:
                await asyncio.sleep(backoff)
            elif not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changes.outbox.wait(), self._poll_seconds)

    async def pass_once(self) -> bool:
        """One batch of starts, cancels and deletions; True when a batch was full (more may be waiting).

        Cancels go before deletions, so a deleted extraction's work is told to stop first."""
        if self._search_attributes is None:
            self._search_attributes = await use_search_attributes(self._temporal, self._namespace)
        started = await self._start_batch()
        cancelled = await self._cancel_batch()
        deleting = await self._delete_batch()
        return max(started, cancelled, deleting) >= self._batch

    async def _start_batch(self) -> int:
        return await self._relay_batch(
            "start",
            "SELECT e.id, e.tenant, e.filename, e.traceparent, d.object_key, e.webhook_url IS NOT NULL AS webhook"
            " FROM extractions e JOIN documents d ON d.tenant = e.tenant AND d.sha256 = e.document_sha256"
            f" WHERE e.state = {pb.STATE_PENDING} AND e.workflow_start_time IS NULL AND e.delete_requested_time IS NULL"
            " ORDER BY e.create_time LIMIT $1 FOR UPDATE OF e SKIP LOCKED",
            self._start,
            "workflow_start_time",
        )

    async def _relay_batch(
        self, kind: str, claim: str, start: Callable[[Any], Awaitable[None]], started_column: str
    ) -> int:
        """Claim a batch (`claim`, limit $1), start a workflow for each row while holding their locks, and
        record the ones started in `started_column`; raise when Temporal refused any (after committing)."""
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(claim, self._batch)
            if not rows:
                return 0
            outcomes = await asyncio.gather(*(start(row) for row in rows), return_exceptions=True)
            done = [row["id"] for row, outcome in zip(rows, outcomes, strict=True) if outcome is None]
            if done:
                await connection.execute(
                    f"UPDATE extractions SET {started_column} = now() WHERE id = ANY($1::uuid[])", done
                )
                RELAYED.labels(kind).inc(len(done))
        failures = [outcome for outcome in outcomes if outcome is not None]
        if failures:
            raise TemporalUnreachable(f"{len(failures)} of {len(rows)} {kind}s failed: {failures[0]!r}")
        return len(rows)

    async def _start(self, row: Any) -> None:
        extraction_id = str(row["id"])
        attributes = extraction_attributes(extraction_id, row["tenant"]) if self._search_attributes else None
        # Already started: a start repeated after the commit that recorded it was lost. The start (and so
        # the workflow) joins the trace of the submit that created the row.
        with continued_trace(row["traceparent"] or ""), contextlib.suppress(WorkflowAlreadyStartedError):
            await self._temporal.start_workflow(
                WORKFLOW_NAME,
                ExtractionInput(extraction_id=extraction_id, document_key=row["object_key"], webhook=row["webhook"]),
                id=workflow_id(extraction_id),
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                # Operators find the workflow by extraction or tenant; the memo is shown in the Temporal UI.
                search_attributes=attributes,
                memo={"filename": row["filename"], "tenant": row["tenant"]},
                rpc_timeout=TEMPORAL_RPC_TIMEOUT,
            )

    async def _cancel_batch(self) -> int:
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                "SELECT id, state FROM extractions WHERE cancel_time IS NOT NULL AND cancel_delivered_time IS NULL"
                " ORDER BY cancel_time LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch,
            )
            if not rows:
                return 0
            live = [row for row in rows if row["state"] not in TERMINAL_STATES]
            outcomes = await asyncio.gather(*(self._cancel(row["id"]) for row in live), return_exceptions=True)
            failed = {row["id"] for row, outcome in zip(live, outcomes, strict=True) if isinstance(outcome, Exception)}
            gone = [row["id"] for row, outcome in zip(live, outcomes, strict=True) if outcome is False]
            done = [row["id"] for row in rows if row["id"] not in failed]
            if gone:  # no workflow to stop (it never existed, or Temporal lost it): the row is all there is
                await connection.execute(
                    "UPDATE extractions SET state = $2, stage = $3, update_time = now()"
                    " WHERE id = ANY($1::uuid[]) AND state <> ALL($4::smallint[])",
                    gone,
                    pb.STATE_CANCELLED,
                    pb.STAGE_DONE,
                    list(TERMINAL_STATES),
                )
                EXTRACTIONS.labels("CANCELLED").inc(len(gone))
            if done:
                await connection.execute(
                    "UPDATE extractions SET cancel_delivered_time = now() WHERE id = ANY($1::uuid[])", done
                )
                RELAYED.labels("cancel").inc(len(done))
        if failed:
            raise TemporalUnreachable(f"{len(failed)} of {len(live)} cancels failed")
        return len(rows)

    async def _delete_batch(self) -> int:
        return await self._relay_batch(
            "delete",
            "SELECT id, tenant FROM extractions WHERE delete_requested_time IS NOT NULL"
            " AND deletion_start_time IS NULL ORDER BY delete_requested_time LIMIT $1 FOR UPDATE SKIP LOCKED",
            self._start_deletion,
            "deletion_start_time",
        )

    async def _start_deletion(self, row: Any) -> None:
        extraction_id = str(row["id"])
        attributes = extraction_attributes(extraction_id, row["tenant"]) if self._search_attributes else None
        with contextlib.suppress(WorkflowAlreadyStartedError):  # started before a lost commit: done
            await self._temporal.start_workflow(
                DELETION_WORKFLOW_NAME,
                DeletionInput(extraction_id=extraction_id, settle_seconds=self._deletion_settle_seconds),
                id=deletion_workflow_id(extraction_id),
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=attributes,
                rpc_timeout=TEMPORAL_RPC_TIMEOUT,
            )

    async def _cancel(self, ident: Any) -> bool:
        """Request cancellation of the extraction's workflow; False when there is no running workflow."""
        try:
            await self._temporal.get_workflow_handle(workflow_id(str(ident))).cancel(rpc_timeout=TEMPORAL_RPC_TIMEOUT)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def measure(self) -> None:
        async with self._pool.acquire() as connection:
            row: Any = await connection.fetchrow(
                "SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(create_time)), 0) AS age"
                " FROM extractions WHERE state = $1 AND workflow_start_time IS NULL",
                pb.STATE_PENDING,
            )
            cancels = await connection.fetchval(
                "SELECT count(*) FROM extractions WHERE cancel_time IS NOT NULL AND cancel_delivered_time IS NULL"
            )
            deletions = await connection.fetchval(
                "SELECT count(*) FROM extractions"
                " WHERE delete_requested_time IS NOT NULL AND deletion_start_time IS NULL"
            )
        UNSTARTED.set(row["n"])
        OLDEST_UNSTARTED.set(float(row["age"]))
        UNDELIVERED_CANCELS.set(cancels)
        UNSTARTED_DELETIONS.set(deletions)
