"""Thin gRPC layer of the llm service: fetch the parsed document, extract, store the clauses."""

from __future__ import annotations

import asyncio
import logging

import grpc
from prometheus_client import Counter

from clausework.clauses import to_clauses
from clausework.runtime.rpc import read_object, write_object
from contracts.internal.v1 import document_pb2, llm_pb2, llm_pb2_grpc, store_pb2, store_pb2_grpc
from contracts.v1 import extraction_pb2 as pb
from services.llm.backends import Backend

log = logging.getLogger(__name__)

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


class ProgressReporter:
    """Sends (chunks done, chunks total) to the store for watchers: at most every PROGRESS_INTERVAL_SECONDS,
    always the latest, and never failing the extraction when the store is briefly unreachable."""

    def __init__(self, store: store_pb2_grpc.StoreServiceAsyncStub, extraction_id: str, pages_total: int) -> None:
        self._store = store
        self._extraction_id = extraction_id
        self._pages_total = pages_total
        self._latest: tuple[int, int] | None = None
        self._sent: tuple[int, int] | None = None
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run()) if extraction_id else None

    def report(self, done: int, total: int) -> None:
        self._latest = (done, total)
        self._changed.set()

    @property
    def chunks_done(self) -> int:
        return self._latest[0] if self._latest is not None else 0

    async def _send(self) -> None:
        if self._latest is None or self._latest == self._sent:
            return
        done, total = self._latest
        progress = pb.Progress(
            pages_parsed=self._pages_total, pages_total=self._pages_total, chunks_done=done, chunks_total=total
        )
        try:
            await self._store.UpdateExtraction(
                store_pb2.UpdateExtractionRequest(
                    id=self._extraction_id, state=pb.STATE_RUNNING, stage=pb.STAGE_EXTRACTING, progress=progress
                ),
                timeout=5,
            )
            self._sent = (done, total)
        except grpc.aio.AioRpcError as error:
            log.warning("progress not recorded", extra={"code": error.code().name})

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self._send()
            await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)

    async def close(self) -> None:
        """Stop, after recording the final count."""
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._send()


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
            progress = ProgressReporter(self._store, request.extraction_id, request.pages_total)
            try:
                found = await self._backend.extract(parsed.text, progress.report)
            finally:
                await progress.close()
                CHUNKS.inc(progress.chunks_done)
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
        return llm_pb2.ExtractClausesResponse(
            clause_count=len(result.clauses), model=result.model, usage=usage, dropped_quotes=found.dropped_quotes
        )
