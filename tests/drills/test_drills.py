"""Fault drills: a batch of documents in flight, one component fails, and nothing is lost or doubled.

Each drill submits a batch of distinct contracts, waits until the pipeline is busy with them, breaks one
component (SIGKILL, a 20 s stop, or a restart of the infrastructure), and then requires every document to
finish SUCCEEDED with exactly one extraction row, one result object and its two claim-check objects, and
no object the batch created left unreferenced, and every row agreeing with its Temporal workflow.

Other drills follow the same pattern for the hard cases: Temporal down while documents are submitted or
cancelled, the store SIGKILLed in the middle of streamed uploads, and hundreds of cancels landing at
random moments of the pipeline. Run them with `make drills`; `make test` runs them too.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import random
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

import asyncpg
import grpc
import pymupdf
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from clausework.pipeline import TERMINAL_STATES
from clausework.pipeline.payloads import workflow_id
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import Stack
from services.store.objects import ObjectStore
from tests import pdfs
from tests.conftest import wait_quiet

pytestmark = [pytest.mark.drill, pytest.mark.timeout(900)]

Gateway: TypeAlias = "extraction_pb2_grpc.ExtractionServiceAsyncStub"
T = TypeVar("T")

BATCH = int(os.environ.get("DRILL_BATCH", "50"))
OUTAGE_SECONDS = float(os.environ.get("DRILL_OUTAGE_SECONDS", "20"))
LONG_OUTAGE_SECONDS = float(os.environ.get("DRILL_LONG_OUTAGE_SECONDS", "30"))
# Submits in flight at once, below the gateway's per-tenant cap on uploads in flight (32 by default).
SUBMIT_CONCURRENCY = int(os.environ.get("DRILL_SUBMIT_CONCURRENCY", "16"))
# Transient answers while a component is down; anything else is a real failure of the drill.
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass(frozen=True)
class Drill:
    name: str
    fault: Callable[[Stack], None]


def outage(name: str, seconds: float = OUTAGE_SECONDS) -> Callable[[Stack], None]:
    def fault(stack: Stack) -> None:
        stack.stop(name)
        time.sleep(seconds)
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
    Drill("postgres-down-30s", outage("postgres", LONG_OUTAGE_SECONDS)),
    Drill("s3-down-30s", outage("s3", LONG_OUTAGE_SECONDS)),
]


@pytest.fixture(autouse=True)
async def settled(stack: Stack) -> None:
    """Each drill starts once earlier work is finished: extractions of an earlier (failed) drill still
    running would write objects this drill's orphan check counts, and skew its timing."""
    await wait_quiet(stack)


def unique_contract(tag: str) -> bytes:
    """The test contract with a unique reference line: distinct bytes, so no result is reused."""
    pages = list(pdfs.CONTRACT_PAGES)
    pages[0] = f"Reference {tag}\n\n{pages[0]}"
    return pdfs.text_pdf(pages)


async def retrying(call: Callable[[], Awaitable[T]], deadline: float) -> T:
    """One gateway call, retried through the outage (the gateway answers UNAVAILABLE meanwhile)."""
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() not in TRANSIENT or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def submit_batch(gateway: Gateway, drill: str, count: int = BATCH) -> list[str]:
    """`count` distinct contracts, each submitted by exactly one CreateExtraction call (no retries), at
    most SUBMIT_CONCURRENCY at once: the gateway refuses a tenant's uploads beyond its cap
    (RESOURCE_EXHAUSTED, TOO_MANY_UPLOADS) and a drill is about faults, not about that cap."""
    contents = [unique_contract(f"{drill}-{n}-{uuid.uuid4()}") for n in range(count)]
    slots = asyncio.Semaphore(SUBMIT_CONCURRENCY)

    async def submit(content: bytes) -> str:
        async with slots:
            created = await gateway.CreateExtraction(
                pb.CreateExtractionRequest(content=content, filename="drill.pdf", request_id=str(uuid.uuid4())),
                timeout=60,
            )
        return created.id

    answers = await asyncio.gather(*(submit(c) for c in contents), return_exceptions=True)
    errors = [a for a in answers if isinstance(a, BaseException)]
    codes = collections.Counter(e.code().name if isinstance(e, grpc.aio.AioRpcError) else repr(e) for e in errors)
    assert not errors, f"{len(errors)} of {count} CreateExtraction calls failed: {dict(codes)}"
    return [a for a in answers if isinstance(a, str)]


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
            if extraction.state in TERMINAL_STATES:
                done[extraction_id] = extraction
        if time.monotonic() > deadline:
            pending = [i for i in ids if i not in done]
            raise AssertionError(f"{len(pending)} of {len(ids)} not finished, e.g. {pending[:3]}")
        await asyncio.sleep(0.5)
    return done


