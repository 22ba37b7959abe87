"""Extraction state in PostgreSQL, payloads in object storage — and the rules that keep them consistent.

Invariants:
- an object is written before any row points at it, so a row never references a missing object;
- terminal states (SUCCEEDED, FAILED, CANCELLED) are never left, so retried or late calls are harmless;
- completing an extraction writes its result object under a key derived from its id and then swaps its
  clause rows in one transaction, so any number of retries leaves exactly one result; a completion that
  loses to a cancel deletes the result object it wrote;
- a FAILED or CANCELLED extraction keeps no object naming it (its parsed text, clauses, result): they
  are deleted when it ends, and the janitor repeats that for stragglers; only its PDF stays (served by
  DownloadDocument);
- the PENDING row is the intent to start its workflow (a transactional outbox, see relay.py): creating
  an extraction never waits for Temporal, and a cancel is a durable request the relay delivers;
- documents, their object keys and deduplication are per tenant: nothing in an answer or its timing
  depends on another tenant's uploads;
- a request_id names one request: reusing it with other content, filename or options is refused;
- a delete request (delete_requested_time, lifecycle.py) or a passed expire_time hides the extraction from
  every public read at once; only the pipeline's own calls still see it, until its DeletionWorkflow
  removes the row;
- a purge deletes a PDF and its document row under that row's lock; an upload that had to create the
  document row anew checks, before it commits, that its PDF survived such a purge, and writes it again
  if not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from google.protobuf import json_format, timestamp_pb2
from prometheus_client import Counter

from clausework.pipeline import (
    MAX_FILENAME_CHARS,
    MAX_REQUEST_ID_CHARS,
    TERMINAL_STATES,
    UPLOADS_PREFIX,
    is_upload_key,
)
from clausework.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, register_transient
from clausework.runtime.telemetry import current_trace_carrier
from contracts.internal.v1 import llm_pb2
from contracts.v1 import extraction_pb2 as pb
from services.store.changes import OUTBOX_CHANNEL, ChangeFeed
from services.store.objects import ObjectStore
from services.store.pagetokens import PageTokens
from services.store.retention import Retention

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

# Each transition counted once, by the replica that made it (the row changed): sum over replicas.
EXTRACTIONS = Counter(
    "clausework_extractions",
    "Extractions that entered a state: PENDING when created, then SUCCEEDED, FAILED or CANCELLED.",
    ["state"],
)

# PostgreSQL unreachable, restarting or refusing connections: callers retry (UNAVAILABLE), not INTERNAL.
register_transient(
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def visible(table: str = "e") -> str:
    """What a caller may still see: not being deleted, not expired (the retention schedule deletes it soon)."""
    prefix = f"{table}." if table else ""
    return f"{prefix}delete_requested_time IS NULL AND ({prefix}expire_time IS NULL OR {prefix}expire_time > now())"


_SELECT = """
SELECT e.*, d.size_bytes, d.object_key
FROM extractions e JOIN documents d ON d.tenant = e.tenant AND d.sha256 = e.document_sha256
"""


def document_key(tenant: str, sha256: str) -> str:
    """Per tenant (by a hash of its name, which may hold any characters), so no key is shared across tenants."""
    owner = hashlib.sha256(tenant.encode()).hexdigest()[:16]
    return f"documents/{owner}/{sha256[:2]}/{sha256}.pdf"


def intermediate_prefix(extraction_id: str) -> str:
    """The folder of an extraction's claim-check objects (parsed text, clauses)."""
    return f"extractions/{extraction_id}/"


def request_fingerprint(
    sha256: str, filename: str, reprocess: bool, retention: timedelta | None = None, webhook_url: str = ""
) -> str:
    """What a request asked for, to tell a retry (same fingerprint) from a reused request_id. Options
    added later enter only when set, so fingerprints of earlier requests stay valid."""
    fields: dict[str, object] = {"sha256": sha256, "filename": filename, "reprocess": reprocess}
    if retention:
        fields["retention_seconds"] = retention.total_seconds()
    if webhook_url:
        fields["webhook_url"] = webhook_url
    canonical = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def result_key(extraction_id: str) -> str:
    return f"results/{extraction_id}.json"


