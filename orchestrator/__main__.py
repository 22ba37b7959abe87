"""Worker process: `python -m orchestrator`. Runs the Temporal worker and a gRPC health endpoint."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.client import Client

from clausework.pipeline.payloads import RetentionInput
from clausework.runtime.jsonlog import configure_logging
from clausework.runtime.rpc import channel, serve
from clausework.runtime.telemetry import configure_tracing, temporal_interceptors
from contracts.internal.v1 import llm_pb2_grpc, parser_pb2_grpc, store_pb2_grpc
from orchestrator.activities import ExtractionActivities
from orchestrator.lifecycle_activities import LifecycleActivities
from orchestrator.schedules import keep_trying, retention_schedule
from orchestrator.settings import WorkerSettings
from orchestrator.telemetry import temporal_runtime
from orchestrator.webhooks import SigningKeys, WebhookActivities, WebhookSender
from orchestrator.worker import build_worker

log = logging.getLogger("orchestrator")


async def main(settings: WorkerSettings) -> None:
    client = await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        interceptors=temporal_interceptors(),
        runtime=temporal_runtime(settings.host, settings.temporal_metrics_port),
    )
    channels = [
        channel(address, settings.max_message_bytes)
        for address in (settings.store_address, settings.parser_address, settings.llm_address)
    ]
    store, parser, llm = channels
    store_stub = store_pb2_grpc.StoreServiceStub(store)
    activities = ExtractionActivities(
        store_stub, parser_pb2_grpc.ParserServiceStub(parser), llm_pb2_grpc.LlmServiceStub(llm)
    )
    sender = WebhookSender(settings.webhook_policy(), signing_keys(settings), settings.webhook_timeout_seconds)
    worker = build_worker(
        client,
        settings.task_queue,
        activities,
        LifecycleActivities(store_stub),
        WebhookActivities(store_stub, sender, clause_text_tenants(settings)),
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        graceful_shutdown=timedelta(seconds=settings.shutdown_grace_seconds),
    )
    running = asyncio.create_task(worker.run())
    schedule = retention_schedule(
        settings.task_queue,
        timedelta(seconds=settings.retention_sweep_seconds),
        RetentionInput(batch=settings.retention_batch),
    )
    scheduling = asyncio.create_task(keep_trying(client, schedule))

    async def stop() -> None:
        scheduling.cancel()
        await worker.shutdown()
        await sender.close()
        for each in channels:
            await each.close(grace=None)

    log.info("worker started", extra={"task_queue": settings.task_queue})
    await serve(settings, service_names=[], register=lambda server: None, on_stop=stop, stop_when=running)
    if running.done() and running.exception() is not None:
        raise SystemExit(f"worker stopped: {running.exception()}")


def signing_keys(settings: WorkerSettings) -> SigningKeys:
    default = settings.webhook_signing_secret.get_secret_value() if settings.webhook_signing_secret else ""
    tenants = settings.webhook_tenant_signing_secrets
    keys = SigningKeys.parse(default, tenants.get_secret_value() if tenants else "")
    if keys.default is None:
        log.warning("WEBHOOK_SIGNING_SECRET is not set: webhooks of tenants without their own secret will FAIL")
    return keys


def clause_text_tenants(settings: WorkerSettings) -> frozenset[str]:
    tenants = settings.clause_text_tenants()
    if tenants:  # said at every start, so an opt-in is never silent
        log.info("webhook events carry clause text for these tenants", extra={"tenants": sorted(tenants)})
    return tenants


if __name__ == "__main__":
    settings = WorkerSettings()
    settings.lower_cpu_priority()
    configure_logging("worker", settings.log_level)
    configure_tracing("worker")
    asyncio.run(main(settings))
