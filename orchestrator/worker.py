"""Builds the Temporal worker: the workflow plus activities bound to their gRPC clients."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from orchestrator.activities import ExtractionActivities
from orchestrator.lifecycle import DeletionWorkflow, RetentionWorkflow
from orchestrator.lifecycle_activities import LifecycleActivities
from orchestrator.telemetry import ActivityTelemetry
from orchestrator.webhooks import WebhookActivities
from orchestrator.workflows import ExtractionWorkflow

# How soon a running activity notices that its workflow was cancelled.
CANCEL_LATENCY = timedelta(seconds=1)


def build_worker(
    client: Client,
    task_queue: str,
    activities: ExtractionActivities,
    lifecycle: LifecycleActivities,
    webhooks: WebhookActivities,
    *,
    max_concurrent_activities: int,
    max_concurrent_workflow_tasks: int,
    graceful_shutdown: timedelta,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[ExtractionWorkflow, DeletionWorkflow, RetentionWorkflow],
        activities=[
            activities.update_status,
            activities.parse_document,
            activities.extract_clauses,
            activities.complete_extraction,
            lifecycle.purge_extraction,
            lifecycle.expire_extractions,
            webhooks.deliver_webhook,
            webhooks.give_up_webhook,
        ],
        max_concurrent_activities=max_concurrent_activities,
        max_concurrent_workflow_tasks=max_concurrent_workflow_tasks,
        graceful_shutdown_timeout=graceful_shutdown,
        # A cancel reaches a running activity with the answer to its next heartbeat: send them at most
        # CANCEL_LATENCY apart (the SDK's default throttle, 80% of the heartbeat timeout, is 8 s).
        max_heartbeat_throttle_interval=CANCEL_LATENCY,
        default_heartbeat_throttle_interval=CANCEL_LATENCY,
        # Tracing interceptors, when on, come from the client (clausework.runtime.telemetry).
        interceptors=[ActivityTelemetry()],
    )