def parse_id(extraction_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(extraction_id)
    except (ValueError, TypeError) as exc:
        # Echo a bounded prefix only: a status message travels in a header with a size limit.
        raise InvalidArgument(f"invalid extraction id {extraction_id[:64]!r}: expected a UUID") from exc


def _timestamp(value: Any) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _to_message(row: asyncpg.Record, clauses: list[asyncpg.Record] | None = None) -> pb.Extraction:
    extraction = pb.Extraction(
        id=str(row["id"]),
        state=row["state"],
        stage=row["stage"],
        document=pb.Document(
            filename=row["filename"],
            sha256=row["document_sha256"],
            size_bytes=row["size_bytes"],
            page_count=row["page_count"] or 0,
            char_count=row["char_count"] or 0,
        ),
        create_time=_timestamp(row["create_time"]),
        update_time=_timestamp(row["update_time"]),
        request_id=row["request_id"] or "",
        model=row["model"] or "",
        progress=pb.Progress(
            pages_parsed=row["pages_parsed"],
            pages_total=row["pages_total"],
            chunks_done=row["chunks_done"],
            chunks_total=row["chunks_total"],
        ),
        usage=pb.Usage(prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"]),
    )
    if row["cancel_time"] is not None:
        extraction.cancel_time.CopyFrom(_timestamp(row["cancel_time"]))
    if row["expire_time"] is not None:
        extraction.expire_time.CopyFrom(_timestamp(row["expire_time"]))
    if row["webhook_url"]:
        extraction.webhook.state = row["webhook_state"]
        extraction.webhook.attempts = row["webhook_attempts"]
        extraction.webhook.last_status_code = row["webhook_last_status_code"]
        extraction.webhook.last_error = row["webhook_last_error"] or ""
        if row["webhook_last_attempt_time"] is not None:
            extraction.webhook.last_attempt_time.CopyFrom(_timestamp(row["webhook_last_attempt_time"]))
    if row["error_code"]:
        extraction.error.code = row["error_code"]
        extraction.error.message = row["error_message"] or ""
    for clause in clauses or ():
        extraction.clauses.add(
            category=clause["category"],
            text=clause["text"],
            page_start=clause["page_start"],
            page_end=clause["page_end"],
            char_start=clause["char_start"],
            char_end=clause["char_end"],
            confidence=clause["confidence"],
            answer=clause["answer"],
        )
    return extraction


@dataclass(frozen=True)
class Created:
    extraction: pb.Extraction
    created: bool
    document_key: str


@dataclass(frozen=True)
class _New:
    """An extraction row to insert."""

    tenant: str
    request_id: str
    sha256: str
    size: int
    key: str
    filename: str
    fingerprint: str
    retention: timedelta | None
    webhook_url: str


@dataclass(frozen=True)
class Upload:
    """A PDF to register: its bytes, or an object already written under uploads/ by a streaming gateway."""

    content: bytes = b""
    upload_key: str = ""
    sha256: str = ""
    size_bytes: int = 0


class ExtractionStore:
    def __init__(
        self, pool: asyncpg.Pool, objects: ObjectStore, page_tokens: PageTokens, retention: Retention | None = None
    ) -> None:
        self._pool = pool
        self._objects = objects
        self._page_tokens = page_tokens
        self._retention = retention or Retention()

    async def create(
        self,
        upload: Upload,
        filename: str,
        request_id: str,
        tenant: str = DEFAULT_TENANT,
        reprocess: bool = False,
        retention: timedelta | None = None,
        webhook_url: str = "",
    ) -> Created:
        """Store the PDF (once per content and tenant) and a PENDING extraction, whose workflow the relay starts.

        Idempotent per (tenant, request_id); identical bytes already extracted for the tenant return that
        extraction unless `reprocess`, a retention or a webhook is asked for (the earlier extraction has
        neither this retention nor this receiver).
        """
        if len(request_id) > MAX_REQUEST_ID_CHARS:
            raise InvalidArgument(f"request_id is longer than {MAX_REQUEST_ID_CHARS} characters")
        if len(filename) > MAX_FILENAME_CHARS:
            raise InvalidArgument(f"filename is longer than {MAX_FILENAME_CHARS} characters")
        tenant = tenant or DEFAULT_TENANT
        if upload.upload_key:
            if not is_upload_key(upload.upload_key) or len(upload.sha256) != 64 or upload.size_bytes <= 0:
                raise InvalidArgument(f"upload_key must name an {UPLOADS_PREFIX} object, with its sha256 and size")
            sha256, size = upload.sha256, upload.size_bytes
        elif upload.content:
            sha256, size = hashlib.sha256(upload.content).hexdigest(), len(upload.content)
        else:
            raise InvalidArgument("content is empty")
        fingerprint = request_fingerprint(sha256, filename, reprocess, retention, webhook_url)
        reuse = not (reprocess or retention or webhook_url)
        key = document_key(tenant, sha256)
        # The object write overlaps the lookup: its key is content-addressed per tenant, so writing it for
        # a request that turns out to be a repeat only rewrites the same bytes.
        write = asyncio.create_task(self._write_document(upload, key))
        try:
            async with self._pool.acquire() as connection:
                found: Any = await connection.fetchrow(
                    "SELECT r.id AS by_request, r.fingerprint AS by_request_fingerprint,"
                    " (SELECT id FROM extractions WHERE tenant = $1 AND document_sha256 = $3 AND state = $4"
                    f"  AND {visible('')} ORDER BY create_time DESC LIMIT 1) AS finished"
                    " FROM (SELECT 1) AS one LEFT JOIN extractions r ON r.tenant = $1 AND r.request_id = $2",
                    tenant,
                    request_id or None,
                    sha256,
                    pb.STATE_SUCCEEDED,
                )
            await write  # before any row points at the object
            if found["by_request"] is not None:
                return await self._repeat(found["by_request"], found["by_request_fingerprint"], request_id, fingerprint)
            if reuse and found["finished"] is not None:
                extraction, existing_key = await self.get(str(found["finished"]))
                return Created(extraction, False, existing_key)
            new = _New(
                tenant, request_id, sha256, size, key, filename, fingerprint, self._retention.effective(retention),
                webhook_url,
            )  # fmt: skip
            row = await self._insert(new, upload)
        finally:
            if not write.done():
                write.cancel()
            with contextlib.suppress(BaseException):
                await write
            if upload.upload_key:
                await self._objects.delete(upload.upload_key)
        if row is None:  # a concurrent call with the same request_id won the race
            async with self._pool.acquire() as connection:
                winner: Any = await connection.fetchrow(
                    "SELECT id, fingerprint FROM extractions WHERE tenant = $1 AND request_id = $2", tenant, request_id
                )
            return await self._repeat(winner["id"], winner["fingerprint"], request_id, fingerprint)
        EXTRACTIONS.labels("PENDING").inc()
        log.info("extraction created", extra={"extraction_id": str(row["id"]), "size_bytes": size})
        return Created(_to_message(row), True, key)

    async def discard_upload(self, upload_key: str) -> None:
        """Delete an upload its gateway will not register. Safe against a create of the same key still
        running: that create either copied the object first (and goes on) or fails on the copy (no row)."""
        if not is_upload_key(upload_key):
            raise InvalidArgument(f"only {UPLOADS_PREFIX} objects can be discarded, not {upload_key!r}")
        await self._objects.delete(upload_key)

    async def _write_document(self, upload: Upload, key: str) -> None:
        if upload.upload_key:
            await self._objects.copy(upload.upload_key, key)
        else:
            await self._objects.put(key, upload.content, content_type="application/pdf")

    async def _repeat(self, ident: uuid.UUID, stored: str | None, request_id: str, fingerprint: str) -> Created:
        """The extraction an earlier call with this request_id made (whose fingerprint is `stored`), if it
        asked for the same thing."""
        if stored is not None and stored != fingerprint:
            raise AlreadyExists(
                f"request_id {request_id[:64]!r} was already used for a different request (other content,"
                " filename or options); send a new request_id for a new request",
                reason="REQUEST_ID_REUSED",
            )
        extraction, key = await self.get(str(ident))
        return Created(extraction, False, key)

    async def _insert(self, new: _New, upload: Upload) -> asyncpg.Record | None:
        """The document row (if new), the extraction row and the relay's wake-up, in one transaction.

        A document row this statement had to create may replace one a concurrent purge just deleted — with
        the PDF, possibly after our write landed. Its lock is ours until commit and any such purge has
        committed (and left its note in purged_documents), so a second statement — a new snapshot, which
        sees that note — decides: only then is the object checked, and written again if it is gone, before
        any row pointing at it becomes visible. A new document costs one indexed lookup, not an S3 request.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            row: asyncpg.Record | None = await connection.fetchrow(
                "WITH document AS ("
                "  INSERT INTO documents (tenant, sha256, size_bytes, object_key) VALUES ($2, $4, $8, $9)"
                "  ON CONFLICT (tenant, sha256) DO NOTHING RETURNING 1),"
                " inserted AS ("
                "  INSERT INTO extractions (id, tenant, request_id, document_sha256, filename, state, stage,"
                "  fingerprint, traceparent, expire_time, webhook_url, webhook_state)"
                "  VALUES ($1, $2, $3, $4, $5, $6, $7, $10, NULLIF($11, ''), now() + $12::interval,"
                "  NULLIF($13, ''), $14)"
                "  ON CONFLICT (tenant, request_id) DO NOTHING RETURNING *)"
                " SELECT inserted.*, $8::bigint AS size_bytes, $9::text AS object_key,"
                " EXISTS (SELECT 1 FROM document) AS new_document,"
                f" pg_notify('{OUTBOX_CHANNEL}', inserted.id::text) FROM inserted",
                uuid.uuid4(),
                new.tenant,
                new.request_id or None,
                new.sha256,
                new.filename,
                pb.STATE_PENDING,
                pb.STAGE_QUEUED,
                new.size,
                new.key,
                new.fingerprint,
                current_trace_carrier(),
                new.retention,
                new.webhook_url,
                pb.WEBHOOK_STATE_PENDING if new.webhook_url else pb.WEBHOOK_STATE_UNSPECIFIED,
            )
            if (
                row is not None
                and row["new_document"]
                and await connection.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM purged_documents WHERE tenant = $1 AND sha256 = $2)",
                    new.tenant,
                    new.sha256,
                )
                and not await self._objects.exists(new.key)
            ):
                log.warning("document purged during upload; writing it again", extra={"extraction_id": str(row["id"])})
                await self._write_document(upload, new.key)
        return row

    async def list_page(
        self, tenant: str, page_size: int, page_token: str, state: int = pb.STATE_UNSPECIFIED
    ) -> tuple[list[pb.Extraction], str]:
        """One page of a tenant's extractions, newest first; keyset pagination, stable under inserts."""
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        conditions: list[str] = ["e.tenant = $1", visible()]
        args: list[object] = [tenant or DEFAULT_TENANT]
        if state:
            if state not in pb.State.values():
                raise InvalidArgument(f"unknown state {state}")
            args.append(state)
            conditions.append(f"e.state = ${len(args)}")
        query_name = f"state={state}"
        if page_token:
            stamp, ident = self._page_tokens.decode(page_token, args[0], query_name)  # type: ignore[arg-type]
            args += [stamp, ident]
            conditions.append(f"(e.create_time, e.id) < (${len(args) - 1}, ${len(args)})")
        query = (
            _SELECT + " WHERE " + " AND ".join(conditions) + f" ORDER BY e.create_time DESC, e.id DESC LIMIT {size + 1}"
        )
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(query, *args)
        more = len(rows) > size
        rows = rows[:size]
        token = ""
        if more:
            token = self._page_tokens.encode(str(args[0]), query_name, rows[-1]["create_time"], rows[-1]["id"])
        return [_to_message(row) for row in rows], token

    async def get(
        self, extraction_id: str, *, tenant: str = "", with_clauses: bool = True, hidden: bool = False
    ) -> tuple[pb.Extraction, str]:
        """The extraction (with clauses once SUCCEEDED) and its document's object key.

        With `tenant`, another tenant's extraction is NOT_FOUND: its existence is not revealed. One being
        deleted or expired is NOT_FOUND unless `hidden` (the pipeline's own calls, which must still see it).
        """
        ident = parse_id(extraction_id)
        async with self._pool.acquire() as connection:
            condition = "" if hidden else f" AND {visible()}"
            row = await connection.fetchrow(_SELECT + " WHERE e.id = $1" + condition, ident)
            if row is None or (tenant and row["tenant"] != tenant):
                raise NotFound(f"extraction {extraction_id} not found")
            clauses = None
            if with_clauses and row["state"] == pb.STATE_SUCCEEDED:
                clauses = await connection.fetch(
                    "SELECT * FROM clauses WHERE extraction_id = $1 ORDER BY ordinal", ident
                )
        return _to_message(row, clauses), str(row["object_key"])

    async def watch(
        self, extraction_id: str, tenant: str, changes: ChangeFeed, recheck_seconds: float = 2.0
    ) -> AsyncIterator[pb.Extraction]:
        """The extraction now and after every change, until it is terminal."""
        last = b""
        async with changes.subscribe(str(parse_id(extraction_id))) as changed:
            while True:
                changed.clear()
                extraction, _ = await self.get(extraction_id, tenant=tenant)
                snapshot = extraction.SerializeToString(deterministic=True)
                if snapshot != last:
                    yield extraction
                    last = snapshot
                if extraction.state in TERMINAL_STATES:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), recheck_seconds)

    async def update(
        self,
        extraction_id: str,
        *,
        state: int,
        stage: int,
        page_count: int = 0,
        char_count: int = 0,
        error: pb.ExtractionError | None = None,
        progress: pb.Progress | None = None,
        mask: Sequence[str] = (),
    ) -> pb.Extraction:
        """Move to state/stage and record progress unless already terminal; a no-op on terminal rows
        (safe to retry). `mask` (AIP-134) names the fields to write; empty: all of them.

        Returns the extraction as it is now, so the caller sees whether its move won. Ending FAILED or
        CANCELLED deletes the extraction's intermediate objects (on every call, so a retry finishes it).
        """
        ident = parse_id(extraction_id)
        columns = _update_columns(state, stage, page_count, char_count, error, progress, mask)
        assignments = ", ".join(f"{column} = ${index}" for index, column in enumerate(columns, start=3))
        async with self._pool.acquire() as connection:
            changed = await connection.fetchval(
                f"UPDATE extractions SET {assignments}, update_time = now()"
                " WHERE id = $1 AND state <> ALL($2::smallint[]) RETURNING id",
                ident,
                list(TERMINAL_STATES),
                *columns.values(),
            )
        if changed is not None and "state" in columns and state in TERMINAL_STATES:
            EXTRACTIONS.labels(pb.State.Name(state).removeprefix("STATE_")).inc()  # type: ignore[arg-type]
        extraction, _ = await self.get(extraction_id, with_clauses=False, hidden=True)
        if extraction.state in (pb.STATE_FAILED, pb.STATE_CANCELLED):
            await self.discard_objects(extraction_id)
        return extraction

    async def discard_objects(self, extraction_id: str) -> None:
        """Delete what names an extraction that ended without a result (idempotent)."""
        await self._objects.delete_prefix(intermediate_prefix(extraction_id))
        await self._objects.delete(result_key(extraction_id))

    async def cancel(self, extraction_id: str, tenant: str = "") -> pb.Extraction:
        """Record a durable cancel request; the relay delivers it to the workflow, which ends CANCELLED.

        An extraction whose workflow was never started is CANCELLED at once (the relay starts only rows
        that are still PENDING, and a workflow started but not yet recorded as such finds the row
        CANCELLED at its first step and ends itself).
        """
        ident = parse_id(extraction_id)
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "SELECT tenant, state, workflow_start_time, cancel_time, delete_requested_time FROM extractions"
                " WHERE id = $1 FOR UPDATE",
                ident,
            )
            if row is None or (tenant and row["tenant"] != tenant) or row["delete_requested_time"] is not None:
                raise NotFound(f"extraction {extraction_id} not found")
            if row["state"] in TERMINAL_STATES:
                pass
            elif row["workflow_start_time"] is None:
                await connection.execute(
                    "UPDATE extractions SET state = $2, stage = $3, cancel_time = now(), cancel_delivered_time = now(),"
                    " update_time = now() WHERE id = $1",
                    ident,
                    pb.STATE_CANCELLED,
                    pb.STAGE_DONE,
                )
                EXTRACTIONS.labels("CANCELLED").inc()
            elif row["cancel_time"] is None:
                await connection.execute(
                    "UPDATE extractions SET cancel_time = now(), update_time = now() WHERE id = $1", ident
                )
                await connection.execute("SELECT pg_notify($1, $2)", OUTBOX_CHANNEL, str(ident))
        log.info("cancel requested", extra={"extraction_id": extraction_id})
        extraction, _ = await self.get(extraction_id, with_clauses=False)
        return extraction

    async def complete(self, extraction_id: str, source_key: str) -> tuple[int, str]:
        """Store the clauses at source_key as rows plus a result JSON object; mark SUCCEEDED."""
        ident = parse_id(extraction_id)
        current, _ = await self.get(extraction_id, with_clauses=False, hidden=True)
        if current.state == pb.STATE_SUCCEEDED:
            async with self._pool.acquire() as connection:
                count = await connection.fetchval("SELECT count(*) FROM clauses WHERE extraction_id = $1", ident)
            return int(count), result_key(extraction_id)
        if current.state in TERMINAL_STATES:
            raise FailedPrecondition(
                f"extraction {extraction_id} is {pb.State.Name(current.state)}; it cannot be completed"
            )
        extracted = llm_pb2.ExtractedClauses.FromString(await self._objects.get(source_key))
        result = pb.Extraction()
        result.CopyFrom(current)
        result.state = pb.STATE_SUCCEEDED
        result.stage = pb.STAGE_DONE
        result.model = extracted.model
        result.usage.CopyFrom(extracted.usage)
        result.clauses.extend(extracted.clauses)
        key = result_key(extraction_id)
        await self._objects.put(
            key, json_format.MessageToJson(result, indent=1).encode(), content_type="application/json"
        )
        records = [
            (
                ident,
                ordinal,
                c.category,
                c.text,
                c.page_start,
                c.page_end,
                c.char_start,
                c.char_end,
                c.confidence,
                c.answer,
            )
            for ordinal, c in enumerate(extracted.clauses)
        ]
        async with self._pool.acquire() as connection, connection.transaction():
            state = await connection.fetchval("SELECT state FROM extractions WHERE id = $1 FOR UPDATE", ident)
            lost = state in TERMINAL_STATES  # to another completion, or to a cancel
            if not lost:
                await self._swap_clauses(connection, ident, records, extracted, key)
        if lost:
            if state != pb.STATE_SUCCEEDED:  # the result of a cancelled extraction must not survive it
                await self.discard_objects(extraction_id)
                raise FailedPrecondition(
                    f"extraction {extraction_id} is {pb.State.Name(state)}; it cannot be completed"
                )
            return len(records), key
        EXTRACTIONS.labels("SUCCEEDED").inc()
        log.info("extraction completed", extra={"extraction_id": extraction_id, "clauses": len(records)})
        return len(records), key

    async def _swap_clauses(
        self,
        connection: Any,
        ident: uuid.UUID,
        records: list[tuple[Any, ...]],
        extracted: llm_pb2.ExtractedClauses,
        key: str,
    ) -> None:
        await connection.execute("DELETE FROM clauses WHERE extraction_id = $1", ident)
        await connection.copy_records_to_table(
            "clauses",
            records=records,
            columns=[
                "extraction_id",
                "ordinal",
                "category",
                "text",
                "page_start",
                "page_end",
                "char_start",
                "char_end",
                "confidence",
                "answer",
            ],
        )
        await connection.execute(
            "UPDATE extractions SET state = $2, stage = $3, model = $4, result_key = $5,"
            " prompt_tokens = $6, completion_tokens = $7,"
            " error_code = NULL, error_message = NULL, update_time = now() WHERE id = $1",
            ident,
            pb.STATE_SUCCEEDED,
            pb.STAGE_DONE,
            extracted.model,
            key,
            extracted.usage.prompt_tokens,
            extracted.usage.completion_tokens,
        )


