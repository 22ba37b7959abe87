"""What one document costs the stack, for the capacity model (docs/scale.md): N contracts through the
stack, then their deletion, then one retention run, each phase measured alone on an otherwise idle stack:

- CPU ms per process (our processes with their children, Temporal, SeaweedFS, PostgreSQL);
- PostgreSQL statements (pg_stat_statements, which the stack preloads) and the most frequent ones;
- S3 requests by operation, as the store's client sends them (clausework_s3_requests_total);
- gRPC calls our services answered, by method;
- Temporal: billable actions from the dev server's own `action` counter, history events by type, an
  estimate of the actions from the histories by Temporal Cloud's documented rule, and history bytes;
- bytes stored: S3 objects by key pattern (the bucket listed before and after), PostgreSQL tables
  (pg_total_relation_size before and after).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
from temporalio.client import Client

from bench.common import Section, contracts, page_count, unique
from bench.loadgen import CHANNEL_OPTIONS
from bench.stackutil import Watcher, cpu_seconds, pids, postgres_cpu
from clausework.pipeline.payloads import deletion_workflow_id, workflow_id
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import SERVICES, Stack
from orchestrator.schedules import RETENTION_SCHEDULE_ID

COMMAND = "python -m bench --only costs"
# Submits at once (each its own channel): a steady pipeline, not a burst (the load benchmark does that).
CLIENTS = 4
TOP_STATEMENTS = 10
# Marks the benchmark's own queries, which pg_stat_statements counts too, so they can be left out.
BENCH_SQL = "/* bench:costs */ "
WORKFLOW_TIMEOUT = 900.0
# Reads of the Temporal dev server's `action` counter until two in a row agree, this far apart.
ACTION_SETTLE_SECONDS = 1.5
ACTION_SETTLE_READS = 10
# PostgreSQL backends flush their pg_stat_database counts at most this long after their last transaction.
PGSTAT_FLUSH_SECONDS = 11.0
# Temporal Cloud: each Schedule execution adds two actions to the started workflow's own start.
SCHEDULE_START_ACTIONS = 2
ACTIONS_RULE = (
    "Temporal Cloud actions estimated from a history by the rule of docs.temporal.io/cloud/actions: one per "
    "WorkflowExecutionStarted, ActivityTaskScheduled, TimerStarted, WorkflowExecutionSignaled, "
    "UpsertWorkflowSearchAttributes, WorkflowExecutionOptionsUpdated and WorkflowExecutionUpdateAccepted; "
    "two per StartChildWorkflowExecutionInitiated; one per retry (ActivityTaskStarted.attempt - 1); one per "
    "workflow task that recorded local-activity markers; +2 for a run a Schedule started. Activity "
    "heartbeats and queries are billable but not in histories: the dev server's `action` counter "
    "(service_name=frontend, namespace default), reported beside it, includes them."
)
# Key segments that name one object (ids, hashes and their 2-character fan-out) rather than a kind.
_NAMING_SEGMENT = re.compile(
    r"^([0-9a-f]{2}|[0-9a-f]{16,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


@dataclass
class Statement:
    text: str
    calls: int
    milliseconds: float


@dataclass
class Snapshot:
    """Cumulative counters of the whole stack at one moment; a phase's cost is the difference of two."""

    cpu: dict[str, float]
    statements: dict[int, Statement] | None  # by queryid; None: pg_stat_statements not available
    transactions: int
    s3: dict[str, float]
    actions: dict[str, float]
    calls: dict[str, float]
    objects: dict[str, tuple[int, int]]  # key pattern -> (objects, bytes)
    tables: dict[str, int]


@dataclass
class Histories:
    """Events by type, estimated billable actions by kind and serialized bytes, summed over workflows."""

    workflows: int = 0
    events: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    bytes: int = 0


def key_pattern(key: str) -> str:
    """An object key with its naming segments replaced by `*`: documents/*/*/*.pdf, extractions/*/parsed.pb."""
    parts = []
    for segment in key.split("/"):
        stem, dot, suffix = segment.partition(".")
        parts.append(("*" + dot + suffix) if _NAMING_SEGMENT.match(stem) else segment)
    return "/".join(parts)


