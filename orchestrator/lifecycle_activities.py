"""Activities of the deletion and retention workflows: thin clients of the store's lifecycle RPCs."""

from __future__ import annotations

from temporalio import activity

from clausework.pipeline.payloads import ExpireInput, ExpireOutput, PurgeInput, PurgeOutput
from contracts.internal.v1 import store_pb2, store_pb2_grpc
from orchestrator.activities import call, deadline


class LifecycleActivities:
    def __init__(self, store: store_pb2_grpc.StoreServiceAsyncStub) -> None:
        self._store = store

    @activity.defn
    async def purge_extraction(self, task: PurgeInput) -> PurgeOutput:
        # persist: a deletion must finish, so even server errors are retried (by the workflow's policy).
        answer = await call(
            self._store.PurgeExtraction(store_pb2.PurgeExtractionRequest(id=task.extraction_id), timeout=deadline()),
            persist=True,
        )
        return PurgeOutput(pending=answer.pending, document_deleted=answer.document_deleted)

    @activity.defn
    async def expire_extractions(self, task: ExpireInput) -> ExpireOutput:
        answer = await call(
            self._store.ExpireExtractions(store_pb2.ExpireExtractionsRequest(limit=task.limit), timeout=deadline())
        )
        return ExpireOutput(marked=answer.marked)
