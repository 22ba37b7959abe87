"""DeletionWorkflow and RetentionWorkflow: the durable halves of DeleteExtraction and of expiry.

DeletionWorkflow (`deletion-<id>`, started by the store's outbox relay after a delete request) asks the
store to purge the extraction until its work has stopped and everything is gone; every step is retried
without limit, so an outage of the store, PostgreSQL or S3 only delays it. After `settle_seconds` it
sweeps the id's objects once more, for a cancelled parser or llm call that landed one late.

RetentionWorkflow runs from the Temporal Schedule `clausework-retention` (orchestrator/schedules.py):
each run turns at most `batch * max_batches` expired extractions into delete requests, which the relay
turns into DeletionWorkflows — the same deletion as DeleteExtraction.

Histories hold extraction ids and counts only (the claim-check rule): nothing of a contract.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from clausework.pipeline.payloads import (
        DELETION_WORKFLOW_NAME,
        RETENTION_WORKFLOW_NAME,
        DeletionInput,
        ExpireInput,
        PurgeInput,
        PurgeOutput,
        RetentionInput,
    )
    from orchestrator.lifecycle_activities import LifecycleActivities
    from orchestrator.workflows import FOREVER, TRANSIENT_RETRIES

# While the extraction's work is still stopping, ask again after this long, doubling up to the maximum.
RECHECK = timedelta(seconds=2)
MAX_RECHECK = timedelta(minutes=1)


@workflow.defn(name=DELETION_WORKFLOW_NAME)
class DeletionWorkflow:
    @workflow.run
    async def run(self, task: DeletionInput) -> bool:
        """True when the PDF went too (no other extraction of the tenant used it)."""
        wait = RECHECK
        purged = await self._purge(task.extraction_id)
        while purged.pending:
            await workflow.sleep(wait)
            wait = min(wait * 2, MAX_RECHECK)
            purged = await self._purge(task.extraction_id)
        if task.settle_seconds > 0:
            await workflow.sleep(timedelta(seconds=task.settle_seconds))
            await self._purge(task.extraction_id)  # the row is gone: deletes only late objects
        return purged.document_deleted

    async def _purge(self, extraction_id: str) -> PurgeOutput:
        return await workflow.execute_activity_method(
            LifecycleActivities.purge_extraction,
            PurgeInput(extraction_id),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=FOREVER,
        )


@workflow.defn(name=RETENTION_WORKFLOW_NAME)
class RetentionWorkflow:
    @workflow.run
    async def run(self, task: RetentionInput) -> int:
        """The number of expired extractions given a delete request by this run."""
        total = 0
        for _ in range(task.max_batches):
            done = await workflow.execute_activity_method(
                LifecycleActivities.expire_extractions,
                ExpireInput(task.batch),
                start_to_close_timeout=timedelta(minutes=1),
                schedule_to_close_timeout=timedelta(minutes=10),
                retry_policy=TRANSIENT_RETRIES,
            )
            total += done.marked
            if done.marked < task.batch:
                break
        return total
