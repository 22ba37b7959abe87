"""The floor: the public ExtractionService with a CreateExtraction that answers at once. Run as its own
process (`python -m bench.noop --port N`), like the gateway, so the load generator measures the same
client + gRPC + loopback costs and nothing else."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import grpc

from bench.common import ROOT
from bench.llama import free_port
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc


class NoopServicer(extraction_pb2_grpc.ExtractionServiceServicer):
    async def CreateExtraction(
        self, request: pb.CreateExtractionRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.Extraction:
        return pb.Extraction(id=str(uuid.uuid4()), state=pb.STATE_PENDING, request_id=request.request_id)


async def serve(port: int) -> None:
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.max_send_message_length", -1)]
    )
    # Only CreateExtraction is implemented: the other methods answer UNIMPLEMENTED.
    extraction_pb2_grpc.add_ExtractionServiceServicer_to_server(NoopServicer(), server)  # type: ignore[abstract]
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


@contextlib.contextmanager
def noop_server() -> Iterator[str]:
    """A no-op server in a child process; yields its address."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.noop", "--port", str(port)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the no-op server did not start")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