async def fetch_rows(stack: Stack, ids: Iterable[str]) -> dict[str, asyncpg.Record]:
    """Each extraction's row with its document's object key and its number of clause rows, by id."""
    connection = await asyncpg.connect(stack.database_url)  # a fresh one: PostgreSQL may have restarted
    try:
        rows = await connection.fetch(
            "SELECT e.id, e.state, e.stage, e.result_key, d.object_key,"
            " (SELECT count(*) FROM clauses c WHERE c.extraction_id = e.id) AS clause_rows"
            " FROM extractions e JOIN documents d ON d.tenant = e.tenant AND d.sha256 = e.document_sha256"
            " WHERE e.id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids],
        )
    finally:
        await connection.close()
    return {str(row["id"]): row for row in rows}


async def check_nothing_lost_or_doubled(
    outcomes: dict[str, pb.Extraction], before: set[str], stack: Stack, objects: ObjectStore
) -> None:
    failed = {i: (pb.State.Name(e.state), e.error.code) for i, e in outcomes.items() if e.state != pb.STATE_SUCCEEDED}
    assert not failed, failed
    ids = list(outcomes)
    rows = list((await fetch_rows(stack, ids)).values())
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


# ---- rows and Temporal ----------------------------------------------------------------------------------

# The workflow status each terminal row state agrees with; None: no workflow at all (cancelled before its
# workflow was started).
AGREEING: dict[int, set[WorkflowExecutionStatus | None]] = {
    pb.STATE_SUCCEEDED: {WorkflowExecutionStatus.COMPLETED},
    pb.STATE_FAILED: {WorkflowExecutionStatus.FAILED},
    pb.STATE_CANCELLED: {WorkflowExecutionStatus.CANCELED, None},
}


async def workflow_status(temporal: Client, extraction_id: str) -> WorkflowExecutionStatus | None:
    """The status of the extraction's workflow, or None if Temporal has none (NOT_FOUND)."""
    try:
        description = await temporal.get_workflow_handle(workflow_id(extraction_id)).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return description.status


def _name(status: WorkflowExecutionStatus | None) -> str:
    return "absent" if status is None else status.name


async def check_rows_agree_with_temporal(
    stack: Stack, temporal: Client, ids: list[str], timeout: float = 120
) -> dict[str, WorkflowExecutionStatus | None]:
    """Every row is terminal and agrees with its workflow: SUCCEEDED-COMPLETED, FAILED-FAILED,
    CANCELLED-CANCELED (or no workflow). A row may turn terminal just before its workflow closes, so
    disagreements are re-read until `timeout`; terminal rows and closed workflows never change again."""
    deadline = time.monotonic() + timeout
    statuses: dict[str, WorkflowExecutionStatus | None] = {}
    unsettled = list(ids)
    while True:
        rows = await fetch_rows(stack, unsettled)
        disagreeing: dict[str, tuple[str, str]] = {}
        for extraction_id in unsettled:
            row = rows.get(extraction_id)
            state = row["state"] if row is not None else pb.STATE_UNSPECIFIED
            try:
                status = await workflow_status(temporal, extraction_id)
            except RPCError as error:  # Temporal just restarted, say
                disagreeing[extraction_id] = (pb.State.Name(state), f"describe failed: {error.status}")
                continue
            statuses[extraction_id] = status
            if status not in AGREEING.get(state, set()):
                disagreeing[extraction_id] = (pb.State.Name(state), _name(status))
        if not disagreeing:
            return statuses
        if time.monotonic() > deadline:
            kinds = collections.Counter(disagreeing.values())
            raise AssertionError(
                f"{len(disagreeing)} of {len(ids)} rows disagree with Temporal (row state, workflow): {dict(kinds)};"
                f" e.g. {list(disagreeing)[:3]}"
            )
        unsettled = list(disagreeing)
        await asyncio.sleep(1)


