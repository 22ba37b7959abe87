"""Measures the gateway's memory under large refused uploads (docs/bad-inputs.md quotes the results).

    .venv/bin/python -m tests.services.gateway.measure_memory [--calls 24] [--mib 32]

Starts one gateway process with authentication on (tenant `tenant-a`, at most 2 concurrent uploads)
in front of a fake store inside this process, then sends two bursts of `--calls` concurrent
CreateExtraction calls of `--mib` MiB each:

1. with a wrong API key (every call must be UNAUTHENTICATED);
2. with tenant-a's key while two UploadExtraction streams of tenant-a hold its upload slots (every call
   must be RESOURCE_EXHAUSTED, reason TOO_MANY_UPLOADS; a gateway without the cap reads them all);
3. `--admitted` calls with tenant-a's key and caps that admit them all: what accepted bodies cost.

For each burst it prints the gateway's resident memory before, its peak during the burst (VmHWM, reset
before the burst through /proc/PID/clear_refs) and its resident memory a few seconds after.
Not a test (pytest collects test_*.py only); tests/integration/test_bad_inputs.py asserts a bound.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clausework.runtime.errors import error_reason
from contracts.internal.v1 import store_pb2, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from services.gateway.auth import hash_key

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[3]
KEY = "measure-key-" + "k" * 32
CREATE = "/contracts.v1.ExtractionService/CreateExtraction"
CAP = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def reset_peak(pid: int) -> None:
    """Resets VmHWM to the current RSS (Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class FakeStore(store_pb2_grpc.StoreServiceServicer):
    """Accepts WriteObject streams (draining them, writing nothing); everything else is UNAVAILABLE."""

    async def WriteObject(
        self, request_iterator: AsyncIterator[store_pb2.WriteObjectRequest], context: Any
    ) -> store_pb2.WriteObjectResponse:
        size = 0
        async for message in request_iterator:
            size += len(message.data)
        return store_pb2.WriteObjectResponse(size_bytes=size)

    async def CreateExtraction(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "fake store")


async def burst(pid: int, channel: grpc.aio.Channel, calls: int, wire: bytes, key: str) -> dict[str, Any]:
    create = channel.unary_unary(CREATE, request_serializer=None, response_deserializer=pb.Extraction.FromString)
    metadata = (("authorization", f"Bearer {key}"),)
    before = memory_mib(pid, "VmRSS")
    reset_peak(pid)

    async def one() -> str:
        try:
            await create(wire, metadata=metadata, timeout=60)
        except grpc.aio.AioRpcError as error:
            return f"{error.code().name}/{error_reason(error)}"
        return "OK"

    started = time.monotonic()
    outcomes = collections.Counter(await asyncio.gather(*(one() for _ in range(calls))))
    elapsed = time.monotonic() - started
    peak = memory_mib(pid, "VmHWM")
    await asyncio.sleep(3)
    after = memory_mib(pid, "VmRSS")
    return {
        "outcomes": dict(outcomes),
        "seconds": round(elapsed, 2),
        "rss_before_mib": round(before),
        "peak_mib": round(peak),
        "peak_growth_mib": round(peak - before),
        "rss_after_3s_mib": round(after),
    }


async def hold(api: extraction_pb2_grpc.ExtractionServiceAsyncStub, stop: asyncio.Event) -> None:
    """An UploadExtraction stream that sends a byte every 0.2 s until `stop`, then is cancelled."""

    async def messages() -> AsyncIterator[pb.UploadExtractionRequest]:
        yield pb.UploadExtractionRequest(metadata=pb.UploadMetadata(filename="held.pdf"))
        yield pb.UploadExtractionRequest(chunk=b"%PDF-1.7\n")
        while not stop.is_set():
            await asyncio.sleep(0.2)
            yield pb.UploadExtractionRequest(chunk=b"\n")

    call = api.UploadExtraction(messages(), metadata=(("authorization", f"Bearer {KEY}"),), timeout=120)
    await stop.wait()
    call.cancel()


async def scenario(store_port: int, calls: int, wire: bytes, mode: str, cap: int = CAP) -> dict[str, Any]:
    """One burst against a fresh gateway process: `mode` is wrong-key, over-cap or admitted."""
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "GATEWAY_METRICS_PORT": "0",
        "STORE_ADDRESS": f"127.0.0.1:{store_port}",
        "GATEWAY_API_KEYS": f"tenant-a:{hash_key(KEY)}",
        "GATEWAY_AUTH_DISABLED": "false",
        "GATEWAY_MAX_UPLOADS_PER_TENANT": str(cap),
        "GATEWAY_MAX_UPLOADS": str(max(cap, 8)),
        "LOG_LEVEL": "WARNING",
    }
    gateway = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.gateway", cwd=ROOT, env=env)
    options = [("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", -1)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            for _ in range(300):
                try:
                    health = health_pb2_grpc.HealthStub(channel)
                    await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.2)
            await asyncio.sleep(1)
            if mode == "wrong-key":
                return await burst(gateway.pid, channel, calls, wire, "wrong-" + KEY)
            if mode == "admitted":
                return await burst(gateway.pid, channel, calls, wire, KEY)
            stop = asyncio.Event()
            api = extraction_pb2_grpc.ExtractionServiceStub(channel)
            holders = [asyncio.create_task(hold(api, stop)) for _ in range(cap)]
            await asyncio.sleep(1)
            try:
                return await burst(gateway.pid, channel, calls, wire, KEY)
            finally:
                stop.set()
                await asyncio.gather(*holders)
    finally:
        gateway.terminate()
        await asyncio.wait_for(gateway.wait(), 30)


async def main(calls: int, mib: int, admitted: int) -> None:
    store = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * MiB)])
    store_pb2_grpc.add_StoreServiceServicer_to_server(FakeStore(), store)  # type: ignore[abstract]
    store_port = store.add_insecure_port("127.0.0.1:0")
    await store.start()
    content = b"%PDF-1.7\n" + b"\0" * (mib * MiB - 64 * 1024)
    wire = pb.CreateExtractionRequest(content=content, filename="big.pdf").SerializeToString()
    print(f"{calls} concurrent CreateExtraction calls of {len(wire) / MiB:.1f} MiB each, a fresh gateway each burst")
    try:
        print("wrong API key:", await scenario(store_port, calls, wire, "wrong-key"))
        over_cap = await scenario(store_port, calls, wire, "over-cap")
        print(f"valid key, {CAP} streams holding the tenant's slots:", over_cap)
        # What admitted uploads cost: as many as the default process-wide cap, all let through (the fake
        # store then refuses them, after the gateway has read and forwarded each body).
        print(f"valid key, {admitted} admitted:", await scenario(store_port, admitted, wire, "admitted", admitted))
    finally:
        await store.stop(None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=24)
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--admitted", type=int, default=8, help="calls in the third burst, all admitted")
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.mib, args.admitted))
