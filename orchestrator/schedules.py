"""The Temporal Schedule that deletes expired extractions, created (or brought up to date) at worker start.

A schedule, not cron or a loop in a service: Temporal runs it once however many workers there are, keeps
each run's history, and shows it in the UI (Schedules → `clausework-retention`), where an operator can
pause it or trigger a run. Overlapping runs are skipped: a slow run is never doubled.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from clausework.pipeline.payloads import RETENTION_WORKFLOW_NAME, RetentionInput

log = logging.getLogger(__name__)

RETENTION_SCHEDULE_ID = "clausework-retention"
RETENTION_WORKFLOW_ID = "clausework-retention-run"
MAX_BACKOFF_SECONDS = 30.0


def retention_schedule(task_queue: str, every: timedelta, task: RetentionInput) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RETENTION_WORKFLOW_NAME,
            task,
            id=RETENTION_WORKFLOW_ID,
            task_queue=task_queue,
            execution_timeout=max(every * 10, timedelta(minutes=30)),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_retention_schedule(client: Client, schedule: Schedule) -> None:
    """Create the schedule, or update it to `schedule` if it exists (every worker does this at start)."""
    try:
        await client.create_schedule(RETENTION_SCHEDULE_ID, schedule)
        log.info("retention schedule created", extra={"schedule_id": RETENTION_SCHEDULE_ID})
        return
    except ScheduleAlreadyRunningError:
        pass

    def replace(current: ScheduleUpdateInput) -> ScheduleUpdate:
        # Keep an operator's pause (state), replace what the deployment defines.
        return ScheduleUpdate(
            schedule=Schedule(action=schedule.action, spec=schedule.spec, policy=schedule.policy,
                              state=current.description.schedule.state)
        )  # fmt: skip

    await client.get_schedule_handle(RETENTION_SCHEDULE_ID).update(replace)
    log.info("retention schedule updated", extra={"schedule_id": RETENTION_SCHEDULE_ID})


async def keep_trying(client: Client, schedule: Schedule) -> None:
    """ensure_retention_schedule until it succeeds: a worker starts even while Temporal is unsteady."""
    backoff = 1.0
    while True:
        try:
            await ensure_retention_schedule(client, schedule)
            return
        except Exception as error:
            log.warning("could not set up the retention schedule", extra={"error": repr(error)[:300]})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