# ---- objects ------------------------------------------------------------------------------------------


def _named_id(key: str) -> str:
    """The extraction id an `extractions/<id>/...` or `results/<id>.json` key names ('' for others)."""
    if key.startswith("extractions/"):
        return key.split("/")[1]
    if key.startswith("results/"):
        return key.removeprefix("results/").removesuffix(".json")
    return ""


async def objects_naming(objects: ObjectStore, ids: Iterable[str]) -> list[str]:
    wanted = set(ids)
    keys = await objects.keys("extractions/") + await objects.keys("results/")
    return sorted(k for k in keys if _named_id(k) in wanted)


async def wait_no_objects_naming(objects: ObjectStore, ids: list[str], timeout: float) -> None:
    """Cancelled or failed extractions leave no object naming them: the workflow deletes its objects when
    it ends, the store's sweep deletes late ones. Polls until true."""
    deadline = time.monotonic() + timeout
    while left := await objects_naming(objects, ids):
        if time.monotonic() > deadline:
            named = {_named_id(k) for k in left}
            raise AssertionError(
                f"{len(left)} objects of {len(named)} cancelled or failed extractions left after {timeout:.0f}s:"
                f" {left[:5]}"
            )
        await asyncio.sleep(1)


# The store's sweep, made quick for the drills that need it (defaults: every 300 s, uploads kept 3600 s).
SWEEP_INTERVAL_SECONDS = 2.0
UPLOAD_GRACE_SECONDS = 10.0
SWEEP_ENV = {
    "STORE_SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL_SECONDS),
    "STORE_UPLOAD_GRACE_SECONDS": str(UPLOAD_GRACE_SECONDS),
    # How long an ended extraction settles before the sweep looks at it (services/store/settings.py).
    "STORE_SWEEP_SETTLE_SECONDS": "2",
}
# Long enough for the workflow's own clean-up plus a few sweeps.
CLEANUP_TIMEOUT_SECONDS = 60.0


def restart_store(stack: Stack) -> None:
    stack.stop("store")
    stack.start("store")


async def wait_gateway_reaches_store(gateway: Gateway, timeout: float = 60) -> None:
    """After a store restart the gateway's channel may still be backing off; wait until a call gets through."""
    request = pb.ListExtractionsRequest(page_size=1)
    await retrying(functools.partial(gateway.ListExtractions, request, timeout=10), time.monotonic() + timeout)


@pytest.fixture
async def short_sweep(stack: Stack, gateway: Gateway) -> AsyncIterator[None]:
    """The store restarted with a sweep every few seconds and a short grace for uploads; restored after."""
    saved = {key: stack.extra_env.get(key) for key in SWEEP_ENV}
    stack.extra_env.update(SWEEP_ENV)
    try:
        await asyncio.to_thread(restart_store, stack)
        await wait_gateway_reaches_store(gateway)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                stack.extra_env.pop(key, None)
            else:
                stack.extra_env[key] = value
        await asyncio.to_thread(stack.up)  # whatever the drill did
        await asyncio.to_thread(restart_store, stack)
        await wait_gateway_reaches_store(gateway)


@pytest.mark.parametrize("drill", DRILLS, ids=[d.name for d in DRILLS])
async def test_drill(drill: Drill, stack: Stack, gateway: Gateway, objects: ObjectStore, temporal: Client) -> None:
    before = set(await objects.keys())
    ids = await submit_batch(gateway, drill.name)
    await wait_until_busy(gateway, ids)
    states = [(await gateway.GetExtraction(pb.GetExtractionRequest(id=i), timeout=10)).state for i in ids]
    assert sum(s not in TERMINAL_STATES for s in states) >= len(ids) // 2, "the fault must hit a batch still in flight"
    try:
        await asyncio.to_thread(drill.fault, stack)
    finally:
        await asyncio.to_thread(stack.up)  # whatever the drill did, the next one starts from a whole stack
    outcomes = await wait_all(gateway, ids, timeout=600)
    await check_nothing_lost_or_doubled(outcomes, before, stack, objects)
    await check_rows_agree_with_temporal(stack, temporal, ids)


