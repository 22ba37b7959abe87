"""Public ExtractionService: authenticate, validate, hand everything to the store, answer.

The gateway never talks to Temporal: the store's outbox relay starts workflows and delivers cancels, so
submits are accepted (and cancels recorded) while Temporal is down.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2

from clausework.pipeline import TERMINAL_STATES, new_upload_key
from clausework.runtime.errors import InvalidArgument
from clausework.runtime.webhook_targets import TargetPolicy
from contracts.internal.v1 import store_pb2, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from services.gateway.admission import current_tenant
from services.gateway.auth import ApiKeys
from services.gateway.options import check_options
from services.gateway.uploads import (
    HEADER_WINDOW,
    check_content,
    check_declared_size,
    check_header,
    check_request_id,
    clean_filename,
    idle_limited,
    size_mismatch,
    too_large,
)

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[object, object]

STORE_TIMEOUT_SECONDS = 30.0
UPLOAD_TIMEOUT_SECONDS = 3600.0
# How long CancelExtraction waits for the pipeline to stop before answering with the state as it is.
CANCEL_WAIT_SECONDS = 10.0


class ExtractionServicer(extraction_pb2_grpc.ExtractionServiceServicer):
    """Store errors pass through to the client unchanged (see clausework.runtime.errors): their messages are
    written for users."""

    def __init__(
        self,
        store: store_pb2_grpc.StoreServiceAsyncStub,
        keys: ApiKeys,
        *,
        max_upload_bytes: int,
        max_stream_upload_bytes: int,
        upload_idle_seconds: float = 30.0,
        webhook_policy: TargetPolicy | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        self._max_upload_bytes = max_upload_bytes
        self._max_stream_upload_bytes = max_stream_upload_bytes
        self._upload_idle_seconds = upload_idle_seconds
        self._webhook_policy = webhook_policy or TargetPolicy()

    def _tenant(self, context: Context) -> str:
        """The tenant AdmissionInterceptor authenticated from the headers; without the interceptor (a
        servicer used on its own), authenticate here."""
        tenant = current_tenant.get(None)
        if tenant is not None:
            return tenant
        return self._keys.tenant(context.invocation_metadata())  # type: ignore[arg-type]

    async def CreateExtraction(self, request: pb.CreateExtractionRequest, context: Context) -> pb.Extraction:
        tenant = self._tenant(context)
        check_content(request.content, self._max_upload_bytes)
        options = await check_options(request.options, self._webhook_policy)
        created = await self._store.CreateExtraction(
            store_pb2.CreateExtractionRequest(
                content=request.content,
                filename=clean_filename(request.filename),
                request_id=check_request_id(request.request_id),
                tenant=tenant,
                reprocess=request.options.reprocess,
                retention=options.retention,
                webhook_url=options.webhook_url,
            ),
            timeout=STORE_TIMEOUT_SECONDS,
        )
        return await self._accepted(created, len(request.content), tenant)

    async def UploadExtraction(
        self, request_iterator: AsyncIterator[pb.UploadExtractionRequest], context: Context
    ) -> pb.Extraction:
        tenant = self._tenant(context)
        request_iterator = idle_limited(request_iterator, self._upload_idle_seconds)
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("metadata"):
            raise InvalidArgument("the first UploadExtraction message must carry metadata")
        metadata = first.metadata
        declared = check_declared_size(metadata.size_bytes, self._max_stream_upload_bytes)
        request_id = check_request_id(metadata.request_id)
        options = await check_options(metadata.options, self._webhook_policy)
        upload_key = new_upload_key()
        digest = hashlib.sha256()
        size = 0
        failures: list[Exception] = []
        finished = False

        async def chunks() -> AsyncIterator[store_pb2.WriteObjectRequest]:
            """Forward chunks as they come, hashing and counting; never the whole file in memory."""
            nonlocal size, finished
            head = b""
            try:
                yield store_pb2.WriteObjectRequest(key=upload_key)
                async for message in request_iterator:
                    if message.HasField("metadata"):
                        raise InvalidArgument("metadata is allowed in the first message only")
                    data = message.chunk
                    size += len(data)
                    if declared and size > declared:
                        raise size_mismatch(declared, size, more=True)
                    if size > self._max_stream_upload_bytes:
                        raise too_large(size, self._max_stream_upload_bytes)
                    if len(head) < HEADER_WINDOW:
                        head += data[: HEADER_WINDOW - len(head)]
                        if len(head) >= HEADER_WINDOW:
                            check_header(head)
                    digest.update(data)
                    yield store_pb2.WriteObjectRequest(data=data)
                check_content(head, self._max_stream_upload_bytes)
                if declared and size != declared:
                    raise size_mismatch(declared, size)
                finished = True  # from here on the store may hold the object
                yield store_pb2.WriteObjectRequest(finish=True)  # without it the store writes nothing
            except Exception as exc:  # grpc swallows request-iterator errors; keep ours for the client
                failures.append(exc)
                raise

        # If the client's stream fails or breaks a rule, the write is cancelled before its finish message
        # and the store writes nothing (small objects are written at the end, multipart uploads aborted).
        try:
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
                    retention=options.retention,
                    webhook_url=options.webhook_url,
                    upload_key=upload_key,
                    upload_sha256=digest.hexdigest(),
                    upload_size_bytes=size,
                ),
                timeout=STORE_TIMEOUT_SECONDS,
            )
        except BaseException:
            # The client cancelled (or the store failed) after the finish message: the object may be
            # written with nothing to register it. CreateExtraction deletes it when it runs; this covers the
            # calls that never reached it. The janitor remains for a gateway that dies here.
            if finished:
                await self._discard(upload_key)
            raise
        return await self._accepted(created, size, tenant)

    async def _discard(self, upload_key: str) -> None:
        """DiscardUpload, shielded from the cancellation that brought us here; a failure is logged only
        (the janitor sweeps what is left), so the client sees the error that ended its upload."""
        discard = asyncio.ensure_future(
            self._store.DiscardUpload(store_pb2.DiscardUploadRequest(key=upload_key), timeout=STORE_TIMEOUT_SECONDS)
        )
        try:
            await asyncio.shield(discard)
        except asyncio.CancelledError:
            pass  # cancelled again: the discard goes on by itself
        except grpc.aio.AioRpcError as exc:
            log.warning("an abandoned upload was not discarded", extra={"key": upload_key, "error": exc.details()})

    async def _accepted(self, created: store_pb2.CreateExtractionResponse, size: int, tenant: str) -> pb.Extraction:
        extraction = created.extraction
        log.info(
            "extraction accepted",
            extra={"extraction_id": extraction.id, "is_new": created.created, "size_bytes": size},
        )
        return extraction

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

    async def DeleteExtraction(self, request: pb.DeleteExtractionRequest, context: Context) -> empty_pb2.Empty:
        """Durable once answered: the store records the request and its DeletionWorkflow does the rest."""
        await self._store.DeleteExtraction(
            store_pb2.DeleteExtractionRequest(id=request.id, tenant=self._tenant(context)),
            timeout=STORE_TIMEOUT_SECONDS,
        )
        log.info("extraction delete requested", extra={"extraction_id": request.id})
        return empty_pb2.Empty()

    async def CancelExtraction(self, request: pb.CancelExtractionRequest, context: Context) -> pb.Extraction:
        tenant = self._tenant(context)
        answer = await self._store.CancelExtraction(
            store_pb2.CancelExtractionRequest(id=request.id, tenant=tenant), timeout=STORE_TIMEOUT_SECONDS
        )
        extraction = answer.extraction
        if extraction.state in TERMINAL_STATES:
            return extraction
        # The request is durable now; give the pipeline a moment to stop, so the usual answer is CANCELLED.
        remaining = context.time_remaining()
        wait = CANCEL_WAIT_SECONDS if remaining is None else max(0.0, min(CANCEL_WAIT_SECONDS, remaining - 1.0))
        updates = self._store.WatchExtraction(
            store_pb2.WatchExtractionRequest(id=request.id, tenant=tenant), timeout=wait
        )
        try:
            async for update in updates:
                extraction = update.extraction
        except grpc.aio.AioRpcError as error:
            if error.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                raise
        log.info("extraction cancel requested", extra={"extraction_id": extraction.id})
        return extraction
