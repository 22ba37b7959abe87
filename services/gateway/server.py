"""Public ExtractionService: validate, store through the store service, start the workflow, answer."""

from __future__ import annotations

import logging

import grpc
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from contracts.internal.v1 import store_pb2, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from orchestrator.payloads import WORKFLOW_NAME, ExtractionInput, workflow_id
from services.common.errors import Unavailable
from services.gateway.uploads import check_content, check_request_id, clean_filename

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[object, object]

STORE_TIMEOUT_SECONDS = 30.0


class ExtractionServicer(extraction_pb2_grpc.ExtractionServiceServicer):
    def __init__(
        self, store: store_pb2_grpc.StoreServiceAsyncStub, temporal: Client, task_queue: str, max_upload_bytes: int
    ) -> None:
        self._store = store
        self._temporal = temporal
        self._task_queue = task_queue
        self._max_upload_bytes = max_upload_bytes

    async def CreateExtraction(self, request: pb.CreateExtractionRequest, context: Context) -> pb.Extraction:
        check_content(request.content, self._max_upload_bytes)
        # The store's errors pass through to the client unchanged: their messages are user-facing.
        created = await self._store.CreateExtraction(
            store_pb2.CreateExtractionRequest(
                content=request.content,
                filename=clean_filename(request.filename),
                request_id=check_request_id(request.request_id),
            ),
            timeout=STORE_TIMEOUT_SECONDS,
        )
        extraction = created.extraction
        # Also for a repeated request_id still PENDING: the first call may have died before starting it.
        if extraction.state == pb.STATE_PENDING:
            await self._start_workflow(extraction.id, created.document_key)
        log.info(
            "extraction accepted",
            extra={"extraction_id": extraction.id, "is_new": created.created, "size_bytes": len(request.content)},
        )
        return extraction

    async def _start_workflow(self, extraction_id: str, document_key: str) -> None:
        try:
            await self._temporal.start_workflow(
                WORKFLOW_NAME,
                ExtractionInput(extraction_id=extraction_id, document_key=document_key),
                id=workflow_id(extraction_id),
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            pass
        except RPCError as error:
            log.warning("temporal unavailable", extra={"extraction_id": extraction_id, "error": str(error)})
            raise Unavailable(
                "the extraction was stored but could not be started; retry with the same request_id"
            ) from error

    async def GetExtraction(self, request: pb.GetExtractionRequest, context: Context) -> pb.Extraction:
        answer = await self._store.GetExtraction(
            store_pb2.GetExtractionRequest(id=request.id), timeout=STORE_TIMEOUT_SECONDS
        )
        return answer.extraction