def billable_actions(events: Sequence[Any], scheduled: bool = False) -> Counter[str]:
    """Temporal Cloud actions visible in one workflow's history, by kind (ACTIONS_RULE)."""
    from temporalio.api.enums.v1 import EventType

    found: Counter[str] = Counter()
    marker_tasks: set[int] = set()
    once = {
        "WORKFLOW_EXECUTION_STARTED": "workflow started",
        "ACTIVITY_TASK_SCHEDULED": "activity scheduled",
        "TIMER_STARTED": "timer started",
        "WORKFLOW_EXECUTION_SIGNALED": "signal",
        "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES": "search attributes upserted",
        "WORKFLOW_EXECUTION_OPTIONS_UPDATED": "options updated",
        "WORKFLOW_EXECUTION_UPDATE_ACCEPTED": "update accepted",
    }
    for event in events:
        name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        if name in once:
            found[once[name]] += 1
        elif name == "START_CHILD_WORKFLOW_EXECUTION_INITIATED":
            found["child workflow started"] += 2
        elif name == "ACTIVITY_TASK_STARTED" and event.activity_task_started_event_attributes.attempt > 1:
            found["activity retried"] += event.activity_task_started_event_attributes.attempt - 1
        elif name == "MARKER_RECORDED":
            marker_tasks.add(event.marker_recorded_event_attributes.workflow_task_completed_event_id)
    if marker_tasks:
        found["local activities (per workflow task)"] += len(marker_tasks)
    if scheduled:
        found["schedule start"] += SCHEDULE_START_ACTIONS
    return found


