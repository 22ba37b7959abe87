"""The worker's metrics: activity outcomes (prometheus_client) and the Temporal SDK's own metrics.

The SDK's metrics (task latencies, poll results, slots, workflow completions, ...) come from its Rust
core, which serves them itself on a second port (`WORKER_TEMPORAL_METRICS_PORT`), next to ours on
`WORKER_METRICS_PORT`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import Counter, Histogram
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from clausework.pipeline.payloads import workflow_id
from clausework.runtime.jsonlog import log_fields

ACTIVITIES = Counter(
    "clausework_worker_activities",
    "Activity attempts finished by this worker, by activity and outcome "
    "(completed; retrying: failed, retryable; failed: failed for good; cancelled).",
    ["activity", "outcome"],
)
ACTIVITY_DURATION = Histogram(
    "clausework_worker_activity_duration_seconds",
    "Duration of one activity attempt on this worker, by activity.",
    ["activity"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800),
)
WORKFLOW_ID_PREFIX = workflow_id("")


def temporal_runtime(host: str, port: int) -> Runtime | None:
    """A Temporal runtime serving the SDK's metrics on host:port in Prometheus format; None if port is 0."""
    if not port:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{host}:{port}")))


def outcome_of(error: BaseException | None) -> str:
    if error is None:
        return "completed"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, ApplicationError) and error.non_retryable:
        return "failed"
    return "retrying"


class ActivityTelemetry(Interceptor):
    """Counts and times activity attempts; their log lines carry the workflow and extraction id."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(next)


class _ActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        fields = {"workflow_id": info.workflow_id, "activity": info.activity_type, "attempt": info.attempt}
        if info.workflow_id and info.workflow_id.startswith(WORKFLOW_ID_PREFIX):
            fields["extraction_id"] = info.workflow_id.removeprefix(WORKFLOW_ID_PREFIX)
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            with log_fields(**fields):
                return await super().execute_activity(input)
        except BaseException as raised:
            error = raised
            raise
        finally:
            ACTIVITIES.labels(info.activity_type, outcome_of(error)).inc()
            ACTIVITY_DURATION.labels(info.activity_type).observe(time.perf_counter() - started)
