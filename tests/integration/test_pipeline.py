"""The whole pipeline on the real stack: upload → Temporal workflow → parser → llm → store."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TypeAlias

import asyncpg
import pytest

from clausework.pipeline.payloads import parsed_key
from contracts.internal.v1 import document_pb2
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from services.store.extractions import DEFAULT_TENANT, document_key, result_key
from services.store.objects import ObjectStore
from tests import pdfs
from tests.conftest import ROOT, wait_terminal

SAMPLE = ROOT / "samples" / "sample-contract.pdf"
SAMPLE_LABELS = ROOT / "samples" / "sample-contract.labels.json"
CATEGORIES = {c["name"] for c in json.loads((ROOT / "clausework/llm/categories.json").read_text())}

Gateway: TypeAlias = "extraction_pb2_grpc.ExtractionServiceAsyncStub"


def words(text: str) -> set[str]:
    return {w.strip(".,;:()\"'").lower() for w in text.split()} - {"", "a", "an", "the"}


def jaccard(a: str, b: str) -> float:
    x, y = words(a), words(b)
    return len(x & y) / len(x | y) if x | y else 0.0


async def extract(gateway: Gateway, content: bytes, filename: str = "contract.pdf") -> pb.Extraction:
    created = await gateway.CreateExtraction(
        pb.CreateExtractionRequest(content=content, filename=filename, request_id=str(uuid.uuid4())), timeout=30
    )
    assert created.state == pb.STATE_PENDING
    assert created.id
    return await wait_terminal(gateway, created.id)


async def check_stored(extraction: pb.Extraction, db: asyncpg.Pool, objects: ObjectStore) -> None:
    """Rows in PostgreSQL and objects in S3 agree with what the API returned; offsets are verbatim."""
    parsed = document_pb2.ParsedDocument.FromString(await objects.get(parsed_key(extraction.id)))
    assert len(parsed.text) == extraction.document.char_count
    assert len(parsed.pages) == extraction.document.page_count
    for clause in extraction.clauses:
        assert clause.category in CATEGORIES
        assert clause.text == parsed.text[clause.char_start : clause.char_end]
        assert 0.0 <= clause.confidence <= 1.0
        page_start = next(p for p in parsed.pages if p.char_start <= clause.char_start <= p.char_end + 2)
        assert clause.page_start == page_start.number
        assert clause.page_start <= clause.page_end <= extraction.document.page_count
    async with db.acquire() as connection:
        row = await connection.fetchrow("SELECT * FROM extractions WHERE id = $1", uuid.UUID(extraction.id))
        rows = await connection.fetch(
            "SELECT category, text, char_start FROM clauses WHERE extraction_id = $1 ORDER BY ordinal",
            uuid.UUID(extraction.id),
        )
    assert row is not None
    assert row["state"] == pb.STATE_SUCCEEDED
    assert row["result_key"] == result_key(extraction.id)
    assert [(r["category"], r["text"], r["char_start"]) for r in rows] == [
        (c.category, c.text, c.char_start) for c in extraction.clauses
    ]
    result = json.loads(await objects.get(result_key(extraction.id)))
    assert result["id"] == extraction.id
    assert result["state"] == "STATE_SUCCEEDED"
    assert len(result.get("clauses", [])) == len(extraction.clauses)
    assert await objects.exists(document_key(DEFAULT_TENANT, extraction.document.sha256))


async def test_synthetic_contract_clauses_offsets_and_storage(
    gateway: Gateway, db: asyncpg.Pool, objects: ObjectStore
) -> None:
    content = pdfs.contract_pdf()
    extraction = await extract(gateway, content, "msa.pdf")

    assert extraction.state == pb.STATE_SUCCEEDED, extraction.error
    assert extraction.stage == pb.STAGE_DONE
    assert extraction.document.page_count == 3
    assert extraction.document.filename == "msa.pdf"
    assert extraction.document.size_bytes == len(content)
    assert extraction.model
    governing = [c for c in extraction.clauses if c.category == "Governing Law"]
    assert governing, [c.category for c in extraction.clauses]
    best = max(governing, key=lambda c: jaccard(c.text, pdfs.GOVERNING_LAW))
    assert jaccard(best.text, pdfs.GOVERNING_LAW) >= 0.5
    assert best.page_start == 2
    assert "new york" in best.answer.lower()
    await check_stored(extraction, db, objects)


@pytest.mark.skipif(not SAMPLE.exists(), reason="bundled sample missing")
async def test_bundled_sample_contract_finds_labelled_clauses(
    gateway: Gateway, db: asyncpg.Pool, objects: ObjectStore
) -> None:
    gold = json.loads(SAMPLE_LABELS.read_text())["clauses"]
    extraction = await extract(gateway, SAMPLE.read_bytes(), SAMPLE.name)

    assert extraction.state == pb.STATE_SUCCEEDED, extraction.error
    await check_stored(extraction, db, objects)
    found = {c.category for c in extraction.clauses}
    detected = found & set(gold)
    # The CUAD labels of this contract: most of its clause categories must be found.
    assert len(detected) >= 0.6 * len(gold), (sorted(found), sorted(gold))
    matched = {
        c.category
        for c in extraction.clauses
        if any(jaccard(c.text, context) >= 0.5 for context in gold.get(c.category, {}).get("contexts", []))
    }
    assert len(matched) >= 0.4 * len(gold), (sorted(matched), sorted(gold))


async def test_same_request_id_returns_the_same_extraction(gateway: Gateway, db: asyncpg.Pool) -> None:
    request = pb.CreateExtractionRequest(content=pdfs.contract_pdf(), filename="a.pdf", request_id=str(uuid.uuid4()))
    first = await gateway.CreateExtraction(request, timeout=30)
    second = await gateway.CreateExtraction(request, timeout=30)
    assert second.id == first.id
    async with db.acquire() as connection:
        count = await connection.fetchval("SELECT count(*) FROM extractions WHERE request_id = $1", request.request_id)
    assert count == 1
    assert (await wait_terminal(gateway, first.id)).state == pb.STATE_SUCCEEDED


def test_sample_is_bundled_with_attribution() -> None:
    assert SAMPLE.exists() and SAMPLE_LABELS.exists()
    assert "CC BY 4.0" in (ROOT / "samples" / "README.md").read_text()
    assert Path(SAMPLE).stat().st_size < 1_000_000
