"""ExtractionWorkflow: parse → extract → store, with per-activity timeouts and retry policies.

Three activities a document: each work activity records its own stage in the store (the activities
are the only writers of state and stage); a separate write only ends a failed or cancelled one.

Transient faults (a service restarting, a deadline) are retried with backoff until the activity's
schedule-to-close budget runs out; errors caused by the document are not retried: the extraction is
marked FAILED with the service's reason and the workflow fails with it.

The row and the workflow always agree on how it ended: the workflow never ends before the row records
a terminal state (that last write is retried without limit), and it ends the way the row says — so a
cancel that lost the race to completion ends COMPLETED, and a row cancelled before its workflow was
recorded as started ends the workflow CANCELED at its first step (the parse activity's first write
answers with the row's state and parses nothing).

Once the row records the end, an extraction created with a webhook gets its completion event
(orchestrator/webhooks.py): a delivery activity retried with backoff for up to 24 h, which neither a
further cancel request nor its own failure changes the workflow's outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from clausework.pipeline import TERMINAL_STATES
    from clausework.pipeline.payloads import (
        WORKFLOW_NAME,
        CompleteInput,
        CompleteOutput,
        ExtractInput,
        ExtractionInput,
        ExtractionOutcome,
        ParseInput,
        StatusOutput,
        StatusUpdate,
        WebhookInput,
        clauses_key,
        parsed_key,
    )
    from contracts.v1 import extraction_pb2 as pb
    from orchestrator.activities import ExtractionActivities
    from orchestrator.webhooks import WebhookActivities

T = TypeVar("T")

TRANSIENT_RETRIES = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=0,  # bounded by schedule_to_close_timeout instead
)
# The write that records how the workflow ended: no budget, it must land (e.g. after a long database outage).
FOREVER = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)
# Webhook deliveries: exponential backoff; WEBHOOK_BUDGET bounds the total, as the issue promises callers.
WEBHOOK_RETRIES = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(hours=1)
)
WEBHOOK_BUDGET = timedelta(hours=24)
HEARTBEAT = timedelta(seconds=10)
# Work activities are awaited until they have really stopped, so nothing they write lands after the
# workflow deleted a cancelled extraction's objects.
WAIT = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED


@workflow.defn(name=WORKFLOW_NAME)
class ExtractionWorkflow:
    @workflow.run
    async def run(self, task: ExtractionInput) -> ExtractionOutcome:
        try:
            outcome = await self._extract(task)
        except (asyncio.CancelledError, ApplicationError):  # CANCELLED or FAILED, as the row says
            if task.webhook:
                await self._notify(task.extraction_id)
            raise
        if task.webhook:
            await self._notify(task.extraction_id)
        return outcome

    async def _extract(self, task: ExtractionInput) -> ExtractionOutcome:
        extraction_id = task.extraction_id
        try:
            done = await self._pipeline(task)
        except (asyncio.CancelledError, ActivityError) as error:
            if isinstance(error, ActivityError) and not is_cancelled_exception(error):
                code, message = _failure_reason(error)
                workflow.logger.info("extraction failed", extra={"extraction_id": extraction_id, "code": code})
                update = StatusUpdate(
                    extraction_id, pb.STATE_FAILED, pb.STAGE_DONE, error_code=code, error_message=message, final=True
                )
            else:  # CancelExtraction: in-flight activities are cancelled through their heartbeats; record it.
                workflow.logger.info("extraction cancelled", extra={"extraction_id": extraction_id})
                update = StatusUpdate(extraction_id, pb.STATE_CANCELLED, pb.STAGE_DONE, final=True)
            return await self._ended(task, await self._record_end(update))
        if isinstance(done, StatusOutput):  # cancelled before this workflow's start was recorded
            return await self._ended(task, done)
        return ExtractionOutcome(extraction_id, done.clause_count, done.result_key)

    async def _pipeline(self, task: ExtractionInput) -> CompleteOutput | StatusOutput:
        """The result, or the row's state when it was terminal before the first step."""
        extraction_id = task.extraction_id
        parsed = await workflow.execute_activity_method(
            ExtractionActivities.parse_document,
            ParseInput(extraction_id, source_key=task.document_key, target_key=parsed_key(extraction_id)),
            start_to_close_timeout=timedelta(minutes=10),
            schedule_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=TRANSIENT_RETRIES,
            cancellation_type=WAIT,
        )
        _stop_if_cancelled()
        if parsed.ended is not None and parsed.ended.state in TERMINAL_STATES:
            return parsed.ended
        await workflow.execute_activity_method(
            ExtractionActivities.extract_clauses,
            ExtractInput(extraction_id, source_key=parsed_key(extraction_id), target_key=clauses_key(extraction_id)),
            start_to_close_timeout=timedelta(minutes=30),
            schedule_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=TRANSIENT_RETRIES,
            cancellation_type=WAIT,
        )
        _stop_if_cancelled()
        return await self._complete(extraction_id)

    async def _complete(self, extraction_id: str) -> CompleteOutput:
        return await workflow.execute_activity_method(
            ExtractionActivities.complete_extraction,
            CompleteInput(extraction_id=extraction_id, clauses_key=clauses_key(extraction_id)),
            start_to_close_timeout=timedelta(minutes=2),
            schedule_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=TRANSIENT_RETRIES,
            cancellation_type=WAIT,
        )

    async def _ended(self, task: ExtractionInput, ended: StatusOutput) -> ExtractionOutcome:
        """End the way the row says the extraction ended."""
        if ended.state == pb.STATE_SUCCEEDED:  # the completion won a race with a cancel or a failure
            done = await self._complete(task.extraction_id)  # idempotent: reads back the stored result
            return ExtractionOutcome(task.extraction_id, done.clause_count, done.result_key)
        if ended.state == pb.STATE_CANCELLED:
            raise asyncio.CancelledError()
        raise ApplicationError(ended.error_message or "failed", type=ended.error_code or "INTERNAL", non_retryable=True)

    async def _record_end(self, update: StatusUpdate) -> StatusOutput:
        """The final write, which a (further) cancel request must not interrupt."""
        return await _uninterruptible(self._final_write(update))

    async def _notify(self, extraction_id: str) -> None:
        """Deliver the completion webhook; its failure is recorded on the row, never raised."""
        try:
            await _uninterruptible(
                workflow.execute_activity_method(
                    WebhookActivities.deliver_webhook,
                    WebhookInput(extraction_id),
                    start_to_close_timeout=timedelta(minutes=1),
                    schedule_to_close_timeout=WEBHOOK_BUDGET,
                    retry_policy=WEBHOOK_RETRIES,
                )
            )
        except ActivityError:
            await _uninterruptible(
                workflow.execute_activity_method(
                    WebhookActivities.give_up_webhook,
                    WebhookInput(extraction_id),
                    start_to_close_timeout=timedelta(seconds=30),
                    schedule_to_close_timeout=timedelta(hours=1),
                    retry_policy=TRANSIENT_RETRIES,
                )
            )

    async def _final_write(self, update: StatusUpdate) -> StatusOutput:
        return await workflow.execute_activity_method(
            ExtractionActivities.update_status,
            update,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=None,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=FOREVER,
        )


def _stop_if_cancelled() -> None:
    """An activity that finishes after its cancel was requested returns its result (the SDK swallows the
    cancel while it waits for the activity to stop): honour the request at the next step instead."""
    if workflow.cancellation_reason() is not None:
        raise asyncio.CancelledError()


async def _uninterruptible(work: Awaitable[T]) -> T:
    """Await `work` to its end even if the workflow is cancelled meanwhile (the cancel was already handled)."""
    future = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():
                raise
            continue


def _failure_reason(error: ActivityError) -> tuple[str, str]:
    """The user-facing (code, message) for a failed activity."""
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable:
        return cause.type or "INTERNAL", cause.message
    return "INTERNAL", f"the pipeline gave up after retrying: {cause or error}"