PROGRESS_FIELDS = ("pages_parsed", "pages_total", "chunks_done", "chunks_total")
MASKABLE = frozenset({"state", "stage", "page_count", "char_count", "error", "progress"}) | {
    f"progress.{name}" for name in PROGRESS_FIELDS
}


def _update_columns(
    state: int,
    stage: int,
    page_count: int,
    char_count: int,
    error: pb.ExtractionError | None,
    progress: pb.Progress | None,
    mask: Sequence[str],
) -> dict[str, object]:
    """The columns an UpdateExtraction writes, and their values; checks the request."""
    unknown = set(mask) - MASKABLE
    if unknown:
        raise InvalidArgument(f"update_mask: unknown paths {sorted(unknown)}")
    paths = (
        set(mask)
        if mask
        else {"state", "stage", "page_count", "char_count", "error"} | ({"progress"} if progress is not None else set())
    )
    columns: dict[str, object] = {}
    if "state" in paths:
        if state == pb.STATE_SUCCEEDED:
            raise InvalidArgument("use CompleteExtraction to mark an extraction SUCCEEDED")
        if state == pb.STATE_UNSPECIFIED:
            raise InvalidArgument("state is required")
        columns["state"] = state
    if "stage" in paths:
        if stage == pb.STAGE_UNSPECIFIED:
            raise InvalidArgument("stage is required")
        columns["stage"] = stage
    if "error" in paths:
        failed = error is not None and bool(error.code)
        columns["error_code"] = error.code if failed and error is not None else None
        columns["error_message"] = error.message if failed and error is not None else None
    if "page_count" in paths and page_count:  # 0: unknown, leaves it unchanged
        columns["page_count"] = page_count
    if "char_count" in paths and char_count:
        columns["char_count"] = char_count
    given = progress or pb.Progress()
    for name in PROGRESS_FIELDS:
        if "progress" in paths or f"progress.{name}" in paths:
            columns[name] = getattr(given, name)
    if not columns:
        raise InvalidArgument("nothing to update")
    return columns
