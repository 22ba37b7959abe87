"""ExtractionWorkflow: parse → extract → store, with per-activity timeouts and retry policies.

Transient faults (a service restarting, a deadline) are retried with backoff until the activity's
schedule-to-close budget runs out; errors caused by the document are not retried: the extraction is
marked FAILED with the service's reason and the workflow fails with it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from contracts.v1 import extraction_pb2 as pb
    from orchestrator.activities import ExtractionActivities
    from orchestrator.payloads import (
        WORKFLOW_NAME,
        CompleteInput,
        ExtractInput,
        ExtractionInput,
        ExtractionOutcome,
        ParseInput,
        StatusUpdate,
        clauses_key,
        parsed_key,
    )

TRANSIENT_RETRIES = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=0,  # bounded by schedule_to_close_timeout instead
)
HEARTBEAT = timedelta(seconds=10)


@workflow.defn(name=WORKFLOW_NAME)
class ExtractionWorkflow:
    @workflow.run
    async def run(self, task: ExtractionInput) -> ExtractionOutcome:
        extraction_id = task.extraction_id
        try:
            await self._status(StatusUpdate(extraction_id, pb.STATE_RUNNING, pb.STAGE_PARSING))
            parsed = await workflow.execute_activity_method(
                ExtractionActivities.parse_document,
                ParseInput(source_key=task.document_key, target_key=parsed_key(extraction_id)),
                start_to_close_timeout=timedelta(minutes=10),
                schedule_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=HEARTBEAT,
                retry_policy=TRANSIENT_RETRIES,
            )
            await self._status(
                StatusUpdate(
                    extraction_id,
                    pb.STATE_RUNNING,
                    pb.STAGE_EXTRACTING,
                    page_count=parsed.page_count,
                    char_count=parsed.char_count,
                    pages_parsed=parsed.page_count,
                    pages_total=parsed.page_count,
                )
            )
            await workflow.execute_activity_method(
                ExtractionActivities.extract_clauses,
                ExtractInput(
                    source_key=parsed_key(extraction_id),
                    target_key=clauses_key(extraction_id),
                    extraction_id=extraction_id,
                    pages_total=parsed.page_count,
                ),
                start_to_close_timeout=timedelta(minutes=30),
                schedule_to_close_timeout=timedelta(hours=2),
                heartbeat_timeout=HEARTBEAT,
                retry_policy=TRANSIENT_RETRIES,
            )
            await self._status(StatusUpdate(extraction_id, pb.STATE_RUNNING, pb.STAGE_STORING))
            done = await workflow.execute_activity_method(
                ExtractionActivities.complete_extraction,
                CompleteInput(extraction_id=extraction_id, clauses_key=clauses_key(extraction_id)),
                start_to_close_timeout=timedelta(minutes=2),
                schedule_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=HEARTBEAT,
                retry_policy=TRANSIENT_RETRIES,
            )
        except (asyncio.CancelledError, ActivityError) as error:
            if not is_cancelled_exception(error):
                if isinstance(error, asyncio.CancelledError):
                    raise
                code, message = _failure_reason(error)
                workflow.logger.info("extraction failed", extra={"extraction_id": extraction_id, "code": code})
                await self._status(
                    StatusUpdate(extraction_id, pb.STATE_FAILED, pb.STAGE_DONE, error_code=code, error_message=message)
                )
                raise ApplicationError(message, type=code, non_retryable=True) from error
            # CancelExtraction: in-flight activities are cancelled through their heartbeats; record it.
            workflow.logger.info("extraction cancelled", extra={"extraction_id": extraction_id})
            await self._status(StatusUpdate(extraction_id, pb.STATE_CANCELLED, pb.STAGE_DONE))
            raise asyncio.CancelledError() from error
        return ExtractionOutcome(extraction_id, done.clause_count, done.result_key)

    async def _status(self, update: StatusUpdate) -> None:
        await workflow.execute_activity_method(
            ExtractionActivities.update_status,
            update,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=TRANSIENT_RETRIES,
        )


def _failure_reason(error: ActivityError) -> tuple[str, str]:
    """The user-facing (code, message) for a failed activity."""
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable:
        return cause.type or "INTERNAL", cause.message
    return "INTERNAL", f"the pipeline gave up after retrying: {cause or error}"