def _scrape(port: int, counter: str, key: Callable[[dict[str, str]], str | None]) -> dict[str, float]:
    """A Prometheus counter's values on 127.0.0.1:port, summed by `key(labels)` (None: left out)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:  # the parser names a counter's samples <name>_total
            if sample.name == counter + "_total" and (name := key(sample.labels)) is not None:
                found[name] = found.get(name, 0.0) + sample.value
    return found


def _frontend_action(labels: dict[str, str]) -> str | None:
    if labels.get("service_name") != "frontend" or labels.get("namespace") != "default":
        return None
    return labels.get("action_type", "?")


async def _statements(connection: asyncpg.Connection) -> dict[int, Statement] | None:
    try:
        rows = await connection.fetch(
            BENCH_SQL + "SELECT queryid, calls, total_exec_time, query FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    except asyncpg.PostgresError:  # not preloaded (e.g. an external database): see _prepare
        return None
    return {
        int(r["queryid"]): Statement(str(r["query"]), int(r["calls"]), float(r["total_exec_time"]))
        for r in rows
        if r["queryid"] is not None and BENCH_SQL.strip() not in str(r["query"])
    }


async def _settled_actions(port: int) -> dict[str, float]:
    """The dev server's `action` counter once it has stopped moving: the server reports its metrics on an
    interval, so a read right after a workflow closed can miss its last actions."""
    last = await asyncio.to_thread(_scrape, port, "action", _frontend_action)
    for _ in range(ACTION_SETTLE_READS):
        await asyncio.sleep(ACTION_SETTLE_SECONDS)
        now = await asyncio.to_thread(_scrape, port, "action", _frontend_action)
        if now == last:
            break
        last = now
    return last


def _cpu(stack: Stack) -> dict[str, float]:
    cpu = {name: cpu_seconds(pid) for name, pid in pids(stack).items()}
    cpu["postgres"] = postgres_cpu(stack)
    return cpu


async def snapshot(stack: Stack, connection: asyncpg.Connection, *, before: bool) -> Snapshot:
    """The CPU times are read last before a phase and first after it, so the reading itself (metrics
    scrapes, the bucket listing, the wait for Temporal's counter) stays out of the phase's CPU."""
    cpu = {} if before else _cpu(stack)
    statements = await _statements(connection)
    if statements is None:  # transactions stand in: wait for the backends to flush their counts
        await asyncio.sleep(PGSTAT_FLUSH_SECONDS)
    await connection.execute(BENCH_SQL + "SELECT pg_stat_clear_snapshot()")
    transactions = int(
        await connection.fetchval(
            BENCH_SQL + "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        )
    )
    tables = {
        str(r["relname"]): int(r["size"])
        for r in await connection.fetch(
            BENCH_SQL + "SELECT c.relname, pg_total_relation_size(c.oid) AS size FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
        )
    }
    profile = stack.profile
    s3 = await asyncio.to_thread(
        _scrape, profile.metrics_port("store"), "clausework_s3_requests", lambda labels: labels["operation"]
    )
    calls: dict[str, float] = {}
    for name in SERVICES:
        answered = await asyncio.to_thread(
            _scrape,
            profile.metrics_port(name),
            "clausework_grpc_server_requests",
            lambda labels: None if "Health" in labels["method"] else labels["method"].rsplit("/", 1)[-1],
        )
        calls.update({f"{name} {method}": value for method, value in answered.items()})
    objects: dict[str, tuple[int, int]] = {}
    async with stack.object_store() as store:
        for key, size in (await store.sizes()).items():
            count, total = objects.get(key_pattern(key), (0, 0))
            objects[key_pattern(key)] = (count + 1, total + size)
    actions = await _settled_actions(profile.temporal_server_metrics_port)
    if before:
        cpu = _cpu(stack)
    return Snapshot(cpu, statements, transactions, s3, actions, calls, objects, tables)


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] - before.get(k, 0.0)}


def _sql(text: str, head: int = 100, tail: int = 45) -> str:
    """A statement as a table cell: one line, its start (an UPDATE's SET list) and its end (where the WHERE
    clause tells apart statements that share a select list), pipes escaped."""
    flat = " ".join(text.split())
    if len(flat) > head + tail + 3:
        flat = flat[:head] + " … " + flat[-tail:]
    return "`" + flat.replace("|", "\\|").replace("`", "'") + "`"


def report(section: Section, phase: str, unit: str, count: float, before: Snapshot, after: Snapshot) -> None:
    """The phase's cost per `unit` (a document; a second, for the idle stack) as figures of the section."""
    per = f"{phase}: per {unit}"
    spent = {n: after.cpu[n] - before.cpu.get(n, 0.0) for n in after.cpu}
    for name, seconds in spent.items():
        section.add(f"{per}: CPU {name}", seconds * 1000 / count, "ms")
    section.add(f"{per}: CPU all of these", sum(spent.values()) * 1000 / count, "ms")

    if after.statements is not None and before.statements is not None:
        ran = {
            q: Statement(s.text, s.calls - before.statements.get(q, Statement("", 0, 0.0)).calls,
                         s.milliseconds - before.statements.get(q, Statement("", 0, 0.0)).milliseconds)
            for q, s in after.statements.items()
        }  # fmt: skip
        ran = {q: s for q, s in ran.items() if s.calls > 0}
        section.add(f"{per}: PostgreSQL statements", sum(s.calls for s in ran.values()) / count, "statements")
        section.add(f"{per}: PostgreSQL execution time", sum(s.milliseconds for s in ran.values()) / count, "ms")
        for s in sorted(ran.values(), key=lambda s: -s.calls)[:TOP_STATEMENTS]:
            section.add(
                f"{per}: statement {_sql(s.text)} (mean {s.milliseconds / s.calls:.3f} ms)",
                s.calls / count,
                "calls",
            )
    else:  # see _prepare's note
        section.add(f"{per}: PostgreSQL transactions", (after.transactions - before.transactions) / count, "xacts")

    s3 = _delta(after.s3, before.s3)
    section.add(f"{per}: S3 requests, all", sum(s3.values()) / count, "requests")
    for operation, requests in sorted(s3.items(), key=lambda kv: -kv[1]):
        section.add(f"{per}: S3 requests, {operation}", requests / count, "requests")

    for method, calls in sorted(_delta(after.calls, before.calls).items(), key=lambda kv: -kv[1]):
        section.add(f"{per}: gRPC calls answered, {method}", calls / count, "calls")

    actions = _delta(after.actions, before.actions)
    section.add(f"{per}: Temporal actions (dev server `action` counter), all", sum(actions.values()) / count, "actions")
    for action, value in sorted(actions.items(), key=lambda kv: -kv[1]):
        section.add(f"{per}: Temporal actions (dev server `action` counter), {action}", value / count, "actions")


def report_storage(section: Section, phase: str, unit: str, count: int, before: Snapshot, after: Snapshot) -> None:
    per = f"{phase}: per {unit}"
    total = 0
    for pattern in sorted(set(after.objects) | set(before.objects)):
        objects = after.objects.get(pattern, (0, 0))[0] - before.objects.get(pattern, (0, 0))[0]
        size = after.objects.get(pattern, (0, 0))[1] - before.objects.get(pattern, (0, 0))[1]
        if objects or size:
            total += size
            section.add(f"{per}: S3 bytes, {pattern} ({objects / count:.3g} objects)", size / count, "bytes")
    section.add(f"{per}: S3 bytes, all", total / count, "bytes")
    grown = {t: after.tables[t] - before.tables.get(t, 0) for t in after.tables}
    for table, size in sorted(grown.items(), key=lambda kv: -kv[1]):
        if size:
            section.add(f"{per}: PostgreSQL bytes, table {table} (with indexes, TOAST)", size / count, "bytes")
    section.add(f"{per}: PostgreSQL bytes, all tables", sum(grown.values()) / count, "bytes")


def report_histories(section: Section, phase: str, histories: Histories) -> None:
    if not histories.workflows:
        return
    per = f"{phase}: per workflow ({histories.workflows} fetched)"
    n = histories.workflows
    section.add(f"{per}: history events, all", sum(histories.events.values()) / n, "events")
    for name, value in sorted(histories.events.items(), key=lambda kv: -kv[1]):
        section.add(f"{per}: history events, {name}", value / n, "events")
    section.add(f"{per}: Temporal Cloud actions estimated from history, all", sum(histories.actions.values()) / n,
                "actions")  # fmt: skip
    for name, value in sorted(histories.actions.items(), key=lambda kv: -kv[1]):
        section.add(f"{per}: Temporal Cloud actions estimated from history, {name}", value / n, "actions")
    section.add(f"{per}: history size (serialized events)", histories.bytes / n, "bytes")


async def fetch_histories(
    client: Any, workflow_ids: Iterable[tuple[str, str | None]], scheduled: bool = False
) -> Histories:
    """Histories of closed workflows (id, run id or None for the latest run), summed."""
    from temporalio.api.enums.v1 import EventType

    summed = Histories()
    for ident, run_id in workflow_ids:
        history = await client.get_workflow_handle(ident, run_id=run_id).fetch_history()
        summed.workflows += 1
        summed.events.update(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events)
        summed.actions.update(billable_actions(history.events, scheduled))
        summed.bytes += sum(e.ByteSize() for e in history.events)
    return summed


async def closed(client: Client, ident: str, run_id: str | None = None, timeout: float = WORKFLOW_TIMEOUT) -> None:
    """Wait until a workflow has closed, however it ended; it may not exist yet (the store's relay starts it)."""
    from temporalio.client import WorkflowFailureError
    from temporalio.service import RPCError, RPCStatusCode

    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.get_workflow_handle(ident, run_id=run_id).result()
            return
        except WorkflowFailureError:
            return
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[str]:
    """A completion-webhook receiver on this machine (the bench stack allows http to 127.0.0.0/8)."""
    from aiohttp import web

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


async def submit_all(gateway: str, documents: list[bytes], webhook_url: str = "") -> dict[str, pb.Extraction]:
    """Submit by CLIENTS clients, each id watched from its submit on; the terminal answers by id."""
    queue = list(documents)
    async with Watcher(gateway, timeout=WORKFLOW_TIMEOUT) as watcher:

        async def client() -> None:
            async with grpc.aio.insecure_channel(gateway, options=CHANNEL_OPTIONS) as channel:
                stub = extraction_pb2_grpc.ExtractionServiceStub(channel)
                while queue:
                    created = await stub.CreateExtraction(
                        pb.CreateExtractionRequest(
                            content=queue.pop(),
                            filename="bench.pdf",
                            request_id=str(uuid.uuid4()),
                            options=pb.ExtractionOptions(webhook_url=webhook_url),
                        ),
                        timeout=60,
                    )
                    watcher.watch(created.id)

        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        return await watcher.wait()


async def delete_all(gateway: str, ids: list[str]) -> None:
    async with grpc.aio.insecure_channel(gateway, options=CHANNEL_OPTIONS) as channel:
        stub = extraction_pb2_grpc.ExtractionServiceStub(channel)
        slots = asyncio.Semaphore(CLIENTS)

        async def one(extraction_id: str) -> None:
            async with slots:
                await stub.DeleteExtraction(pb.DeleteExtractionRequest(id=extraction_id), timeout=60)

        await asyncio.gather(*(one(i) for i in ids))


async def _phase(
    stack: Stack, connection: asyncpg.Connection, work: Callable[[], Awaitable[None]], section: Section, name: str
) -> tuple[Snapshot, Snapshot]:
    """Snapshots before and after `work`; its wall time as a figure (what the idle rates multiply)."""
    before = await snapshot(stack, connection, before=True)
    began = time.perf_counter()
    await work()
    section.add(f"{name}: wall time of the phase", time.perf_counter() - began, "s")
    return before, await snapshot(stack, connection, before=False)


async def _prepare(connection: asyncpg.Connection, section: Section) -> None:
    """pg_stat_statements' view in the stack's database (the server preloads the library if it has it)."""
    try:
        await connection.execute(BENCH_SQL + "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await connection.fetchval(BENCH_SQL + "SELECT count(*) FROM pg_stat_statements")
    except asyncpg.PostgresError as error:
        section.notes.append(
            f"pg_stat_statements unavailable ({error}): statements per document not reported; PostgreSQL "
            "transactions stand in for them (pg_stat_database xact_commit + xact_rollback, read 11 s after "
            "each phase, since backends flush those counts up to 10 s after their last transaction)"
        )


@dataclass
class Run:
    """What every phase needs: the stack, a database connection and a Temporal client."""

    stack: Stack
    connection: asyncpg.Connection
    client: Client
    section: Section

    @property
    def gateway(self) -> str:
        return self.stack.gateway_address


async def idle_phase(run: Run, seconds: float) -> None:
    """The stack with nothing to do: its background per second (the outbox relay's and the janitor's
    passes, Temporal's housekeeping), which every phase's figures include for the phase's wall time."""
    before, after = await _phase(run.stack, run.connection, lambda: asyncio.sleep(seconds), run.section, "idle")
    report(run.section, "idle", "second", seconds, before, after)


async def extraction_phase(run: Run, documents: list[bytes], pages: int) -> tuple[Snapshot, list[str]]:
    """The documents through the pipeline; the snapshot before and the ids."""
    done: dict[str, pb.Extraction] = {}

    async def extract() -> None:
        done.update(await submit_all(run.gateway, [unique(d) for d in documents]))
        # The rows end a moment before their workflows: count the workflows' last steps too.
        await asyncio.gather(*(closed(run.client, workflow_id(i)) for i in done))

    first, extracted = await _phase(run.stack, run.connection, extract, run.section, "extraction")
    count, section = len(documents), run.section
    section.add("extraction: SUCCEEDED", sum(1 for e in done.values() if e.state == pb.STATE_SUCCEEDED), f"of {count}")
    section.add("extraction: pages per document", pages / count, "pages")
    report(section, "extraction", "document", count, first, extracted)
    report_storage(section, "extraction", "document", count, first, extracted)
    report_histories(section, "extraction", await fetch_histories(run.client, ((workflow_id(i), None) for i in done)))
    return first, list(done)


async def deletion_phase(run: Run, ids: list[str], first: Snapshot) -> None:
    """DeleteExtraction of every extracted document, to its DeletionWorkflow's end; `first`: before extraction."""

    async def delete() -> None:
        await delete_all(run.gateway, ids)
        await asyncio.gather(*(closed(run.client, deletion_workflow_id(i)) for i in ids))

    before, deleted = await _phase(run.stack, run.connection, delete, run.section, "deletion")
    section, count = run.section, len(ids)
    report(section, "deletion", "document", count, before, deleted)
    report_storage(section, "after deletion, left of what extraction stored", "document", count, first, deleted)
    deletions = await fetch_histories(run.client, ((deletion_workflow_id(i), None) for i in ids))
    report_histories(section, "deletion", deletions)


async def webhook_phase(run: Run, documents: list[bytes]) -> None:
    """The same pipeline with a completion webhook: what the delivery adds."""
    hooks: dict[str, pb.Extraction] = {}
    async with webhook_receiver() as url:

        async def hook() -> None:
            hooks.update(await submit_all(run.gateway, [unique(d) for d in documents], webhook_url=url))
            await asyncio.gather(*(closed(run.client, workflow_id(i)) for i in hooks))

        before, after = await _phase(run.stack, run.connection, hook, run.section, "with a webhook")
    # Delivered after the row ended (the workflow's last step): read back once the workflows closed.
    async with grpc.aio.insecure_channel(run.gateway, options=CHANNEL_OPTIONS) as channel:
        stub = extraction_pb2_grpc.ExtractionServiceStub(channel)
        answers = [await stub.GetExtraction(pb.GetExtractionRequest(id=i), timeout=30) for i in hooks]
    count, section = len(documents), run.section
    delivered = sum(1 for e in answers if e.webhook.state == pb.WEBHOOK_STATE_DELIVERED)
    section.add("with a webhook: delivered", delivered, f"of {count}")
    per = "with a webhook: per document"
    cpu = sum(after.cpu[n] - before.cpu.get(n, 0.0) for n in after.cpu)
    section.add(f"{per}: CPU all of these", cpu * 1000 / count, "ms")
    actions = sum(_delta(after.actions, before.actions).values())
    section.add(f"{per}: Temporal actions (dev server `action` counter), all", actions / count, "actions")
    histories = await fetch_histories(run.client, ((workflow_id(i), None) for i in hooks))
    report_histories(section, "with a webhook", histories)


async def retention_phase(run: Run) -> None:
    """One run of the retention schedule, triggered now: a fixed cost per sweep interval."""
    from temporalio.client import ScheduleActionExecutionStartWorkflow

    schedule = run.client.get_schedule_handle(RETENTION_SCHEDULE_ID)
    runs = len((await schedule.describe()).info.recent_actions)
    await schedule.trigger()
    for _ in range(120):  # up to a minute for the schedule to start it
        recent = (await schedule.describe()).info.recent_actions
        started = recent[-1].action if len(recent) > runs else None
        if isinstance(started, ScheduleActionExecutionStartWorkflow):
            await closed(run.client, started.workflow_id, started.first_execution_run_id)
            history = await fetch_histories(run.client, [(started.workflow_id, started.first_execution_run_id)], True)
            report_histories(run.section, "retention run (a fixed cost per RETENTION_SWEEP_SECONDS)", history)
            return
        await asyncio.sleep(0.5)
    run.section.notes.append("the triggered retention run did not start within a minute")


async def run(stack: Stack, quick: bool) -> Section:
    count = 6 if quick else 20
    hooked = 2 if quick else 5
    section = Section(f"Per-document costs, {count} contracts (capacity model)", COMMAND)
    originals, source = contracts(section, count, quick)
    pages = sum(page_count(d) for d in originals)
    section.load = (
        f"the idle stack first; then {source}, {pages} pages, {sum(len(d) for d in originals) // 1024} KB, unique "
        f"bytes, {CLIENTS} clients "
        f"submitting, each id watched (WatchExtraction) from its submit; then DeleteExtraction of all {count}; "
        f"then {hooked} more with a completion webhook; then one triggered retention run"
    )
    connection = await asyncpg.connect(stack.database_url)
    try:
        await _prepare(connection, section)
        client = await Client.connect(stack.env()["TEMPORAL_ADDRESS"])
        costs = Run(stack, connection, client, section)
        await idle_phase(costs, 5 if quick else 30)
        first, ids = await extraction_phase(costs, originals, pages)
        await deletion_phase(costs, ids, first)
        await webhook_phase(costs, originals[:hooked])
        await retention_phase(costs)
    finally:
        await connection.close()
    section.notes += NOTES
    return section


NOTES = [
    "Each phase runs alone on an otherwise idle stack and is measured from cumulative counters read before "
    "and after it, divided by its documents: background work during the phase (the outbox relay, the "
    "janitor, Temporal's own housekeeping) is included, as it would be in production. The extraction "
    "phase includes one WatchExtraction stream per document (a client waiting for its result) and one "
    "Temporal result() long poll per workflow (the benchmark waiting for the workflows to close).",
    "CPU: user + system time from /proc, 10 ms ticks (coarse for a few documents). PostgreSQL statements: "
    "pg_stat_statements calls (top-level statements, BEGIN/COMMIT included; the trigger's pg_notify is "
    "inside the UPDATE). S3 requests: clausework_s3_requests_total of the store (every HTTP request, "
    "retries included). S3 bytes: the bucket listed before and after; PostgreSQL bytes: "
    "pg_total_relation_size of every table (8 KB pages; deleted rows free space for reuse, not on disk).",
    ACTIONS_RULE,
    "DeletionWorkflow sleeps DELETION_SETTLE_SECONDS before its last sweep: 1 s on the bench stack, 60 s by "
    "default; the length changes no count above, only how long the workflow stays open (and how much of the "
    "idle background a deletion phase would include).",
    "The idle rates are the stack's fixed cost per second (one replica of each process); the per-document "
    "figures include them for their phase's wall time, not subtracted.",
]
