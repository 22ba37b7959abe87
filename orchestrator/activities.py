"""Activities: thin gRPC clients of the store, parser and llm services, and the only writers of an
extraction's state and stage (each work activity records its own stage: three activities a document).

Each call heartbeats while it waits, so a worker killed mid-call is noticed within the heartbeat
timeout and the activity is retried elsewhere. gRPC statuses become Temporal errors: a status caused
by the input (INVALID_ARGUMENT, FAILED_PRECONDITION, NOT_FOUND, ...) is non-retryable and carries the
server's reason (e.g. ENCRYPTED_PDF); anything else (UNAVAILABLE, DEADLINE_EXCEEDED, ...) is retried
by the activity's retry policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable
from datetime import timedelta
from typing import TypeVar

import grpc
from temporalio import activity
from temporalio.exceptions import ApplicationError

from clausework.pipeline import TERMINAL_STATES
from clausework.pipeline.payloads import (
    CompleteInput,
    CompleteOutput,
    ExtractInput,
    ExtractOutput,
    ParseInput,
    ParseOutput,
    StatusOutput,
    StatusUpdate,
)
from clausework.runtime.errors import error_reason
from contracts.internal.v1 import (
    llm_pb2,
    llm_pb2_grpc,
    parser_pb2,
    parser_pb2_grpc,
    store_pb2,
    store_pb2_grpc,
)
from contracts.v1 import extraction_pb2 as pb

T = TypeVar("T")

NON_RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


# A server bug (INTERNAL, UNKNOWN) may be a passing fault (a pod OOM-killed mid-call), so it gets a few
# attempts; retrying a deterministic bug for hours would only be a retry storm.
BUG_CODES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS})
MAX_ATTEMPTS_ON_BUGS = 3
# A progress write that takes longer is skipped: the next one replaces it.
PROGRESS_TIMEOUT_SECONDS = 5.0


def to_application_error(error: grpc.aio.AioRpcError, attempt: int, *, persist: bool = False) -> ApplicationError:
    """`persist`: retry server bugs too (the write that ends a workflow must land, whatever it takes)."""
    code = error.code()
    bug_limit = code in BUG_CODES and attempt >= MAX_ATTEMPTS_ON_BUGS and not persist
    give_up = code in NON_RETRYABLE_CODES or bug_limit
    return ApplicationError(error.details() or code.name, type=error_reason(error), non_retryable=give_up)


async def _heartbeat_until_cancelled(interval: float) -> None:
    """The first heartbeat only after `interval`: most calls end sooner and then send none. Each heartbeat
    that reaches the server is a billed Temporal Cloud action, and an immediate first one made 3.45 of
    the 7.45 actions per document (`python -m bench --only costs`). Nothing is noticed later for it:
    the heartbeat timeout runs from the activity's start, and a cancel still arrives within `interval`."""
    while True:
        await asyncio.sleep(interval)
        activity.heartbeat()


async def call(rpc: Awaitable[T], *, persist: bool = False) -> T:
    """Await one gRPC call, heartbeating meanwhile; map its failure to a Temporal error."""
    heartbeat_timeout = activity.info().heartbeat_timeout or timedelta(seconds=30)
    # Often enough that a cancel (delivered with a heartbeat's answer) is noticed within about a second.
    interval = min(1.0, heartbeat_timeout.total_seconds() / 3)
    heartbeats = asyncio.create_task(_heartbeat_until_cancelled(interval))
    try:
        return await rpc
    except grpc.aio.AioRpcError as error:
        raise to_application_error(error, activity.info().attempt, persist=persist) from None
    finally:
        heartbeats.cancel()


def deadline() -> float:
    """The gRPC deadline for this attempt: what is left of the activity's start-to-close timeout."""
    timeout = activity.info().start_to_close_timeout or timedelta(minutes=5)
    return max(1.0, timeout.total_seconds() - 1.0)


