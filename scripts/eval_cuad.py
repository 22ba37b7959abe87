"""Evaluate the running stack on CUAD contracts: upload through the gateway, score with the CUAD scorer.

    python -m scripts.eval_cuad [--n 20] [--address 127.0.0.1:50051] [--out out/eval]   (make eval N=20)

Uploads N contracts from ../shared/cuad through the public API (concurrently), waits for each, writes
predictions.jsonl ({"id", "clauses": [{"category", "text", "confidence", ...}]}) and the matching
labels.jsonl, then prints ../shared/eval/score_cuad.py's output. This measures the whole product path;
the bundled model was trained on these contracts, so for generalization use `make crossval`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
from google.protobuf import json_format

from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from training.data import DEFAULT_CUAD as CUAD
from training.data import DEFAULT_SCORER as SCORER

ROOT = Path(__file__).resolve().parent.parent


def prediction(cuad_id: str, extraction: pb.Extraction) -> dict[str, object]:
    """One predictions.jsonl line: the scorer's format, keyed by the CUAD id."""
    clauses = [json_format.MessageToDict(c, preserving_proto_field_name=True) for c in extraction.clauses]
    return {"id": cuad_id, "extraction_id": extraction.id, "state": pb.State.Name(extraction.state), "clauses": clauses}


async def extract_one(
    stub: extraction_pb2_grpc.ExtractionServiceAsyncStub, path: Path, slots: asyncio.Semaphore
) -> pb.Extraction:
    async with slots:
        created = await stub.CreateExtraction(
            pb.CreateExtractionRequest(content=await asyncio.to_thread(path.read_bytes), filename=path.name),
            timeout=60,
        )
        last = created
        async for update in stub.WatchExtraction(pb.WatchExtractionRequest(id=created.id), timeout=1800):
            last = update
        if last.state != pb.STATE_SUCCEEDED:
            return last
        found: pb.Extraction = await stub.GetExtraction(pb.GetExtractionRequest(id=created.id), timeout=60)
        return found


async def extract_all(args: argparse.Namespace, chosen: list[dict[str, str]]) -> tuple[list[pb.Extraction], float]:
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024), ("grpc.max_receive_message_length", -1)]
    started = time.monotonic()
    async with grpc.aio.insecure_channel(args.address, options=options) as channel:
        stub = extraction_pb2_grpc.ExtractionServiceStub(channel)
        slots = asyncio.Semaphore(args.concurrency)
        results = await asyncio.gather(*(extract_one(stub, args.cuad_dir / d["pdf"], slots) for d in chosen))
    return list(results), time.monotonic() - started


def run(args: argparse.Namespace) -> int:
    labels = [json.loads(line) for line in (args.cuad_dir / "labels.jsonl").read_text().splitlines()]
    chosen = sorted(labels, key=lambda d: d["id"])[: args.n]
    args.out.mkdir(parents=True, exist_ok=True)
    results, elapsed = asyncio.run(extract_all(args, chosen))
    with (args.out / "predictions.jsonl").open("w") as file:
        for doc, extraction in zip(chosen, results, strict=True):
            file.write(json.dumps(prediction(doc["id"], extraction), ensure_ascii=False) + "\n")
    with (args.out / "labels.jsonl").open("w") as file:
        for doc in chosen:
            file.write(json.dumps(doc, ensure_ascii=False) + "\n")
    failed = [e.id for e in results if e.state != pb.STATE_SUCCEEDED]
    print(f"{len(chosen)} contracts in {elapsed:.1f} s, {len(failed)} not SUCCEEDED", file=sys.stderr)
    scored = subprocess.run(
        [sys.executable, str(SCORER), str(args.out / "labels.jsonl"), str(args.out / "predictions.jsonl")],
        capture_output=True,
        text=True,
    )
    print(scored.stdout, end="")
    return scored.returncode or (1 if failed else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--address", default=os.environ.get("CONTRACTS_ADDRESS", "127.0.0.1:50051"))
    parser.add_argument("--cuad-dir", type=Path, default=CUAD)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "eval")
    parser.add_argument("--concurrency", type=int, default=4)
    code = run(parser.parse_args())
    sys.stdout.flush()
    os._exit(code)  # temporalio-free, but grpc aio threads may linger at exit


if __name__ == "__main__":
    main()