# ---- Temporal down while documents are submitted ----------------------------------------------------


@pytest.mark.timeout(600)
async def test_temporal_down_30s_during_submits(
    stack: Stack, gateway: Gateway, objects: ObjectStore, temporal: Client
) -> None:
    """Submitting never needs Temporal: the store keeps the intent and its relay starts the workflows
    once Temporal is back. Every CreateExtraction succeeds on its first call."""
    before = set(await objects.keys())
    await asyncio.to_thread(stack.stop, "temporal")
    stopped = time.monotonic()
    try:
        ids = await submit_batch(gateway, "temporal-down-30s")
        states = [(await gateway.GetExtraction(pb.GetExtractionRequest(id=i), timeout=10)).state for i in ids]
        assert set(states) == {pb.STATE_PENDING}, "nothing can run while Temporal is down"
        await asyncio.sleep(max(0.0, LONG_OUTAGE_SECONDS - (time.monotonic() - stopped)))
        # The alertable gauge: the oldest unstarted row's age, measured by the store's relay.
        age = await asyncio.to_thread(store_metric, stack, "clausework_outbox_oldest_unstarted_seconds")
        assert age >= LONG_OUTAGE_SECONDS / 2, age
        await asyncio.to_thread(stack.start, "temporal")
    finally:
        await asyncio.to_thread(stack.up)
    outcomes = await wait_all(gateway, ids, timeout=600)
    await check_nothing_lost_or_doubled(outcomes, before, stack, objects)
    await check_rows_agree_with_temporal(stack, temporal, ids)


