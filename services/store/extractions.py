"""Extraction state in PostgreSQL, payloads in object storage — and the rules that keep them consistent.

Invariants:
- an object is written before any row points at it, so a row never references a missing object;
- terminal states (SUCCEEDED, FAILED, CANCELLED) are never left, so retried or late calls are harmless;
- completing an extraction writes its result object under a key derived from its id and then swaps its
  clause rows in one transaction, so any number of retries leaves exactly one result.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from google.protobuf import json_format, timestamp_pb2
from prometheus_client import Counter

from contracts.internal.v1 import llm_pb2
from contracts.v1 import extraction_pb2 as pb
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.store.changes import ChangeFeed
from services.store.objects import ObjectStore

log = logging.getLogger(__name__)

TERMINAL_STATES = (pb.STATE_SUCCEEDED, pb.STATE_FAILED, pb.STATE_CANCELLED)
MAX_REQUEST_ID_CHARS = 128
MAX_FILENAME_CHARS = 255
DEFAULT_TENANT = "default"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

# Each transition counted once, by the replica that made it (the row changed): sum over replicas.
EXTRACTIONS = Counter(
    "clausework_extractions",
    "Extractions that entered a state: PENDING when created, then SUCCEEDED, FAILED or CANCELLED.",
    ["state"],
)

_SELECT = """
SELECT e.*, d.size_bytes, d.page_count, d.char_count, d.object_key
FROM extractions e JOIN documents d ON d.sha256 = e.document_sha256
"""


def document_key(sha256: str) -> str:
    return f"documents/{sha256[:2]}/{sha256}.pdf"


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
class Upload:
    """A PDF to register: its bytes, or an object already written under uploads/ by a streaming gateway."""

    content: bytes = b""
    upload_key: str = ""
    sha256: str = ""
    size_bytes: int = 0


def _page_token(row: asyncpg.Record) -> str:
    raw = f"{row['create_time'].isoformat()}|{row['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_page_token(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        stamp, ident = raw.split("|")
        return datetime.fromisoformat(stamp), uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("invalid page_token") from exc


class ExtractionStore:
    def __init__(self, pool: asyncpg.Pool, objects: ObjectStore) -> None:
        self._pool = pool
        self._objects = objects

    async def create(
        self, upload: Upload, filename: str, request_id: str, tenant: str = DEFAULT_TENANT, reprocess: bool = False
    ) -> Created:
        """Store the PDF (once per content) and a PENDING extraction.

        Idempotent per (tenant, request_id); identical bytes already extracted for the tenant return that
        extraction unless `reprocess`.
        """
        if len(request_id) > MAX_REQUEST_ID_CHARS:
            raise InvalidArgument(f"request_id is longer than {MAX_REQUEST_ID_CHARS} characters")
        if len(filename) > MAX_FILENAME_CHARS:
            raise InvalidArgument(f"filename is longer than {MAX_FILENAME_CHARS} characters")
        tenant = tenant or DEFAULT_TENANT
        if upload.upload_key:
            if not upload.upload_key.startswith("uploads/") or len(upload.sha256) != 64 or upload.size_bytes <= 0:
                raise InvalidArgument("upload_key must name an uploads/ object, with its sha256 and size")
            sha256, size = upload.sha256, upload.size_bytes
        elif upload.content:
            sha256, size = hashlib.sha256(upload.content).hexdigest(), len(upload.content)
        else:
            raise InvalidArgument("content is empty")
        try:
            if request_id and (existing := await self._by_request_id(tenant, request_id)) is not None:
                return existing
            if not reprocess and (existing := await self._finished(tenant, sha256)) is not None:
                return existing
            key = document_key(sha256)
            async with self._pool.acquire() as connection:
                known = await connection.fetchval("SELECT 1 FROM documents WHERE sha256 = $1", sha256)
            if not known:
                if upload.upload_key:
                    await self._objects.copy(upload.upload_key, key)
                else:
                    await self._objects.put(key, upload.content, content_type="application/pdf")
            inserted = await self._insert(tenant, request_id, sha256, size, key, filename)
        finally:
            if upload.upload_key:
                await self._objects.delete(upload.upload_key)
        if inserted is None:  # a concurrent call with the same request_id won the race
            existing = await self._by_request_id(tenant, request_id)
            assert existing is not None
            return existing
        EXTRACTIONS.labels("PENDING").inc()
        extraction, _ = await self.get(str(inserted), with_clauses=False)
        log.info("extraction created", extra={"extraction_id": str(inserted), "size_bytes": size})
        return Created(extraction, True, key)

    async def _insert(
        self, tenant: str, request_id: str, sha256: str, size: int, key: str, filename: str
    ) -> uuid.UUID | None:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO documents (sha256, size_bytes, object_key) VALUES ($1, $2, $3)"
                " ON CONFLICT (sha256) DO NOTHING",
                sha256,
                size,
                key,
            )
            inserted: uuid.UUID | None = await connection.fetchval(
                "INSERT INTO extractions (id, tenant, request_id, document_sha256, filename, state, stage)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, request_id) DO NOTHING RETURNING id",
                uuid.uuid4(),
                tenant,
                request_id or None,
                sha256,
                filename,
                pb.STATE_PENDING,
                pb.STAGE_QUEUED,
            )
        return inserted

    async def _by_request_id(self, tenant: str, request_id: str) -> Created | None:
        async with self._pool.acquire() as connection:
            row = await connection.fetchrow(_SELECT + " WHERE e.tenant = $1 AND e.request_id = $2", tenant, request_id)
        if row is None:
            return None
        extraction, key = await self.get(str(row["id"]))
        return Created(extraction, False, key)

    async def _finished(self, tenant: str, sha256: str) -> Created | None:
        """The newest SUCCEEDED extraction of these bytes for this tenant, to reuse instead of redoing."""
        async with self._pool.acquire() as connection:
            ident = await connection.fetchval(
                "SELECT id FROM extractions WHERE tenant = $1 AND document_sha256 = $2 AND state = $3"
                " ORDER BY create_time DESC LIMIT 1",
                tenant,
                sha256,
                pb.STATE_SUCCEEDED,
            )
        if ident is None:
            return None
        extraction, key = await self.get(str(ident))
        return Created(extraction, False, key)

    async def list_page(
        self, tenant: str, page_size: int, page_token: str, state: int = pb.STATE_UNSPECIFIED
    ) -> tuple[list[pb.Extraction], str]:
        """One page of a tenant's extractions, newest first; keyset pagination, stable under inserts."""
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        conditions: list[str] = ["e.tenant = $1"]
        args: list[object] = [tenant or DEFAULT_TENANT]
        if state:
            if state not in pb.State.values():
                raise InvalidArgument(f"unknown state {state}")
            args.append(state)
            conditions.append(f"e.state = ${len(args)}")
        if page_token:
            stamp, ident = _parse_page_token(page_token)
            args += [stamp, ident]
            conditions.append(f"(e.create_time, e.id) < (${len(args) - 1}, ${len(args)})")
        query = (
            _SELECT + " WHERE " + " AND ".join(conditions) + f" ORDER BY e.create_time DESC, e.id DESC LIMIT {size + 1}"
        )
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(query, *args)
        more = len(rows) > size
        rows = rows[:size]
        return [_to_message(row) for row in rows], (_page_token(rows[-1]) if more else "")

    async def get(
        self, extraction_id: str, *, tenant: str = "", with_clauses: bool = True
    ) -> tuple[pb.Extraction, str]:
        """The extraction (with clauses once SUCCEEDED) and its document's object key.

        With `tenant`, another tenant's extraction is NOT_FOUND: its existence is not revealed.
        """
        ident = parse_id(extraction_id)
        async with self._pool.acquire() as connection:
            row = await connection.fetchrow(_SELECT + " WHERE e.id = $1", ident)
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
    ) -> pb.Extraction:
        """Move to state/stage unless already terminal; a no-op on terminal rows (safe to retry)."""
        ident = parse_id(extraction_id)
        if state == pb.STATE_SUCCEEDED:
            raise InvalidArgument("use CompleteExtraction to mark an extraction SUCCEEDED")
        if state == pb.STATE_UNSPECIFIED or stage == pb.STAGE_UNSPECIFIED:
            raise InvalidArgument("state and stage are required")
        async with self._pool.acquire() as connection, connection.transaction():
            sha256 = await connection.fetchval(
                "UPDATE extractions SET state = $2, stage = $3, error_code = $4, error_message = $5,"
                " update_time = now() WHERE id = $1 AND state <> ALL($6::smallint[]) RETURNING document_sha256",
                ident,
                state,
                stage,
                error.code if error is not None and error.code else None,
                error.message if error is not None and error.code else None,
                list(TERMINAL_STATES),
            )
            if sha256 is not None and progress is not None:
                await connection.execute(
                    "UPDATE extractions SET pages_parsed = $2, pages_total = $3, chunks_done = $4, chunks_total = $5"
                    " WHERE id = $1",
                    ident,
                    progress.pages_parsed,
                    progress.pages_total,
                    progress.chunks_done,
                    progress.chunks_total,
                )
            if sha256 is not None and (page_count or char_count):
                await connection.execute(
                    "UPDATE documents SET page_count = $2, char_count = $3 WHERE sha256 = $1",
                    sha256,
                    page_count,
                    char_count,
                )
        if sha256 is not None and state in TERMINAL_STATES:
            EXTRACTIONS.labels(pb.State.Name(state).removeprefix("STATE_")).inc()  # type: ignore[arg-type]
        extraction, _ = await self.get(extraction_id, with_clauses=False)
        return extraction

    async def complete(self, extraction_id: str, source_key: str) -> tuple[int, str]:
        """Store the clauses at source_key as rows plus a result JSON object; mark SUCCEEDED."""
        ident = parse_id(extraction_id)
        current, _ = await self.get(extraction_id, with_clauses=False)
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
            if state in TERMINAL_STATES:  # lost a race with another completion or a cancel
                return len(records), key
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
        EXTRACTIONS.labels("SUCCEEDED").inc()
        log.info("extraction completed", extra={"extraction_id": extraction_id, "clauses": len(records)})
        return len(records), key
