"""The `bench` stack profile: its own ports and data, up at the start of a run and down at the end."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from pathlib import Path

import grpc

from bench.loadgen import CHANNEL_OPTIONS
from clausework.pipeline import TERMINAL_STATES
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import PROFILES, SERVICES, Stack


def bench_stack() -> Stack:
    return Stack(PROFILES["bench"])


def fresh_up(stack: Stack) -> None:
    stack.down()  # leftovers of an interrupted run
    stack.destroy()
    stack.up()


def pids(stack: Stack) -> dict[str, int]:
    """Our processes and the infrastructure's, from .run/bench/pids."""
    found = {}
    for name in (*SERVICES, "temporal", "s3"):
        path = stack.pids / f"{name}.pid"
        if path.exists():
            found[name] = int(path.read_text().strip())
    return found


def _stat(pid: int | str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and everything in its process group: the
    stack starts each process in its own session, so the parser's forked parse children count too
    (living ones directly, finished ones through their parents' cutime/cstime)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(entry.name)
        if fields is not None and (int(entry.name) == pid or int(fields[2]) == pid):
            total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def postgres_cpu(stack: Stack) -> float:
    """CPU seconds of this stack's PostgreSQL: the postmaster (from its postmaster.pid) and its children."""
    try:
        postmaster = int((stack._pg_data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(entry.name)
        if fields is not None and (int(entry.name) == postmaster or int(fields[1]) == postmaster):
            total += sum(int(x) for x in fields[11:13])
    return total / os.sysconf("SC_CLK_TCK")


async def wait_all(address: str, ids: Iterable[str], timeout: float, poll: float = 0.5) -> dict[str, pb.Extraction]:
    """Poll GetExtraction until every id is terminal (or `timeout`); returns the last answer of each."""
    pending = set(ids)
    done: dict[str, pb.Extraction] = {}
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = extraction_pb2_grpc.ExtractionServiceStub(channel)
        limit = asyncio.Semaphore(8)

        async def check(extraction_id: str) -> None:
            async with limit:
                answer = await stub.GetExtraction(pb.GetExtractionRequest(id=extraction_id), timeout=30)
            if answer.state in TERMINAL_STATES:
                done[extraction_id] = answer
                pending.discard(extraction_id)

        while pending and time.monotonic() < deadline:
            await asyncio.gather(*(check(i) for i in list(pending)))
            if pending:
                await asyncio.sleep(poll)
    return done


async def submit_and_wait(address: str, document: bytes, timeout: float = 300) -> tuple[float, pb.Extraction]:
    """One extraction, submit → terminal, timed (polling every 20 ms, which bounds the error)."""
    import uuid

    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = extraction_pb2_grpc.ExtractionServiceStub(channel)
        began = time.perf_counter()
        created = await stub.CreateExtraction(
            pb.CreateExtractionRequest(content=document, filename="bench.pdf", request_id=str(uuid.uuid4())),
            timeout=60,
        )
        deadline = began + timeout
        while True:
            answer = await stub.GetExtraction(pb.GetExtractionRequest(id=created.id), timeout=30)
            if answer.state in TERMINAL_STATES or time.perf_counter() > deadline:
                return time.perf_counter() - began, answer
            await asyncio.sleep(0.02)
