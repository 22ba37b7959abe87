"""The submit load generator: N concurrent grpc.aio clients, each on its own channel, each sending M
CreateExtraction calls back to back with a unique request_id (and unique bytes)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from bench.common import percentile, unique
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc

CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 * 1024 * 1024), ("grpc.max_receive_message_length", -1)]


@dataclass
class LoadResult:
    clients: int
    latencies: list[float] = field(default_factory=list)  # seconds, successful calls only
    errors: dict[str, int] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    wall: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000 if self.latencies else float("nan")


async def _client(
    address: str,
    document: bytes,
    requests: int,
    result: LoadResult,
    start: asyncio.Event,
    on_id: Callable[[str], None] | None,
) -> None:
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        stub = extraction_pb2_grpc.ExtractionServiceStub(channel)
        await start.wait()
        for _ in range(requests):
            request = pb.CreateExtractionRequest(
                content=unique(document), filename="bench.pdf", request_id=str(uuid.uuid4())
            )
            began = time.perf_counter()
            try:
                answer = await stub.CreateExtraction(request, timeout=60)
            except grpc.aio.AioRpcError as error:
                result.errors[error.code().name] = result.errors.get(error.code().name, 0) + 1
                continue
            result.latencies.append(time.perf_counter() - began)
            if answer.id:
                result.ids.append(answer.id)
                if on_id is not None:
                    on_id(answer.id)


async def run_load(
    address: str,
    document: bytes,
    clients: int,
    requests_per_client: int,
    total: int | None = None,
    on_id: Callable[[str], None] | None = None,
) -> LoadResult:
    """All clients connect first, then start together; wall time runs from the start to the last answer.
    With `total`, the clients share exactly that many requests instead (some one more than others).
    `on_id` hears each accepted id at once (e.g. Watcher.watch, to follow it from its submit on)."""
    result = LoadResult(clients)
    start = asyncio.Event()
    counts = [requests_per_client] * clients
    if total is not None:
        counts = [total // clients + (i < total % clients) for i in range(clients)]
    tasks = [asyncio.create_task(_client(address, document, n, result, start, on_id)) for n in counts]
    await asyncio.sleep(0.2)  # let the channels connect
    began = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    result.wall = time.perf_counter() - began
    return result


async def warm_up(address: str, document: bytes, calls: int = 3) -> None:
    await run_load(address, document, 1, calls)
