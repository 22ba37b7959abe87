"""DeletionWorkflow, RetentionWorkflow and the completion webhook step, with fake activities on a real
(local dev) Temporal server."""

from __future__ import annotations

import uuid

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from clausework.pipeline.payloads import (
    CompleteInput,
    CompleteOutput,
    DeletionInput,
    ExpireInput,
    ExpireOutput,
    ExtractInput,
    ExtractionInput,
    ExtractOutput,
    ParseInput,
    ParseOutput,
    PurgeInput,
    PurgeOutput,
    RetentionInput,
    StatusOutput,
    StatusUpdate,
    WebhookInput,
    WebhookOutput,
)
from contracts.v1 import extraction_pb2 as pb
from orchestrator.lifecycle import DeletionWorkflow, RetentionWorkflow
from orchestrator.workflows import ExtractionWorkflow


class Fakes:
    def __init__(self) -> None:
        self.purges: list[str] = []
        self.pending_purges = 0
        self.purge_failures = 0
        self.expirable = 0
        self.expire_calls = 0
        self.webhook_failures: list[ApplicationError] = []
        self.webhook_attempts = 0
        self.given_up: list[str] = []
        self.updates: list[StatusUpdate] = []

    @activity.defn(name="purge_extraction")
    async def purge_extraction(self, task: PurgeInput) -> PurgeOutput:
        if self.purge_failures:
            self.purge_failures -= 1
            raise ApplicationError("S3 is down", type="UNAVAILABLE")
        self.purges.append(task.extraction_id)
        if self.pending_purges:
            self.pending_purges -= 1
            return PurgeOutput(pending=True)
        return PurgeOutput(pending=False, document_deleted=len(self.purges) == 1 + 2)

    @activity.defn(name="expire_extractions")
    async def expire_extractions(self, task: ExpireInput) -> ExpireOutput:
        self.expire_calls += 1
        marked = min(task.limit, self.expirable)
        self.expirable -= marked
        return ExpireOutput(marked)

    @activity.defn(name="deliver_webhook")
    async def deliver_webhook(self, task: WebhookInput) -> WebhookOutput:
        self.webhook_attempts += 1
        if self.webhook_failures:
            raise self.webhook_failures.pop(0)
        return WebhookOutput(pb.WEBHOOK_STATE_DELIVERED, 200)

    @activity.defn(name="give_up_webhook")
    async def give_up_webhook(self, task: WebhookInput) -> None:
        self.given_up.append(task.extraction_id)

    @activity.defn(name="update_status")
    async def update_status(self, update: StatusUpdate) -> StatusOutput:
        self.updates.append(update)
        return StatusOutput(update.state)

    @activity.defn(name="parse_document")
    async def parse_document(self, task: ParseInput) -> ParseOutput:
        return ParseOutput(page_count=1, char_count=10)

    @activity.defn(name="extract_clauses")
    async def extract_clauses(self, task: ExtractInput) -> ExtractOutput:
        return ExtractOutput(clause_count=1, model="fake")

    @activity.defn(name="complete_extraction")
    async def complete_extraction(self, task: CompleteInput) -> CompleteOutput:
        return CompleteOutput(clause_count=1, result_key="results/x.json")

    def worker(self, client: Client, queue: str) -> Worker:
        return Worker(
            client,
            task_queue=queue,
            workflows=[DeletionWorkflow, RetentionWorkflow, ExtractionWorkflow],
            activities=[
                self.purge_extraction,
                self.expire_extractions,
                self.deliver_webhook,
                self.give_up_webhook,
                self.update_status,
                self.parse_document,
                self.extract_clauses,
                self.complete_extraction,
            ],
        )


async def test_deletion_waits_for_the_work_to_stop_survives_outages_and_sweeps_late(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    fakes.pending_purges, fakes.purge_failures = 1, 2
    queue, ident = f"test-{uuid.uuid4()}", str(uuid.uuid4())
    async with fakes.worker(env.client, queue):
        document_deleted = await env.client.execute_workflow(
            DeletionWorkflow.run, DeletionInput(ident, settle_seconds=0.5), id=f"deletion-{ident}", task_queue=queue
        )
    # pending once, then the purge, then the late sweep; the two outages were retried.
    assert fakes.purges == [ident, ident, ident]
    assert document_deleted is False  # the first non-pending purge's answer, not the sweep's


async def test_retention_runs_bounded_batches(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    fakes.expirable = 25
    queue = f"test-{uuid.uuid4()}"
    async with fakes.worker(env.client, queue):
        marked = await env.client.execute_workflow(
            RetentionWorkflow.run, RetentionInput(batch=10, max_batches=2), id=f"r-{uuid.uuid4()}", task_queue=queue
        )
        assert (marked, fakes.expire_calls, fakes.expirable) == (20, 2, 5)  # bounded: the rest waits
        marked = await env.client.execute_workflow(
            RetentionWorkflow.run, RetentionInput(batch=10, max_batches=5), id=f"r-{uuid.uuid4()}", task_queue=queue
        )
        assert (marked, fakes.expire_calls) == (5, 3)


async def run_extraction(env: WorkflowEnvironment, fakes: Fakes, webhook: bool) -> object:
    queue, ident = f"test-{uuid.uuid4()}", str(uuid.uuid4())
    async with fakes.worker(env.client, queue):
        return await env.client.execute_workflow(
            ExtractionWorkflow.run,
            ExtractionInput(ident, "documents/x.pdf", webhook=webhook),
            id=f"extraction-{ident}",
            task_queue=queue,
        )


async def test_webhook_is_delivered_after_the_final_write_and_retried(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    fakes.webhook_failures = [ApplicationError("HTTP 500", type="WEBHOOK_RETRYING")]
    outcome = await run_extraction(env, fakes, webhook=True)
    assert getattr(outcome, "clause_count") == 1  # noqa: B009
    assert fakes.webhook_attempts == 2 and fakes.given_up == []
    fakes = Fakes()
    await run_extraction(env, fakes, webhook=False)
    assert fakes.webhook_attempts == 0


async def test_a_failed_webhook_is_given_up_without_changing_the_outcome(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    fakes.webhook_failures = [ApplicationError("HTTP 404", type="WEBHOOK_FAILED", non_retryable=True)]
    outcome = await run_extraction(env, fakes, webhook=True)
    assert getattr(outcome, "clause_count") == 1  # noqa: B009
    assert fakes.webhook_attempts == 1 and len(fakes.given_up) == 1
