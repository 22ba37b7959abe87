"""Thin gRPC layer of the store: requests in, ExtractionStore / ObjectStore calls, responses out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2

from clausework.runtime.errors import InvalidArgument
from contracts.internal.v1 import store_pb2, store_pb2_grpc
from services.store.changes import ChangeFeed
from services.store.extractions import ExtractionStore, Upload
from services.store.lifecycle import Lifecycle
from services.store.objects import ObjectStore

Context = grpc.aio.ServicerContext


class StoreServicer(store_pb2_grpc.StoreServiceServicer):
    def __init__(
        self, extractions: ExtractionStore, objects: ObjectStore, changes: ChangeFeed, lifecycle: Lifecycle
    ) -> None:
        self._extractions = extractions
        self._objects = objects
        self._changes = changes
        self._lifecycle = lifecycle

    async def CreateExtraction(
        self, request: store_pb2.CreateExtractionRequest, context: Context[object, object]
    ) -> store_pb2.CreateExtractionResponse:
        created = await self._extractions.create(
            Upload(
                content=request.content,
                upload_key=request.upload_key,
                sha256=request.upload_sha256,
                size_bytes=request.upload_size_bytes,
            ),
            request.filename,
            request.request_id,
            tenant=request.tenant,
            reprocess=request.reprocess,
            retention=request.retention.ToTimedelta() if request.HasField("retention") else None,
            webhook_url=request.webhook_url,
        )
        return store_pb2.CreateExtractionResponse(
            extraction=created.extraction, created=created.created, document_key=created.document_key
        )

    async def GetExtraction(
        self, request: store_pb2.GetExtractionRequest, context: Context[object, object]
    ) -> store_pb2.GetExtractionResponse:
        extraction, key = await self._extractions.get(request.id, tenant=request.tenant)
        return store_pb2.GetExtractionResponse(extraction=extraction, document_key=key)

    async def ListExtractions(
        self, request: store_pb2.ListExtractionsRequest, context: Context[object, object]
    ) -> store_pb2.ListExtractionsResponse:
        extractions, token = await self._extractions.list_page(
            request.tenant, request.page_size, request.page_token, request.state
        )
        return store_pb2.ListExtractionsResponse(extractions=extractions, next_page_token=token)

    async def WatchExtraction(
        self, request: store_pb2.WatchExtractionRequest, context: Context[object, object]
    ) -> AsyncIterator[store_pb2.WatchExtractionResponse]:
        async for extraction in self._extractions.watch(request.id, request.tenant, self._changes):
            yield store_pb2.WatchExtractionResponse(extraction=extraction)

    async def UpdateExtraction(
        self, request: store_pb2.UpdateExtractionRequest, context: Context[object, object]
    ) -> store_pb2.UpdateExtractionResponse:
        extraction = await self._extractions.update(
            request.id,
            state=request.state,
            stage=request.stage,
            page_count=request.page_count,
            char_count=request.char_count,
            error=request.error if request.HasField("error") else None,
            progress=request.progress if request.HasField("progress") else None,
            mask=list(request.update_mask.paths),
        )
        return store_pb2.UpdateExtractionResponse(extraction=extraction)

    async def CancelExtraction(
        self, request: store_pb2.CancelExtractionRequest, context: Context[object, object]
    ) -> store_pb2.CancelExtractionResponse:
        extraction = await self._extractions.cancel(request.id, tenant=request.tenant)
        return store_pb2.CancelExtractionResponse(extraction=extraction)

    async def CompleteExtraction(
        self, request: store_pb2.CompleteExtractionRequest, context: Context[object, object]
    ) -> store_pb2.CompleteExtractionResponse:
        count, key = await self._extractions.complete(request.id, request.clauses_key)
        return store_pb2.CompleteExtractionResponse(clause_count=count, result_key=key)

    async def ReadObject(
        self, request: store_pb2.ReadObjectRequest, context: Context[object, object]
    ) -> AsyncIterator[store_pb2.ReadObjectResponse]:
        async for chunk in self._objects.stream(request.key):
            yield store_pb2.ReadObjectResponse(data=chunk)

    async def WriteObject(
        self,
        request_iterator: AsyncIterator[store_pb2.WriteObjectRequest],
        context: Context[object, object],
    ) -> store_pb2.WriteObjectResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.key:
            raise InvalidArgument("the first WriteObject message must name the key")

        async def chunks() -> AsyncIterator[bytes]:
            finished = first.finish
            yield first.data
            async for message in request_iterator:
                if finished:
                    raise InvalidArgument("WriteObject: a message after the one that set finish")
                finished = message.finish
                yield message.data
            # A client that fails or is cancelled mid-stream may look like a normal end of stream here:
            # only its finish flag tells a complete object from a partial one, which must not be written.
            if not finished:
                raise InvalidArgument("WriteObject: the stream ended without finish; nothing was written")

        size = await self._objects.put_stream(first.key, chunks())
        return store_pb2.WriteObjectResponse(key=first.key, size_bytes=size)

    async def DiscardUpload(
        self, request: store_pb2.DiscardUploadRequest, context: Context[object, object]
    ) -> empty_pb2.Empty:
        await self._extractions.discard_upload(request.key)
        return empty_pb2.Empty()

    async def DeleteExtraction(
        self, request: store_pb2.DeleteExtractionRequest, context: Context[object, object]
    ) -> empty_pb2.Empty:
        await self._lifecycle.request_delete(request.id, tenant=request.tenant)
        return empty_pb2.Empty()

    async def PurgeExtraction(
        self, request: store_pb2.PurgeExtractionRequest, context: Context[object, object]
    ) -> store_pb2.PurgeExtractionResponse:
        return await self._lifecycle.purge(request.id)

    async def ExpireExtractions(
        self, request: store_pb2.ExpireExtractionsRequest, context: Context[object, object]
    ) -> store_pb2.ExpireExtractionsResponse:
        return store_pb2.ExpireExtractionsResponse(marked=await self._lifecycle.expire(request.limit))

    async def GetWebhookEvent(
        self, request: store_pb2.GetWebhookEventRequest, context: Context[object, object]
    ) -> store_pb2.GetWebhookEventResponse:
        return await self._lifecycle.webhook_event(request.id)

    async def RecordWebhookAttempt(
        self, request: store_pb2.RecordWebhookAttemptRequest, context: Context[object, object]
    ) -> empty_pb2.Empty:
        await self._lifecycle.record_webhook(request)
        return empty_pb2.Empty()
