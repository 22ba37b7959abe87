"""Builds the Temporal worker: the workflow plus activities bound to their gRPC clients."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from orchestrator.activities import ExtractionActivities
from orchestrator.telemetry import ActivityTelemetry
from orchestrator.workflows import ExtractionWorkflow


def build_worker(
    client: Client,
    task_queue: str,
    activities: ExtractionActivities,
    *,
    max_concurrent_activities: int,
    max_concurrent_workflow_tasks: int,
    graceful_shutdown: timedelta,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[ExtractionWorkflow],
        activities=[
            activities.update_status,
            activities.parse_document,
            activities.extract_clauses,
            activities.complete_extraction,
        ],
        max_concurrent_activities=max_concurrent_activities,
        max_concurrent_workflow_tasks=max_concurrent_workflow_tasks,
        graceful_shutdown_timeout=graceful_shutdown,
        # Tracing interceptors, when on, come from the client (services.common.telemetry).
        interceptors=[ActivityTelemetry()],
    )
