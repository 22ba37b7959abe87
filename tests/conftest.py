"""Fixtures. Tests under tests/integration (and those marked `integration`) run against the real local
stack — Temporal, PostgreSQL, SeaweedFS S3 and every service as its own process — started once per
session on the `test` profile's ports and stopped at the end."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from temporalio.client import Client

from clausework.pipeline import TERMINAL_STATES
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import PROFILES, Stack
from services.store.objects import ObjectStore
from training.data import DEFAULT_CUAD as CUAD

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid or "tests/drills/" in item.nodeid:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # CLAUSEWORK_TEST_PROFILE=test2 lets a second test session run beside the first on its own stack.
    stack = Stack(PROFILES[os.environ.get("CLAUSEWORK_TEST_PROFILE", "test")])
    stack.down()  # leftovers of an interrupted run
    stack.destroy()
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
async def gateway(stack: Stack) -> AsyncIterator[extraction_pb2_grpc.ExtractionServiceAsyncStub]:
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024), ("grpc.max_receive_message_length", -1)]
    async with grpc.aio.insecure_channel(stack.gateway_address, options=options) as channel:
        yield extraction_pb2_grpc.ExtractionServiceStub(channel)


@pytest.fixture(scope="session")
async def db(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def objects(stack: Stack) -> AsyncIterator[ObjectStore]:
    async with stack.object_store() as store:
        yield store


@pytest.fixture(scope="session")
async def temporal(stack: Stack) -> Client:
    return await Client.connect(stack.env()["TEMPORAL_ADDRESS"])


async def wait_terminal(
    gateway: extraction_pb2_grpc.ExtractionServiceAsyncStub, extraction_id: str, timeout: float = 120
) -> pb.Extraction:
    deadline = time.monotonic() + timeout
    while True:
        extraction = await gateway.GetExtraction(pb.GetExtractionRequest(id=extraction_id), timeout=10)
        if extraction.state in TERMINAL_STATES:
            return extraction
        if time.monotonic() > deadline:
            raise AssertionError(f"extraction {extraction_id} still {pb.State.Name(extraction.state)}")
        await asyncio.sleep(0.2)


def cuad_available() -> bool:
    return (CUAD / "labels.jsonl").exists() and os.access(CUAD / "pdf", os.R_OK)


async def wait_quiet(stack: Stack, timeout: float = 120) -> None:
    """Until no extraction is PENDING or RUNNING (work of earlier tests landing later would change what a
    test counts); after `timeout`, go on anyway, saying so."""
    deadline = time.monotonic() + timeout
    while True:
        connection = await asyncpg.connect(stack.database_url)
        try:
            busy = await connection.fetchval(
                "SELECT count(*) FROM extractions WHERE state = ANY($1::smallint[])",
                [pb.STATE_PENDING, pb.STATE_RUNNING],
            )
        finally:
            await connection.close()
        if not busy or time.monotonic() > deadline:
            if busy:
                print(f"{busy} extractions of earlier tests are still not finished; going on anyway")
            return
        await asyncio.sleep(1)
