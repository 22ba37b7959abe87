"""Extraction state in PostgreSQL, payloads in object storage — and the rules that keep them consistent.

Invariants:
- an object is written before any row points at it, so a row never references a missing object;
- terminal states (SUCCEEDED, FAILED, CANCELLED) are never left, so retried or late calls are harmless;
- completing an extraction writes its result object under a key derived from its id and then swaps its
  clause rows in one transaction, so any number of retries leaves exactly one result.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from google.protobuf import json_format, timestamp_pb2

from contracts.internal.v1 import llm_pb2
from contracts.v1 import extraction_pb2 as pb
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.store.objects import ObjectStore

log = logging.getLogger(__name__)

TERMINAL_STATES = (pb.STATE_SUCCEEDED, pb.STATE_FAILED, pb.STATE_CANCELLED)
MAX_REQUEST_ID_CHARS = 128
MAX_FILENAME_CHARS = 255

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
        raise InvalidArgument(f"invalid extraction id {extraction_id!r}: expected a UUID") from exc


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


class ExtractionStore:
    def __init__(self, pool: asyncpg.Pool, objects: ObjectStore) -> None:
        self._pool = pool
        self._objects = objects

    async def create(self, content: bytes, filename: str, request_id: str) -> Created:
        """Store the PDF (once per content) and a PENDING extraction; idempotent per request_id."""
        if not content:
            raise InvalidArgument("content is empty")
        if len(request_id) > MAX_REQUEST_ID_CHARS:
            raise InvalidArgument(f"request_id is longer than {MAX_REQUEST_ID_CHARS} characters")
        if len(filename) > MAX_FILENAME_CHARS:
            raise InvalidArgument(f"filename is longer than {MAX_FILENAME_CHARS} characters")
        if request_id and (existing := await self._by_request_id(request_id)) is not None:
            return existing
        sha256 = hashlib.sha256(content).hexdigest()
        key = document_key(sha256)
        async with self._pool.acquire() as connection:
            known = await connection.fetchval("SELECT 1 FROM documents WHERE sha256 = $1", sha256)
        if not known:
            await self._objects.put(key, content, content_type="application/pdf")
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO documents (sha256, size_bytes, object_key) VALUES ($1, $2, $3)"
                " ON CONFLICT (sha256) DO NOTHING",
                sha256,
                len(content),
                key,
            )
            inserted = await connection.fetchval(
                "INSERT INTO extractions (id, request_id, document_sha256, filename, state, stage)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (request_id) DO NOTHING RETURNING id",
                uuid.uuid4(),
                request_id or None,
                sha256,
                filename,
                pb.STATE_PENDING,
                pb.STAGE_QUEUED,
            )
        if inserted is None:  # a concurrent call with the same request_id won the race
            existing = await self._by_request_id(request_id)
            assert existing is not None
            return existing
        extraction, _ = await self.get(str(inserted), with_clauses=False)
        log.info("extraction created", extra={"extraction_id": str(inserted), "size_bytes": len(content)})
        return Created(extraction, True, key)

    async def _by_request_id(self, request_id: str) -> Created | None:
        async with self._pool.acquire() as connection:
            row = await connection.fetchrow(_SELECT + " WHERE e.request_id = $1", request_id)
        if row is None:
            return None
        extraction, key = await self.get(str(row["id"]))
        return Created(extraction, False, key)

    async def get(self, extraction_id: str, *, with_clauses: bool = True) -> tuple[pb.Extraction, str]:
        """The extraction (with clauses once SUCCEEDED) and its document's object key."""
        ident = parse_id(extraction_id)
        async with self._pool.acquire() as connection:
            row = await connection.fetchrow(_SELECT + " WHERE e.id = $1", ident)
            if row is None:
                raise NotFound(f"extraction {extraction_id} not found")
            clauses = None
            if with_clauses and row["state"] == pb.STATE_SUCCEEDED:
                clauses = await connection.fetch(
                    "SELECT * FROM clauses WHERE extraction_id = $1 ORDER BY ordinal", ident
                )
        return _to_message(row, clauses), str(row["object_key"])

    async def update(
        self,
        extraction_id: str,
        *,
        state: int,
        stage: int,
        page_count: int = 0,
        char_count: int = 0,
        error: pb.ExtractionError | None = None,
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
            if sha256 is not None and (page_count or char_count):
                await connection.execute(
                    "UPDATE documents SET page_count = $2, char_count = $3 WHERE sha256 = $1",
                    sha256,
                    page_count,
                    char_count,
                )
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
                " error_code = NULL, error_message = NULL, update_time = now() WHERE id = $1",
                ident,
                pb.STATE_SUCCEEDED,
                pb.STAGE_DONE,
                extracted.model,
                key,
            )
        log.info("extraction completed", extra={"extraction_id": extraction_id, "clauses": len(records)})
        return len(records), key
