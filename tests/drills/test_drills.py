"""Fault drills: a batch of documents in flight, one component fails, and nothing is lost or doubled.

Each drill submits a batch of distinct contracts, waits until the pipeline is busy with them, breaks one
component (SIGKILL, a 20 s stop, or a restart of the infrastructure), and then requires every document to
finish SUCCEEDED with exactly one extraction row, one result object and its two claim-check objects, and
no object the batch created left unreferenced. Run them with `make drills`; `make test` runs them too.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeAlias

import asyncpg
import grpc
import pytest

from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import Stack
from services.store.objects import ObjectStore
from tests import pdfs
from tests.conftest import TERMINAL

pytestmark = [pytest.mark.drill, pytest.mark.timeout(900)]

Gateway: TypeAlias = "extraction_pb2_grpc.ExtractionServiceAsyncStub"

BATCH = int(os.environ.get("DRILL_BATCH", "50"))
OUTAGE_SECONDS = float(os.environ.get("DRILL_OUTAGE_SECONDS", "20"))
# Transient answers while a component is down; anything else is a real failure of the drill.
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass(frozen=True)
class Drill:
    name: str
    fault: Callable[[Stack], None]


def outage(name: str) -> Callable[[Stack], None]:
    def fault(stack: Stack) -> None:
        stack.stop(name)
        time.sleep(OUTAGE_SECONDS)
        stack.start(name)

    return fault


def sigkill_worker(stack: Stack) -> None:
    stack.kill("worker")
    time.sleep(2)
    stack.start("worker")


def restart(name: str) -> Callable[[Stack], None]:
    def fault(stack: Stack) -> None:
        stack.stop(name)
        stack.start(name)

    return fault


DRILLS = [
    Drill("worker-sigkill", sigkill_worker),
    Drill("parser-down-20s", outage("parser")),
    Drill("llm-down-20s", outage("llm")),
    Drill("store-down-20s", outage("store")),
    Drill("postgres-restart", restart("postgres")),
    Drill("s3-restart", restart("s3")),
    Drill("temporal-restart", restart("temporal")),
]


def unique_contract(tag: str) -> bytes:
    """The test contract with a unique reference line: distinct bytes, so no result is reused."""
    pages = list(pdfs.CONTRACT_PAGES)
    pages[0] = f"Reference {tag}\n\n{pages[0]}"
    return pdfs.text_pdf(pages)


async def retrying(call: Callable[[], Awaitable[pb.Extraction]], deadline: float) -> pb.Extraction:
    """One gateway call, retried through the outage (the gateway answers UNAVAILABLE meanwhile)."""
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() not in TRANSIENT or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def submit_batch(gateway: Gateway, drill: str) -> list[str]:
    contents = [unique_contract(f"{drill}-{n}-{uuid.uuid4()}") for n in range(BATCH)]

    async def submit(content: bytes) -> str:
        created = await gateway.CreateExtraction(
            pb.CreateExtractionRequest(content=content, filename="drill.pdf", request_id=str(uuid.uuid4())),
            timeout=60,
        )
        return created.id

    return list(await asyncio.gather(*(submit(c) for c in contents)))


async def wait_until_busy(gateway: Gateway, ids: list[str], timeout: float = 120) -> None:
    """Until some document has reached an activity and most are not finished: the fault hits mid-run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stages = [(await gateway.GetExtraction(pb.GetExtractionRequest(id=i), timeout=10)).stage for i in ids[:10]]
        if any(s >= pb.STAGE_PARSING for s in stages):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the batch never started")


async def wait_all(gateway: Gateway, ids: list[str], timeout: float) -> dict[str, pb.Extraction]:
    deadline = time.monotonic() + timeout
    done: dict[str, pb.Extraction] = {}
    while len(done) < len(ids):
        for extraction_id in ids:
            if extraction_id in done:
                continue
            request = pb.GetExtractionRequest(id=extraction_id)
            extraction = await retrying(functools.partial(gateway.GetExtraction, request, timeout=10), deadline)
            if extraction.state in TERMINAL:
                done[extraction_id] = extraction
        if time.monotonic() > deadline:
            pending = [i for i in ids if i not in done]
            raise AssertionError(f"{len(pending)} of {len(ids)} not finished, e.g. {pending[:3]}")
        await asyncio.sleep(0.5)
    return done


async def check_nothing_lost_or_doubled(
    outcomes: dict[str, pb.Extraction], before: set[str], stack: Stack, objects: ObjectStore
) -> None:
    failed = {i: (pb.State.Name(e.state), e.error.code) for i, e in outcomes.items() if e.state != pb.STATE_SUCCEEDED}
    assert not failed, failed
    ids = [uuid.UUID(i) for i in outcomes]
    connection = await asyncpg.connect(stack.database_url)  # a fresh one: PostgreSQL may have restarted
    try:
        rows = await connection.fetch(
            "SELECT e.id, e.result_key, d.object_key, (SELECT count(*) FROM clauses c WHERE c.extraction_id = e.id)"
            " AS clause_rows FROM extractions e JOIN documents d ON d.sha256 = e.document_sha256"
            " WHERE e.id = ANY($1::uuid[])",
            ids,
        )
    finally:
        await connection.close()
    assert len(rows) == len(ids), "exactly one extraction row per document"
    for row in rows:
        assert row["clause_rows"] == len(outcomes[str(row["id"])].clauses)
        assert row["result_key"] == f"results/{row['id']}.json"

    expected = set()
    for row in rows:
        expected |= {
            row["object_key"],
            row["result_key"],
            f"extractions/{row['id']}/parsed.pb",
            f"extractions/{row['id']}/clauses.pb",
        }
    after = set(await objects.keys())
    created = after - before
    assert expected <= after, f"missing objects: {sorted(expected - after)[:5]}"
    orphans = created - expected
    assert not orphans, f"objects nobody references: {sorted(orphans)[:5]}"


@pytest.mark.parametrize("drill", DRILLS, ids=[d.name for d in DRILLS])
async def test_drill(drill: Drill, stack: Stack, gateway: Gateway, objects: ObjectStore) -> None:
    before = set(await objects.keys())
    ids = await submit_batch(gateway, drill.name)
    await wait_until_busy(gateway, ids)
    states = [(await gateway.GetExtraction(pb.GetExtractionRequest(id=i), timeout=10)).state for i in ids]
    assert sum(s not in TERMINAL for s in states) >= len(ids) // 2, "the fault must hit a batch still in flight"
    try:
        await asyncio.to_thread(drill.fault, stack)
    finally:
        await asyncio.to_thread(stack.up)  # whatever the drill did, the next one starts from a whole stack
    outcomes = await wait_all(gateway, ids, timeout=600)
    await check_nothing_lost_or_doubled(outcomes, before, stack, objects)
