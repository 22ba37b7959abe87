"""The `bench` stack profile: its own ports and data, up at the start of a run and down at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator
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


def pids(stack: Stack, extra: Iterable[str] = ()) -> dict[str, int]:
    """Our processes and the infrastructure's (and `extra` replicas, if running), from the stack's pids."""
    found = {}
    for name in (*SERVICES, *extra, "temporal", "s3"):
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


# Streams per channel of a Watcher: under the gateway's max_concurrent_streams (100 per connection), so
# no watch waits for a free stream.
WATCHES_PER_CHANNEL = 50
# Pause before re-opening a watch the server ended early (UNAVAILABLE: a connection aged out, a restart).
REWATCH_SECONDS = 0.2


class Watcher:
    """Waits for extractions to end without polling: one WatchExtraction stream per id, opened by
    `watch` as soon as the id is known and ending at a terminal state. The gateway relays the store's
    LISTEN/NOTIFY-driven stream, so the stack spends on the wait what any client awaiting its result
    would, instead of answering a GetExtraction per id per poll interval."""

    def __init__(self, address: str, timeout: float) -> None:
        self._address = address
        self._deadline = time.monotonic() + timeout
        self._channels: list[grpc.aio.Channel] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.done: dict[str, pb.Extraction] = {}

    async def __aenter__(self) -> Watcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(channel.close(None) for channel in self._channels))

    def _stub(self) -> extraction_pb2_grpc.ExtractionServiceAsyncStub:
        if len(self._tasks) % WATCHES_PER_CHANNEL == 0:
            # A connection of its own (no global subchannel sharing), apart from the load generator's.
            options = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
            self._channels.append(grpc.aio.insecure_channel(self._address, options=options))
        return extraction_pb2_grpc.ExtractionServiceStub(self._channels[-1])

    def watch(self, extraction_id: str) -> None:
        """Start watching `extraction_id`; its last answer lands in `done` once terminal."""
        stub = self._stub()
        self._tasks.append(asyncio.create_task(self._follow(stub, extraction_id)))

    async def _follow(self, stub: extraction_pb2_grpc.ExtractionServiceAsyncStub, extraction_id: str) -> None:
        last = await watch_until_terminal(stub, extraction_id, self._deadline)
        if last is not None:
            self.done[extraction_id] = last

    async def wait(self) -> dict[str, pb.Extraction]:
        """Every watched id's terminal answer (those not terminal by the deadline are missing)."""
        await asyncio.gather(*self._tasks)
        return self.done


async def watch_until_terminal(
    stub: extraction_pb2_grpc.ExtractionServiceAsyncStub, extraction_id: str, deadline: float
) -> pb.Extraction | None:
    """The extraction's terminal answer, from WatchExtraction (re-opened if the server ends the stream
    early: its first message is the state now, so nothing is missed); None at the deadline."""
    while (remaining := deadline - time.monotonic()) > 0:
        last: pb.Extraction | None = None
        try:
            # Read to the stream's own end (just after the terminal message): leaving early would cancel
            # the call, which the gateway and store would count and log as CANCELLED.
            async for update in stub.WatchExtraction(pb.WatchExtractionRequest(id=extraction_id), timeout=remaining):
                last = update
            if last is not None and last.state in TERMINAL_STATES:
                return last
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return None
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        await asyncio.sleep(REWATCH_SECONDS)
    return None


async def wait_all(address: str, ids: Iterable[str], timeout: float) -> dict[str, pb.Extraction]:
    """Watch ids known already until each is terminal (or `timeout`); returns the terminal answers."""
    async with Watcher(address, timeout) as watcher:
        for extraction_id in ids:
            watcher.watch(extraction_id)
        return await watcher.wait()


async def submit_and_wait(address: str, document: bytes, timeout: float = 300) -> tuple[float, pb.Extraction | None]:
    """One extraction, submit → terminal, timed to the terminal message of its watch (None: timed out)."""
    import uuid

    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = extraction_pb2_grpc.ExtractionServiceStub(channel)
        began = time.perf_counter()
        created = await stub.CreateExtraction(
            pb.CreateExtractionRequest(content=document, filename="bench.pdf", request_id=str(uuid.uuid4())),
            timeout=60,
        )
        answer = await watch_until_terminal(stub, created.id, time.monotonic() + timeout)
        return time.perf_counter() - began, answer


@contextlib.contextmanager
def frozen(stack: Stack, names: Iterable[str]) -> Iterator[None]:
    """SIGSTOP these stack processes for the duration (SIGCONT after), e.g. so that rows an in-process
    loop writes straight into PostgreSQL are not also picked up by the stack's outbox relay."""
    stopped = [pid for name, pid in pids(stack).items() if name in set(names)]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
