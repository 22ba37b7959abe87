"""Thin gRPC layer of the llm service: fetch the parsed document, extract, store the clauses.

It writes no state: it streams its progress to the caller (the worker's activity), which records it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from prometheus_client import Counter

from clausework.clauses import to_clauses
from clausework.runtime.rpc import read_object, write_object
from contracts.internal.v1 import document_pb2, llm_pb2, llm_pb2_grpc, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from services.llm.backends import Backend, Result

log = logging.getLogger(__name__)

# Progress messages at most this often (the activity records each one).
PROGRESS_INTERVAL_SECONDS = 0.5

DOCUMENTS = Counter("clausework_llm_documents", "Documents whose clauses were extracted.")
CHUNKS = Counter(
    "clausework_llm_chunks", "Chunks of text the backend worked through (the embedded model: one a document)."
)
PROMPT_TOKENS = Counter(
    "clausework_llm_prompt_tokens", "Prompt tokens spent on an LLM endpoint (zero for the embedded model)."
)
COMPLETION_TOKENS = Counter(
    "clausework_llm_completion_tokens", "Completion tokens spent on an LLM endpoint (zero for the embedded model)."
)
CLAUSES = Counter("clausework_llm_clauses", "Clauses extracted.")


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
    ) -> AsyncIterator[llm_pb2.ExtractClausesResponse]:
        async with self._slots:
            parsed = document_pb2.ParsedDocument.FromString(
                await read_object(self._store, request.source_key, self._object_timeout)
            )
            updates: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
            extraction = asyncio.create_task(
                self._backend.extract(parsed.text, lambda done, total: updates.put_nowait((done, total)))
            )
            chunks_done = 0
            try:
                async for done, total in _throttled(updates, extraction):
                    chunks_done = done
                    yield llm_pb2.ExtractClausesResponse(
                        progress=llm_pb2.ExtractionProgress(chunks_done=done, chunks_total=total)
                    )
                found = await extraction
            finally:
                extraction.cancel()
                CHUNKS.inc(chunks_done)
            usage = pb.Usage(prompt_tokens=found.prompt_tokens, completion_tokens=found.completion_tokens)
            result = llm_pb2.ExtractedClauses(
                clauses=to_clauses(parsed, found.spans), model=self._backend.model_name, usage=usage
            )
            await write_object(self._store, request.target_key, result.SerializeToString(), self._object_timeout)
        DOCUMENTS.inc()
        CLAUSES.inc(len(result.clauses))
        PROMPT_TOKENS.inc(usage.prompt_tokens)
        COMPLETION_TOKENS.inc(usage.completion_tokens)
        log.info(
            "extracted",
            extra={
                "extraction_id": request.extraction_id,
                "key": request.source_key,
                "clauses": len(result.clauses),
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "dropped_quotes": found.dropped_quotes,
            },
        )
        yield llm_pb2.ExtractClausesResponse(
            result=llm_pb2.ExtractClausesResult(
                clause_count=len(result.clauses), model=result.model, usage=usage, dropped_quotes=found.dropped_quotes
            )
        )


async def _throttled(
    updates: asyncio.Queue[tuple[int, int]], work: asyncio.Task[Result]
) -> AsyncIterator[tuple[int, int]]:
    """The latest (done, total) at most every PROGRESS_INTERVAL_SECONDS while `work` runs, and the last one."""
    sent: tuple[int, int] | None = None
    while True:
        finished = work.done()
        latest = sent
        while not updates.empty():
            latest = updates.get_nowait()
        if latest is not None and latest != sent:
            sent = latest
            yield latest
        if finished:
            return
        await asyncio.wait({work}, timeout=PROGRESS_INTERVAL_SECONDS)
