"""Thin gRPC layer of the llm service: fetch the parsed document, extract, store the clauses."""

from __future__ import annotations

import asyncio
import logging

import grpc

from contracts.internal.v1 import document_pb2, llm_pb2, llm_pb2_grpc, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from services.common.rpc import read_object, write_object
from services.llm.backends import Backend
from services.llm.clauses import to_clauses

log = logging.getLogger(__name__)


class LlmServicer(llm_pb2_grpc.LlmServiceServicer):
    def __init__(
        self,
        store: store_pb2_grpc.StoreServiceAsyncStub,
        backend: Backend,
        concurrency: int,
        object_timeout: float,
    ) -> None:
        self._store = store
        self._backend = backend
        self._slots = asyncio.Semaphore(concurrency)
        self._object_timeout = object_timeout

    async def ExtractClauses(
        self, request: llm_pb2.ExtractClausesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> llm_pb2.ExtractClausesResponse:
        async with self._slots:
            parsed = document_pb2.ParsedDocument.FromString(
                await read_object(self._store, request.source_key, self._object_timeout)
            )
            found = await self._backend.extract(parsed.text)
            usage = pb.Usage(prompt_tokens=found.prompt_tokens, completion_tokens=found.completion_tokens)
            result = llm_pb2.ExtractedClauses(
                clauses=to_clauses(parsed, found.spans), model=self._backend.model_name, usage=usage
            )
            await write_object(self._store, request.target_key, result.SerializeToString(), self._object_timeout)
        log.info(
            "extracted",
            extra={
                "key": request.source_key,
                "clauses": len(result.clauses),
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "dropped_quotes": found.dropped_quotes,
            },
        )
        return llm_pb2.ExtractClausesResponse(
            clause_count=len(result.clauses), model=result.model, usage=usage, dropped_quotes=found.dropped_quotes
        )
