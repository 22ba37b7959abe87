"""Public ExtractionService: authenticate, validate, hand storage to the store, drive Temporal, answer."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator

import grpc
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from contracts.internal.v1 import store_pb2, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from orchestrator.payloads import WORKFLOW_NAME, ExtractionInput, workflow_id
from orchestrator.search import extraction_attributes
from services.common.errors import InvalidArgument, Unavailable
from services.gateway.auth import ApiKeys
from services.gateway.uploads import (
    HEADER_WINDOW,
    check_content,
    check_header,
    check_request_id,
    clean_filename,
    too_large,
)

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[object, object]

STORE_TIMEOUT_SECONDS = 30.0
UPLOAD_TIMEOUT_SECONDS = 3600.0
TERMINAL = (pb.STATE_SUCCEEDED, pb.STATE_FAILED, pb.STATE_CANCELLED)


class ExtractionServicer(extraction_pb2_grpc.ExtractionServiceServicer):
    """Store errors pass through to the client unchanged (see services.common.errors): their messages are
    written for users."""

    def __init__(
        self,
        store: store_pb2_grpc.StoreServiceAsyncStub,
        temporal: Client,
        keys: ApiKeys,
        *,
        task_queue: str,
        max_upload_bytes: int,
        max_stream_upload_bytes: int,
        search_attributes: bool = True,
    ) -> None:
        self._store = store
        self._temporal = temporal
        self._keys = keys
        self._task_queue = task_queue
        self._max_upload_bytes = max_upload_bytes
        self._max_stream_upload_bytes = max_stream_upload_bytes
        self._search_attributes = search_attributes

    def _tenant(self, context: Context) -> str:
        return self._keys.tenant(context.invocation_metadata())  # type: ignore[arg-type]

    async def CreateExtraction(self, request: pb.CreateExtractionRequest, context: Context) -> pb.Extraction:
        tenant = self._tenant(context)
        check_content(request.content, self._max_upload_bytes)
        created = await self._store.CreateExtraction(
            store_pb2.CreateExtractionRequest(
                content=request.content,
                filename=clean_filename(request.filename),
                request_id=check_request_id(request.request_id),
                tenant=tenant,
                reprocess=request.options.reprocess,
            ),
            timeout=STORE_TIMEOUT_SECONDS,
        )
        return await self._accepted(created, len(request.content), tenant)

    async def UploadExtraction(
        self, request_iterator: AsyncIterator[pb.UploadExtractionRequest], context: Context
    ) -> pb.Extraction:
        tenant = self._tenant(context)
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("metadata"):
            raise InvalidArgument("the first UploadExtraction message must carry metadata")
        metadata = first.metadata
        if metadata.size_bytes > self._max_stream_upload_bytes:
            raise too_large(metadata.size_bytes, self._max_stream_upload_bytes)
        request_id = check_request_id(metadata.request_id)
        upload_key = f"uploads/{uuid.uuid4()}.pdf"
        digest = hashlib.sha256()
        size = 0
        failures: list[Exception] = []

        async def chunks() -> AsyncIterator[store_pb2.WriteObjectRequest]:
            """Forward chunks as they come, hashing and counting; never the whole file in memory."""
            nonlocal size
            head = b""
            try:
                yield store_pb2.WriteObjectRequest(key=upload_key)
                async for message in request_iterator:
                    if message.HasField("metadata"):
                        raise InvalidArgument("metadata is allowed in the first message only")
                    data = message.chunk
                    size += len(data)
                    if size > self._max_stream_upload_bytes:
                        raise too_large(size, self._max_stream_upload_bytes)
                    if len(head) < HEADER_WINDOW:
                        head += data[: HEADER_WINDOW - len(head)]
                        if len(head) >= HEADER_WINDOW:
                            check_header(head)
                    digest.update(data)
                    yield store_pb2.WriteObjectRequest(data=data)
                check_content(head, self._max_stream_upload_bytes)
                yield store_pb2.WriteObjectRequest(finish=True)  # without it the store writes nothing
            except Exception as exc:  # grpc swallows request-iterator errors; keep ours for the client
                failures.append(exc)
                raise

        # If the client's stream fails or breaks a rule, the write is cancelled before its finish message
        # and the store writes nothing (small objects are written at the end, multipart uploads aborted).
        try:
            await self._store.WriteObject(chunks(), timeout=UPLOAD_TIMEOUT_SECONDS)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            if failures:
                raise failures[0] from None
            raise
        created = await self._store.CreateExtraction(
            store_pb2.CreateExtractionRequest(
                filename=clean_filename(metadata.filename),
                request_id=request_id,
                tenant=tenant,
                reprocess=metadata.options.reprocess,
                upload_key=upload_key,
                upload_sha256=digest.hexdigest(),
                upload_size_bytes=size,
            ),
            timeout=STORE_TIMEOUT_SECONDS,
        )
        return await self._accepted(created, size, tenant)

    async def _accepted(self, created: store_pb2.CreateExtractionResponse, size: int, tenant: str) -> pb.Extraction:
        extraction = created.extraction
        # Also for a repeated request_id still PENDING: the first call may have died before starting it.
        if extraction.state == pb.STATE_PENDING:
            await self._start_workflow(extraction, created.document_key, tenant)
        log.info(
            "extraction accepted",
            extra={"extraction_id": extraction.id, "is_new": created.created, "size_bytes": size},
        )
        return extraction

    async def _start_workflow(self, extraction: pb.Extraction, document_key: str, tenant: str) -> None:
        extraction_id = extraction.id
        try:
            await self._temporal.start_workflow(
                WORKFLOW_NAME,
                ExtractionInput(extraction_id=extraction_id, document_key=document_key),
                id=workflow_id(extraction_id),
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                # Operators find the workflow by extraction or tenant (orchestrator.search); the memo is
                # shown in the Temporal UI.
                search_attributes=extraction_attributes(extraction_id, tenant) if self._search_attributes else None,
                memo={"filename": extraction.document.filename, "tenant": tenant},
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
            store_pb2.GetExtractionRequest(id=request.id, tenant=self._tenant(context)),
            timeout=STORE_TIMEOUT_SECONDS,
        )
        return answer.extraction

    async def WatchExtraction(
        self, request: pb.WatchExtractionRequest, context: Context
    ) -> AsyncIterator[pb.Extraction]:
        updates = self._store.WatchExtraction(
            store_pb2.WatchExtractionRequest(id=request.id, tenant=self._tenant(context))
        )
        async for update in updates:
            yield update.extraction

    async def ListExtractions(self, request: pb.ListExtractionsRequest, context: Context) -> pb.ListExtractionsResponse:
        answer = await self._store.ListExtractions(
            store_pb2.ListExtractionsRequest(
                tenant=self._tenant(context),
                page_size=request.page_size,
                page_token=request.page_token,
                state=request.state,
            ),
            timeout=STORE_TIMEOUT_SECONDS,
        )
        return pb.ListExtractionsResponse(extractions=answer.extractions, next_page_token=answer.next_page_token)

    async def DownloadDocument(
        self, request: pb.DownloadDocumentRequest, context: Context
    ) -> AsyncIterator[pb.DownloadDocumentResponse]:
        found = await self._store.GetExtraction(
            store_pb2.GetExtractionRequest(id=request.id, tenant=self._tenant(context)),
            timeout=STORE_TIMEOUT_SECONDS,
        )
        async for piece in self._store.ReadObject(store_pb2.ReadObjectRequest(key=found.document_key)):
            yield pb.DownloadDocumentResponse(chunk=piece.data)

    async def CancelExtraction(self, request: pb.CancelExtractionRequest, context: Context) -> pb.Extraction:
        current = await self.GetExtraction(pb.GetExtractionRequest(id=request.id), context)
        if current.state in TERMINAL:
            return current
        # The state first, so no late FAILED from the interrupted work can win; then stop the work. If the
        # second step fails, a retry of this call (idempotent) repeats it.
        updated = await self._store.UpdateExtraction(
            store_pb2.UpdateExtractionRequest(id=current.id, state=pb.STATE_CANCELLED, stage=pb.STAGE_DONE),
            timeout=STORE_TIMEOUT_SECONDS,
        )
        if updated.extraction.state == pb.STATE_CANCELLED:
            try:
                await self._temporal.get_workflow_handle(workflow_id(current.id)).cancel()
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise Unavailable("could not reach the workflow engine; retry the cancel") from error
            log.info("extraction cancelled", extra={"extraction_id": current.id})
        return updated.extraction
