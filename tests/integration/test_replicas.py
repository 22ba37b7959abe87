"""Scaling out works: with two replicas of a service, both receive calls; with two workers, both work.

In Kubernetes a headless Service and a `dns:///` target give the client every pod's address, and the
`round_robin` policy of `clausework.runtime.rpc.channel` spreads calls over them. Here the same client
channel gets the two local replicas as an `ipv4:` address list, which exercises the same policy.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from clausework.pipeline.payloads import workflow_id
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import Stack
from tests import pdfs
from tests.conftest import wait_terminal

Gateway: TypeAlias = "extraction_pb2_grpc.ExtractionServiceAsyncStub"
DOCUMENTS = 12


@pytest.fixture
def scaled_out(stack: Stack) -> Iterator[dict[str, Path]]:
    """A second parser, and two workers whose parser channel holds both parser addresses."""
    p = stack.profile
    parser_b = p.parser + 30
    parsers = f"ipv4:127.0.0.1:{p.parser},127.0.0.1:{parser_b}"
    stack.start_extra("parser-b", "parser", parser_b, {"PARSER_PORT": str(parser_b)})
    stack.stop("worker")
    workers = {"worker-a": p.worker, "worker-b": p.worker + 30}
    try:
        for name, port in workers.items():
            stack.start_extra(name, "worker", port, {"WORKER_PORT": str(port), "PARSER_ADDRESS": parsers})
        yield {name: stack.logs / f"{name}.log" for name in ("parser", "parser-b")}
    finally:
        for name in (*workers, "parser-b"):
            stack.stop(name)
        stack.start("worker")


def parsed_keys(log: Path, offset: int) -> set[str]:
    """Documents a parser replica logged as parsed after `offset` in its log."""
    with log.open("rb") as handle:
        handle.seek(offset)
        lines = handle.read().decode(errors="replace").splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return {r["key"] for r in records if r.get("msg") == "parsed"}


async def test_two_replicas_both_receive_calls(scaled_out: dict[str, Path], gateway: Gateway, temporal: Client) -> None:
    offsets = {name: log.stat().st_size if log.exists() else 0 for name, log in scaled_out.items()}
    contents = [pdfs.text_pdf([f"Reference {uuid.uuid4()}", *pdfs.CONTRACT_PAGES]) for _ in range(DOCUMENTS)]
    created = await asyncio.gather(
        *(
            gateway.CreateExtraction(
                pb.CreateExtractionRequest(content=c, filename="r.pdf", request_id=str(uuid.uuid4())), timeout=30
            )
            for c in contents
        )
    )
    finished = [await wait_terminal(gateway, c.id, timeout=180) for c in created]
    assert all(e.state == pb.STATE_SUCCEEDED for e in finished), [e.error for e in finished]

    documents = {e.document.sha256 for e in finished}
    calls = {
        name: {sha for sha in documents if any(sha in key for key in parsed_keys(log, offsets[name]))}
        for name, log in scaled_out.items()
    }
    assert all(calls.values()), f"a parser replica got no calls: { {n: len(c) for n, c in calls.items()} }"
    assert calls["parser"] | calls["parser-b"] == documents

    # Both workers polled the one task queue and ran activities: their identities are in the histories.
    identities: set[str] = set()
    for extraction in finished:
        handle = temporal.get_workflow_handle(workflow_id(extraction.id))
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                identities.add(event.activity_task_started_event_attributes.identity)
    assert len(identities) == 2, identities
