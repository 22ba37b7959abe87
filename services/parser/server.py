"""Thin gRPC layer of the parser: fetch the PDF, parse it in a sandboxed child process, store the result."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from prometheus_client import Counter, Histogram

from clausework.pdf import OcrOptions
from clausework.runtime.rpc import read_object, write_object
from contracts.internal.v1 import parser_pb2, parser_pb2_grpc, store_pb2_grpc
from services.parser.sandbox import ParseLimits, parse_isolated_payload

log = logging.getLogger(__name__)

SANDBOX_OVERHEAD = Histogram(
    "clausework_parser_sandbox_overhead_seconds",
    "Wall time of a sandboxed parse beyond the child's own work: moving the PDF and the result, waiting for a child.",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
)
DOCUMENTS_PARSED = Counter("clausework_parser_documents", "Documents parsed successfully.")
PAGES_PARSED = Counter("clausework_parser_pages", "Pages of the documents parsed successfully.")


class ParserServicer(parser_pb2_grpc.ParserServiceServicer):
    def __init__(
        self,
        store: store_pb2_grpc.StoreServiceAsyncStub,
        concurrency: int,
        object_timeout: float,
        ocr: OcrOptions | None = None,
        limits: ParseLimits | None = None,
    ) -> None:
        self._store = store
        self._ocr = ocr
        self._limits = limits or ParseLimits()
        self._slots = asyncio.Semaphore(concurrency)
        self._object_timeout = object_timeout

    async def ParseDocument(
        self, request: parser_pb2.ParseDocumentRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> parser_pb2.ParseDocumentResponse:
        async with self._slots:
            data = await read_object(self._store, request.source_key, self._object_timeout)
            # In a child process with a memory limit and a deadline (services.parser.sandbox).
            # The child's encoding is stored as it is: the document is encoded once, never decoded here.
            began = time.monotonic()
            parsed = await asyncio.to_thread(parse_isolated_payload, data, self._ocr, self._limits)
            SANDBOX_OVERHEAD.observe(max(0.0, time.monotonic() - began - parsed.child_seconds))
            del data
            await write_object(self._store, request.target_key, parsed.payload, self._object_timeout)
        DOCUMENTS_PARSED.inc()
        PAGES_PARSED.inc(parsed.page_count)
        log.info(
            "parsed",
            extra={
                "key": request.source_key,
                "target": request.target_key,
                "pages": parsed.page_count,
                "chars": parsed.char_count,
            },
        )
        return parser_pb2.ParseDocumentResponse(page_count=parsed.page_count, char_count=parsed.char_count)