def store_metric(stack: Stack, name: str) -> float:
    """One gauge from the store's Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.profile.metrics_port('store')}/metrics", timeout=5) as page:
        for line in page.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


# ---- the store SIGKILLed in the middle of streamed uploads -------------------------------------------

UPLOADS = int(os.environ.get("DRILL_UPLOADS", "6"))
UPLOAD_BYTES = 3 * 1024 * 1024
# One upload is larger than the store's multipart part (8 MiB) and sends its first part quickly, so the
# kill also leaves a multipart upload begun and never completed.
MULTIPART_UPLOAD_BYTES = 10 * 1024 * 1024
MULTIPART_FAST_BYTES = 9 * 1024 * 1024
UPLOAD_CHUNK_BYTES = 128 * 1024
# A first attempt streams for this long, so the kill (after KILL_AFTER_SECONDS) lands mid-stream.
UPLOAD_STREAM_SECONDS = 12.0
KILL_AFTER_SECONDS = 4.0


def large_contract(tag: str, size: int = UPLOAD_BYTES) -> bytes:
    """The unique test contract grown to about `size` bytes by an incompressible attachment."""
    document = pymupdf.open(stream=unique_contract(tag), filetype="pdf")
    document.embfile_add("appendix.bin", os.urandom(size))
    data = document.tobytes()
    document.close()
    return bytes(data)


async def stream_upload(
    gateway: Gateway,
    content: bytes,
    request_id: str,
    seconds: float = 0.0,
    sent: list[int] | None = None,
    fast_bytes: int = 0,
) -> pb.Extraction:
    """One UploadExtraction call streaming `content` in chunks: the first `fast_bytes` at once, the rest
    spread over about `seconds`. `sent` collects the sizes of the chunks handed to gRPC so far."""
    chunks = [content[i : i + UPLOAD_CHUNK_BYTES] for i in range(0, len(content), UPLOAD_CHUNK_BYTES)]
    fast = fast_bytes // UPLOAD_CHUNK_BYTES
    pause = seconds / max(1, len(chunks) - fast)

    async def messages() -> AsyncIterator[pb.UploadExtractionRequest]:
        metadata = pb.UploadMetadata(filename="drill-upload.pdf", request_id=request_id, size_bytes=len(content))
        yield pb.UploadExtractionRequest(metadata=metadata)
        for n, chunk in enumerate(chunks):
            if pause and n >= fast:
                await asyncio.sleep(pause)
            yield pb.UploadExtractionRequest(chunk=chunk)
            if sent is not None:
                sent.append(len(chunk))

    return await gateway.UploadExtraction(messages(), timeout=120)


async def unfinished_uploads(objects: ObjectStore) -> list[str]:
    """Objects under uploads/ and multipart uploads begun there and never completed or aborted."""
    # ObjectStore has no listing of multipart uploads; its S3 client has.
    answer = await objects._client.list_multipart_uploads(Bucket=objects.bucket, Prefix="uploads/")
    multipart = [f"multipart:{u['Key']}" for u in answer.get("Uploads", [])]
    return [*await objects.keys("uploads/"), *multipart]


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("short_sweep")
async def test_store_sigkill_during_streamed_uploads(
    stack: Stack, gateway: Gateway, objects: ObjectStore, temporal: Client
) -> None:
    """Uploads cut off by a store crash are retried with their request_id and each retry succeeds; the
    sweep removes whatever the crash left under uploads/ (objects and multipart uploads)."""
    before = set(await objects.keys())
    sizes = [UPLOAD_BYTES] * (UPLOADS - 1) + [MULTIPART_UPLOAD_BYTES]
    fast = [0] * (UPLOADS - 1) + [MULTIPART_FAST_BYTES]
    contents = [large_contract(f"upload-{n}-{uuid.uuid4()}", size) for n, size in enumerate(sizes)]
    request_ids = [str(uuid.uuid4()) for _ in contents]
    sent: list[list[int]] = [[] for _ in contents]
    first_attempts = [
        asyncio.create_task(stream_upload(gateway, content, request_id, UPLOAD_STREAM_SECONDS, progress, head))
        for content, request_id, progress, head in zip(contents, request_ids, sent, fast, strict=True)
    ]
    try:
        await asyncio.sleep(KILL_AFTER_SECONDS)
        at_kill = [sum(progress) for progress in sent]
        await asyncio.to_thread(stack.kill, "store")
        first = await asyncio.gather(*first_attempts, return_exceptions=True)
        await asyncio.to_thread(stack.start, "store")
    finally:
        await asyncio.to_thread(stack.up)
    cut = [n for n, answer in enumerate(first) if isinstance(answer, BaseException)]
    assert any(0 < at_kill[n] < len(contents[n]) for n in cut), (
        f"the kill must land mid-stream: bytes sent at the kill {at_kill}, failed first attempts {cut}"
    )
    print(f"bytes sent at the kill: {at_kill}; first attempts cut off: {len(cut)} of {len(first)}")
    await wait_gateway_reaches_store(gateway)

    retries = await asyncio.gather(
        *(stream_upload(gateway, c, r) for c, r in zip(contents, request_ids, strict=True)), return_exceptions=True
    )
    failed = {n: repr(a)[:200] for n, a in enumerate(retries) if isinstance(a, BaseException)}
    assert not failed, f"{len(failed)} of {len(retries)} retries failed: {failed}"
    ids = [a.id for a in retries if isinstance(a, pb.Extraction)]
    assert len(set(ids)) == len(ids), "one extraction per upload"
    for n, answer in enumerate(first):
        if isinstance(answer, pb.Extraction):
            assert answer.id == ids[n], "a retry by request_id returns the first call's extraction"

    outcomes = await wait_all(gateway, ids, timeout=300)
    deadline = time.monotonic() + UPLOAD_GRACE_SECONDS + CLEANUP_TIMEOUT_SECONDS
    while left := await unfinished_uploads(objects):
        assert time.monotonic() < deadline, f"{len(left)} uploads outlived the sweep: {left[:5]}"
        await asyncio.sleep(1)
    await check_nothing_lost_or_doubled(outcomes, before, stack, objects)
    await check_rows_agree_with_temporal(stack, temporal, ids)


# ---- cancels at random moments ------------------------------------------------------------------------

CANCELS = int(os.environ.get("DRILL_CANCELS", "200"))
# Cancels are spread uniformly over this many seconds after the submits, about the batch's lifetime
# (measured on 2 cores), so they land queued, parsing, extracting, storing and after the end.
CANCEL_SPREAD_SECONDS = float(os.environ.get("DRILL_CANCEL_SPREAD_SECONDS", "25"))
CANCEL_SEED = int(os.environ.get("DRILL_CANCEL_SEED", "1729"))
IN_FLIGHT_STAGES = (pb.STAGE_PARSING, pb.STAGE_EXTRACTING, pb.STAGE_STORING)


async def check_cancelled_and_succeeded(
    stack: Stack, objects: ObjectStore, outcomes: dict[str, pb.Extraction]
) -> list[str]:
    """CANCELLED rows keep no clause rows and (eventually) no objects; SUCCEEDED rows have their
    results. Returns the cancelled ids."""
    rows = await fetch_rows(stack, outcomes)
    assert len(rows) == len(outcomes), "exactly one extraction row per document"
    cancelled = [i for i, e in outcomes.items() if e.state == pb.STATE_CANCELLED]
    succeeded = [i for i, e in outcomes.items() if e.state == pb.STATE_SUCCEEDED]
    with_clauses = [i for i in cancelled if rows[i]["clause_rows"]]
    assert not with_clauses, f"{len(with_clauses)} CANCELLED rows have clause rows, e.g. {with_clauses[:3]}"
    keys = set(await objects.keys("results/"))
    for extraction_id in succeeded:
        row = rows[extraction_id]
        assert row["result_key"] == f"results/{extraction_id}.json"
        assert row["result_key"] in keys, f"SUCCEEDED {extraction_id} has no result object"
        assert row["clause_rows"] == len(outcomes[extraction_id].clauses)
    await wait_no_objects_naming(objects, cancelled, CLEANUP_TIMEOUT_SECONDS)
    return cancelled


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("short_sweep")
async def test_cancels_at_random_moments(
    stack: Stack, gateway: Gateway, objects: ObjectStore, temporal: Client
) -> None:
    """CANCELS distinct contracts, each cancelled after a random delay (seeded). Each cancel wins
    (CANCELLED, workflow CANCELED or never started, nothing left behind) or loses to the completion
    (SUCCEEDED with its results, workflow COMPLETED); nothing ends in between or FAILED."""
    started = time.monotonic()
    rng = random.Random(CANCEL_SEED)
    ids = await submit_batch(gateway, "cancels", CANCELS)
    submitted = time.monotonic()
    delays = [rng.uniform(0, CANCEL_SPREAD_SECONDS) for _ in ids]

    async def cancel(extraction_id: str, delay: float) -> tuple[str, str]:
        await asyncio.sleep(max(0.0, submitted + delay - time.monotonic()))
        seen = await gateway.GetExtraction(pb.GetExtractionRequest(id=extraction_id), timeout=30)
        answer = await gateway.CancelExtraction(pb.CancelExtractionRequest(id=extraction_id), timeout=60)
        return pb.Stage.Name(seen.stage) if seen.state not in TERMINAL_STATES else "done", pb.State.Name(answer.state)

    answers = await asyncio.gather(*(cancel(i, d) for i, d in zip(ids, delays, strict=True)), return_exceptions=True)
    errors = [a for a in answers if isinstance(a, BaseException)]
    assert not errors, f"{len(errors)} of {len(ids)} CancelExtraction calls failed, e.g. {errors[:3]}"
    pairs = [a for a in answers if isinstance(a, tuple)]
    moments = collections.Counter(moment for moment, _ in pairs)
    print(f"cancelled at: {dict(moments)}; answered: {dict(collections.Counter(state for _, state in pairs))}")
    assert sum(moments[pb.Stage.Name(s)] for s in IN_FLIGHT_STAGES), f"no cancel hit a running extraction: {moments}"

    outcomes = await wait_all(gateway, ids, timeout=300)
    states = collections.Counter(pb.State.Name(e.state) for e in outcomes.values())
    print(f"outcomes: {dict(states)} after {time.monotonic() - started:.0f}s")
    failed = {i: e.error.code for i, e in outcomes.items() if e.state == pb.STATE_FAILED}
    assert not failed, f"{len(failed)} cancelled extractions ended FAILED: {dict(collections.Counter(failed.values()))}"
    cancelled = await check_cancelled_and_succeeded(stack, objects, outcomes)
    statuses = await check_rows_agree_with_temporal(stack, temporal, ids)
    never_started = sum(statuses[i] is None for i in cancelled)
    print(
        f"{len(cancelled)} cancelled ({never_started} before their workflow started); {time.monotonic() - started:.0f}s"
    )


# ---- cancel while Temporal is down --------------------------------------------------------------------

CANCEL_BATCH = int(os.environ.get("DRILL_CANCEL_BATCH", "12"))


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("short_sweep")
async def test_cancel_while_temporal_down(
    stack: Stack, gateway: Gateway, objects: ObjectStore, temporal: Client
) -> None:
    """A cancel is recorded durably and answered OK while Temporal is down; once it is back the relay
    delivers it: running extractions end CANCELLED with their workflow CANCELED, and one submitted during
    the outage (never started) ends CANCELLED without a workflow run."""
    ids = await submit_batch(gateway, "cancel-temporal-down", CANCEL_BATCH)
    await wait_until_busy(gateway, ids)
    await asyncio.to_thread(stack.stop, "temporal")
    try:
        seen = {i: await gateway.GetExtraction(pb.GetExtractionRequest(id=i), timeout=10) for i in ids}
        [unstarted] = await submit_batch(gateway, "cancel-temporal-down-unstarted", 1)
        everything = [*ids, unstarted]
        answers = await asyncio.gather(
            *(gateway.CancelExtraction(pb.CancelExtractionRequest(id=i), timeout=60) for i in everything),
            return_exceptions=True,
        )
        errors = {i: repr(a)[:200] for i, a in zip(everything, answers, strict=True) if isinstance(a, BaseException)}
        assert not errors, f"CancelExtraction must answer OK while Temporal is down: {errors}"
        answered = {i: a for i, a in zip(everything, answers, strict=True) if isinstance(a, pb.Extraction)}
        running = [i for i in ids if seen[i].state == pb.STATE_RUNNING and answered[i].state == pb.STATE_RUNNING]
        assert running, f"no extraction was running at the cancel: {[pb.State.Name(s.state) for s in seen.values()]}"
        # Only the workflow can stop running work, and it cannot run without Temporal.
        await asyncio.sleep(5)
        now = {i: (await gateway.GetExtraction(pb.GetExtractionRequest(id=i), timeout=10)).state for i in running}
        early = [i for i, state in now.items() if state == pb.STATE_CANCELLED]
        assert not early, f"{len(early)} running extractions CANCELLED while their workflow could not stop"
        await asyncio.to_thread(stack.start, "temporal")
    finally:
        await asyncio.to_thread(stack.up)

    outcomes = await wait_all(gateway, everything, timeout=300)
    for extraction_id in everything:
        outcome = pb.State.Name(outcomes[extraction_id].state)
        if answered[extraction_id].state == pb.STATE_SUCCEEDED:
            assert outcome == "STATE_SUCCEEDED", f"{extraction_id} had finished before the cancel but is {outcome}"
        elif extraction_id in seen and seen[extraction_id].stage == pb.STAGE_STORING:
            # The cancel may lose the race to the completion already under way.
            assert outcome in ("STATE_CANCELLED", "STATE_SUCCEEDED"), f"{extraction_id} is {outcome}"
        else:
            assert outcome == "STATE_CANCELLED", f"{extraction_id} was cancelled but is {outcome}"
    statuses = await check_rows_agree_with_temporal(stack, temporal, everything)
    for extraction_id in running:
        if outcomes[extraction_id].state == pb.STATE_CANCELLED:
            assert statuses[extraction_id] == WorkflowExecutionStatus.CANCELED, "a started workflow is cancelled"
    print(f"unstarted extraction's workflow: {_name(statuses[unstarted])}")
    await check_cancelled_and_succeeded(stack, objects, outcomes)
