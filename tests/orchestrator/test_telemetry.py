"""The worker's activity metrics and log fields, and the search attributes the gateway starts workflows
with, on a real Temporal dev server."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest
from prometheus_client import REGISTRY
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

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
    workflow_id,
)
from clausework.pipeline.search import (
    EXTRACTION_ID,
    TENANT_ID,
    extraction_attributes,
    missing_search_attributes,
    use_search_attributes,
)
from clausework.runtime.jsonlog import JsonFormatter
from orchestrator.telemetry import ActivityTelemetry
from orchestrator.workflows import ExtractionWorkflow

log = logging.getLogger("tests.activities")


class Activities:
    def __init__(self) -> None:
        self.parse_attempts = 0

    @activity.defn(name="update_status")
    async def update_status(self, update: StatusUpdate) -> StatusOutput:
        log.info("status")
        return StatusOutput(update.state, update.error_code, update.error_message)

    @activity.defn(name="parse_document")
    async def parse_document(self, task: ParseInput) -> ParseOutput:
        self.parse_attempts += 1
        if self.parse_attempts == 1:
            raise ApplicationError("parser restarting", type="UNAVAILABLE")
        return ParseOutput(page_count=1, char_count=10)

    @activity.defn(name="extract_clauses")
    async def extract_clauses(self, task: ExtractInput) -> ExtractOutput:
        raise ApplicationError("not a PDF", type="NOT_A_PDF", non_retryable=True)

    @activity.defn(name="complete_extraction")
    async def complete_extraction(self, task: CompleteInput) -> CompleteOutput:
        raise AssertionError("not reached")


def outcomes(activity_type: str, outcome: str) -> float:
    labels = {"activity": activity_type, "outcome": outcome}
    return REGISTRY.get_sample_value("clausework_worker_activities_total", labels) or 0.0


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter("test"))
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


async def test_activity_outcomes_are_counted_and_logs_name_the_extraction(env: WorkflowEnvironment) -> None:
    fakes = Activities()
    before = {
        key: outcomes(*key)
        for key in [
            ("parse_document", "retrying"),
            ("parse_document", "completed"),
            ("extract_clauses", "failed"),
            ("update_status", "completed"),
        ]
    }
    lines = Lines()
    log.addHandler(lines)
    log.setLevel(logging.INFO)
    queue = f"test-{uuid.uuid4()}"
    extraction_id = str(uuid.uuid4())
    try:
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[ExtractionWorkflow],
            activities=[fakes.update_status, fakes.parse_document, fakes.extract_clauses, fakes.complete_extraction],
            interceptors=[ActivityTelemetry()],
        ):
            handle = await env.client.start_workflow(
                ExtractionWorkflow.run,
                ExtractionInput(extraction_id=extraction_id, document_key="documents/ab/abc.pdf"),
                id=workflow_id(extraction_id),
                task_queue=queue,
            )
            with pytest.raises(Exception, match="failed"):
                await handle.result()
    finally:
        log.removeHandler(lines)
    assert outcomes("parse_document", "retrying") == before[("parse_document", "retrying")] + 1
    assert outcomes("parse_document", "completed") == before[("parse_document", "completed")] + 1
    assert outcomes("extract_clauses", "failed") == before[("extract_clauses", "failed")] + 1
    # FAILED: the work activities record RUNNING/PARSING and RUNNING/EXTRACTING themselves.
    assert outcomes("update_status", "completed") == before[("update_status", "completed")] + 1
    assert lines.lines and all(line["extraction_id"] == extraction_id for line in lines.lines)
    assert {line["workflow_id"] for line in lines.lines} == {workflow_id(extraction_id)}
    assert {line["activity"] for line in lines.lines} == {"update_status"}


async def test_search_attributes_checked_then_used(env: WorkflowEnvironment) -> None:
    client: Client = env.client
    namespace = client.namespace
    assert await missing_search_attributes(client, namespace) == ["ExtractionId", "TenantId"]
    assert await use_search_attributes(client, namespace) is False, "missing: workflows start without them"
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={
                "ExtractionId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
                "TenantId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
            },
        )
    )
    assert await missing_search_attributes(client, namespace) == []
    assert await use_search_attributes(client, namespace) is True

    extraction_id = str(uuid.uuid4())
    handle = await client.start_workflow(
        "ExtractionWorkflow",
        ExtractionInput(extraction_id=extraction_id, document_key="documents/x.pdf"),
        id=workflow_id(extraction_id),
        task_queue=f"nobody-polls-{uuid.uuid4()}",
        search_attributes=extraction_attributes(extraction_id, "tenant-a"),
    )
    try:
        description = await handle.describe()
        assert description.typed_search_attributes.get(EXTRACTION_ID) == extraction_id
        assert description.typed_search_attributes.get(TENANT_ID) == "tenant-a"
        found: list[str] = []
        for _ in range(100):  # visibility catches up asynchronously
            found = [
                w.id async for w in client.list_workflows(f'ExtractionId="{extraction_id}" AND TenantId="tenant-a"')
            ]
            if found:
                break
            await asyncio.sleep(0.1)
        assert found == [workflow_id(extraction_id)]
    finally:
        await handle.terminate()