class ExtractionActivities:
    def __init__(
        self,
        store: store_pb2_grpc.StoreServiceAsyncStub,
        parser: parser_pb2_grpc.ParserServiceAsyncStub,
        llm: llm_pb2_grpc.LlmServiceAsyncStub,
    ) -> None:
        self._store = store
        self._parser = parser
        self._llm = llm

    @activity.defn
    async def update_status(self, update: StatusUpdate) -> StatusOutput:
        """The final write of a failed or cancelled extraction."""
        return await self._record(update, persist=update.final)

    @activity.defn
    async def parse_document(self, task: ParseInput) -> ParseOutput:
        """Record RUNNING/PARSING, parse, record RUNNING/EXTRACTING with the page counts: one activity.

        The first write also tells whether the row is already terminal (cancelled before this workflow's
        start was recorded); then nothing is parsed and the workflow ends the way the row says.
        """
        started = await self._record(StatusUpdate(task.extraction_id, pb.STATE_RUNNING, pb.STAGE_PARSING))
        if started.state in TERMINAL_STATES:
            return ParseOutput(page_count=0, char_count=0, ended=started)
        answer = await call(
            self._parser.ParseDocument(
                parser_pb2.ParseDocumentRequest(source_key=task.source_key, target_key=task.target_key),
                timeout=deadline(),
            )
        )
        pages = answer.page_count
        await self._record(
            StatusUpdate(
                task.extraction_id,
                pb.STATE_RUNNING,
                pb.STAGE_EXTRACTING,
                page_count=pages,
                char_count=answer.char_count,
                pages_parsed=pages,
                pages_total=pages,
            )
        )
        return ParseOutput(page_count=pages, char_count=answer.char_count)

    @activity.defn
    async def extract_clauses(self, task: ExtractInput) -> ExtractOutput:
        """Extract, recording the llm service's streamed progress (chunks only: the update mask leaves
        state, stage and page counters as they are)."""
        stream = self._llm.ExtractClauses(
            llm_pb2.ExtractClausesRequest(
                source_key=task.source_key, target_key=task.target_key, extraction_id=task.extraction_id
            ),
            timeout=deadline(),
        )
        result = await call(self._follow(task.extraction_id, stream))
        return ExtractOutput(clause_count=result.clause_count, model=result.model)

    @activity.defn
    async def complete_extraction(self, task: CompleteInput) -> CompleteOutput:
        """Record RUNNING/STORING, then store the clauses and mark the extraction SUCCEEDED."""
        await self._record(StatusUpdate(task.extraction_id, pb.STATE_RUNNING, pb.STAGE_STORING))
        answer = await call(
            self._store.CompleteExtraction(
                store_pb2.CompleteExtractionRequest(id=task.extraction_id, clauses_key=task.clauses_key),
                timeout=deadline(),
            )
        )
        return CompleteOutput(clause_count=answer.clause_count, result_key=answer.result_key)

    async def _record(self, update: StatusUpdate, *, persist: bool = False) -> StatusOutput:
        request = store_pb2.UpdateExtractionRequest(
            id=update.extraction_id,
            state=update.state,  # type: ignore[arg-type]
            stage=update.stage,  # type: ignore[arg-type]
            page_count=update.page_count,
            char_count=update.char_count,
        )
        paths = ["state", "stage", "error", "page_count", "char_count"]
        if update.pages_total:
            request.progress.CopyFrom(pb.Progress(pages_parsed=update.pages_parsed, pages_total=update.pages_total))
            paths += ["progress.pages_parsed", "progress.pages_total"]
        if update.error_code:
            request.error.CopyFrom(pb.ExtractionError(code=update.error_code, message=update.error_message))
        request.update_mask.paths.extend(paths)
        answer = await call(self._store.UpdateExtraction(request, timeout=deadline()), persist=persist)
        extraction = answer.extraction
        return StatusOutput(extraction.state, extraction.error.code, extraction.error.message)

    async def _follow(
        self, extraction_id: str, stream: AsyncIterable[llm_pb2.ExtractClausesResponse]
    ) -> llm_pb2.ExtractClausesResult:
        async for message in stream:
            if message.HasField("result"):
                return message.result
            await self._progress(extraction_id, message.progress)
        raise ApplicationError("the llm service ended its stream without a result", type="INTERNAL")

    async def _progress(self, extraction_id: str, progress: llm_pb2.ExtractionProgress) -> None:
        """Best effort: watchers miss one step of progress rather than the extraction failing."""
        request = store_pb2.UpdateExtractionRequest(
            id=extraction_id,
            progress=pb.Progress(chunks_done=progress.chunks_done, chunks_total=progress.chunks_total),
        )
        request.update_mask.paths.extend(["progress.chunks_done", "progress.chunks_total"])
        try:
            await self._store.UpdateExtraction(request, timeout=PROGRESS_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            activity.logger.warning("progress not recorded", extra={"code": error.code().name})
