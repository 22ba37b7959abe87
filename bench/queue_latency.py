"""Does a burst wait for worker slots, and in which activity? The data for the task-queue decision.

    python -m bench.queue_latency --documents 100 [--address 127.0.0.1:50051] [--temporal 127.0.0.1:7233]

Submits a burst of distinct contracts through the gateway of a running stack, waits for all of them,
then reads every workflow's history and reports per activity type: schedule-to-start (time an activity
task waited for a free worker slot: the cost of sharing one task queue) and start-to-close (time in the
service). If schedule-to-start stays small beside start-to-close while the services are saturated, the
worker's slots are not the bottleneck and per-activity task queues would not add capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict

import grpc
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.common import percentile, text_pdf, unique
from clausework.pipeline import TERMINAL_STATES
from clausework.pipeline.payloads import workflow_id
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc


async def burst(address: str, documents: int) -> tuple[list[str], float]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = extraction_pb2_grpc.ExtractionServiceStub(channel)
        document = text_pdf(3)
        contents = [unique(document) for _ in range(documents)]
        started = time.monotonic()
        created = await asyncio.gather(
            *(
                stub.CreateExtraction(
                    pb.CreateExtractionRequest(content=c, filename="q.pdf", request_id=str(uuid.uuid4())), timeout=60
                )
                for c in contents
            )
        )
        ids = [c.id for c in created]
        pending = set(ids)
        while pending:
            for extraction_id in list(pending):
                found = await stub.GetExtraction(pb.GetExtractionRequest(id=extraction_id), timeout=10)
                if found.state in TERMINAL_STATES:
                    pending.discard(extraction_id)
            await asyncio.sleep(0.5)
        return ids, time.monotonic() - started


async def activity_times(temporal: Client, ids: list[str]) -> dict[str, dict[str, list[float]]]:
    """Per activity type: schedule-to-start and start-to-close seconds of every attempt."""
    times: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for extraction_id in ids:
        scheduled: dict[int, tuple[str, float]] = {}
        started: dict[int, float] = {}
        async for event in temporal.get_workflow_handle(workflow_id(extraction_id)).fetch_history_events():
            at = event.event_time.ToDatetime().timestamp()
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                scheduled[event.event_id] = (event.activity_task_scheduled_event_attributes.activity_type.name, at)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started[event.activity_task_started_event_attributes.scheduled_event_id] = at
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                key = event.activity_task_completed_event_attributes.scheduled_event_id
                name, scheduled_at = scheduled[key]
                times[name]["schedule_to_start"].append(started[key] - scheduled_at)
                times[name]["start_to_close"].append(at - started[key])
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--address", default=os.environ.get("CONTRACTS_ADDRESS", "127.0.0.1:50051"))
    parser.add_argument("--temporal", default=os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"))
    args = parser.parse_args()
    ids, seconds = await burst(args.address, args.documents)
    times = await activity_times(await Client.connect(args.temporal), ids)
    print(f"{len(ids)} documents in {seconds:.1f} s ({len(ids) / seconds:.1f}/s)\n")
    print("| activity | n | schedule-to-start p50 / p99 (s) | start-to-close p50 / p99 (s) |")
    print("| --- | --- | --- | --- |")
    for name, measured in sorted(times.items()):
        waits, runs = measured["schedule_to_start"], measured["start_to_close"]
        print(
            f"| {name} | {len(runs)} | {statistics.median(waits):.3f} / {percentile(waits, 99):.3f}"
            f" | {statistics.median(runs):.3f} / {percentile(runs, 99):.3f} |"
        )
    sys.stdout.flush()
    os._exit(0)  # temporalio can abort at interpreter exit (sdk-python#300)


if __name__ == "__main__":
    asyncio.run(main())
