"""ExtractionWorkflow's control flow, with activities replaced by fault-injecting fakes on a real
(local dev) Temporal server: retries for transient errors, none for bad input, FAILED state recorded.
The fakes record status writes where the real activities make them (each work activity its own stage)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from clausework.pipeline import TERMINAL_STATES
from clausework.pipeline.payloads import (
    CompleteInput,
    CompleteOutput,
    ExtractInput,
    ExtractionInput,
    ExtractOutput,
    ParseInput,
    ParseOutput,
    StatusOutput,
    StatusUpdate,
)
from contracts.v1 import extraction_pb2 as pb
from orchestrator.workflows import ExtractionWorkflow


class Fakes:
    """Activities with the production names that record calls and fail as told."""

    def __init__(self, parse_failures: list[Exception]) -> None:
        self.parse_failures = parse_failures
        self.parse_attempts = 0
        self.updates: list[StatusUpdate] = []

    def record(self, update: StatusUpdate) -> StatusOutput:
        self.updates.append(update)
        return StatusOutput(update.state, update.error_code, update.error_message)

    @activity.defn(name="update_status")
    async def update_status(self, update: StatusUpdate) -> StatusOutput:
        return self.record(update)

    @activity.defn(name="parse_document")
    async def parse_document(self, task: ParseInput) -> ParseOutput:
        started = self.record(StatusUpdate(task.extraction_id, pb.STATE_RUNNING, pb.STAGE_PARSING))
        if started.state in TERMINAL_STATES:
            return ParseOutput(0, 0, ended=started)
        self.parse_attempts += 1
        if self.parse_failures:
            raise self.parse_failures.pop(0)
        assert task.target_key.endswith("/parsed.pb")
        self.record(StatusUpdate(task.extraction_id, pb.STATE_RUNNING, pb.STAGE_EXTRACTING, page_count=3))
        return ParseOutput(page_count=3, char_count=100)

    @activity.defn(name="extract_clauses")
    async def extract_clauses(self, task: ExtractInput) -> ExtractOutput:
        return ExtractOutput(clause_count=2, model="fake")

    @activity.defn(name="complete_extraction")
    async def complete_extraction(self, task: CompleteInput) -> CompleteOutput:
        self.record(StatusUpdate(task.extraction_id, pb.STATE_RUNNING, pb.STAGE_STORING))
        return CompleteOutput(clause_count=2, result_key=f"results/{task.extraction_id}.json")


async def run(client: Client, fakes: Fakes) -> object:
    queue = f"test-{uuid.uuid4()}"
    extraction_id = str(uuid.uuid4())
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ExtractionWorkflow],
        activities=[fakes.update_status, fakes.parse_document, fakes.extract_clauses, fakes.complete_extraction],
    ):
        return await client.execute_workflow(
            ExtractionWorkflow.run,
            ExtractionInput(extraction_id=extraction_id, document_key="documents/ab/abc.pdf"),
            id=f"extraction-{extraction_id}",
            task_queue=queue,
        )


async def test_happy_path_moves_through_the_stages(env: WorkflowEnvironment) -> None:
    fakes = Fakes([])
    outcome = await run(env.client, fakes)
    assert getattr(outcome, "clause_count") == 2  # noqa: B009
    assert [(u.state, u.stage) for u in fakes.updates] == [
        (pb.STATE_RUNNING, pb.STAGE_PARSING),
        (pb.STATE_RUNNING, pb.STAGE_EXTRACTING),
        (pb.STATE_RUNNING, pb.STAGE_STORING),
    ]
    assert fakes.updates[1].page_count == 3


async def test_transient_errors_are_retried(env: WorkflowEnvironment) -> None:
    fakes = Fakes(
        [ApplicationError("parser down", type="UNAVAILABLE"), ApplicationError("slow", type="DEADLINE_EXCEEDED")]
    )
    await run(env.client, fakes)
    assert fakes.parse_attempts == 3
    assert all(u.state != pb.STATE_FAILED for u in fakes.updates)


async def test_bad_input_fails_at_once_with_the_reason(env: WorkflowEnvironment) -> None:
    fakes = Fakes([ApplicationError("the PDF is encrypted", type="ENCRYPTED_PDF", non_retryable=True)])
    with pytest.raises(WorkflowFailureError) as raised:
        await run(env.client, fakes)
    assert fakes.parse_attempts == 1
    last = fakes.updates[-1]
    assert (last.state, last.stage, last.error_code) == (pb.STATE_FAILED, pb.STAGE_DONE, "ENCRYPTED_PDF")
    assert "encrypted" in last.error_message
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ENCRYPTED_PDF"


class RowFakes(Fakes):
    """A store row the fakes keep: a terminal state is never left, and updates answer with the row."""

    def __init__(self, state: int = pb.STATE_PENDING, final_failures: int = 0) -> None:
        super().__init__([])
        self.state = state
        self.final_failures = final_failures
        self.final_attempts = 0

    def record(self, update: StatusUpdate) -> StatusOutput:
        self.updates.append(update)
        if self.state not in TERMINAL_STATES:
            self.state = update.state
        return StatusOutput(self.state)

    @activity.defn(name="update_status")
    async def update_status(self, update: StatusUpdate) -> StatusOutput:
        assert update.final, "only the final write is an activity of its own"
        self.final_attempts += 1
        if self.final_attempts <= self.final_failures:  # the database is away, for longer than any budget
            self.updates.append(update)
            raise ApplicationError("database unavailable", type="INTERNAL")
        return self.record(update)


async def test_a_row_cancelled_before_the_start_was_recorded_ends_the_workflow_cancelled(
    env: WorkflowEnvironment,
) -> None:
    fakes = RowFakes(state=pb.STATE_CANCELLED)
    with pytest.raises(WorkflowFailureError) as raised:
        await run(env.client, fakes)
    assert isinstance(raised.value.cause, CancelledError)
    assert fakes.parse_attempts == 0, "no work for a cancelled extraction"


async def test_the_final_write_is_retried_until_it_lands(env: WorkflowEnvironment) -> None:
    fakes = RowFakes(final_failures=4)
    fakes.parse_failures = [ApplicationError("the PDF is encrypted", type="ENCRYPTED_PDF", non_retryable=True)]
    with pytest.raises(WorkflowFailureError):
        await run(env.client, fakes)
    assert fakes.final_attempts == 5, "retried past failures a non-final update would give up on"
    assert fakes.state == pb.STATE_FAILED


async def test_a_failure_that_loses_to_completion_ends_as_the_row_says(env: WorkflowEnvironment) -> None:
    fakes = RowFakes(state=pb.STATE_SUCCEEDED)
    outcome = await run(env.client, fakes)
    assert getattr(outcome, "clause_count") == 2  # noqa: B009 -- read back by the idempotent completion


class SlowParseFakes(RowFakes):
    """A parse that finishes successfully even though its workflow is cancelled meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.parsing = asyncio.Event()

    @activity.defn(name="parse_document")
    async def parse_document(self, task: ParseInput) -> ParseOutput:
        self.parse_attempts += 1
        self.parsing.set()
        await asyncio.sleep(1.5)  # no heartbeat: it never hears of the cancel and completes
        return ParseOutput(page_count=3, char_count=100)


async def test_a_cancel_during_an_activity_that_completes_anyway_is_honoured(env: WorkflowEnvironment) -> None:
    fakes = SlowParseFakes()
    queue = f"test-{uuid.uuid4()}"
    extraction_id = str(uuid.uuid4())
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[ExtractionWorkflow],
        activities=[fakes.update_status, fakes.parse_document, fakes.extract_clauses, fakes.complete_extraction],
    ):
        handle = await env.client.start_workflow(
            ExtractionWorkflow.run,
            ExtractionInput(extraction_id=extraction_id, document_key="documents/ab/abc.pdf"),
            id=f"extraction-{extraction_id}",
            task_queue=queue,
        )
        await asyncio.wait_for(fakes.parsing.wait(), 30)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as raised:
            await handle.result()
    assert isinstance(raised.value.cause, CancelledError)
    assert fakes.state == pb.STATE_CANCELLED
    assert not [u for u in fakes.updates if u.stage == pb.STAGE_EXTRACTING], "no work after the cancel"
