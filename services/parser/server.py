"""Thin gRPC layer of the parser: fetch the PDF, parse it in a sandboxed child process, store the result."""

from __future__ import annotations

import asyncio
import logging

import grpc
from prometheus_client import Counter

from clausework.pdf import OcrOptions
from clausework.runtime.rpc import read_object, write_object
from contracts.internal.v1 import parser_pb2, parser_pb2_grpc, store_pb2_grpc
from services.parser.sandbox import ParseLimits, parse_isolated

log = logging.getLogger(__name__)

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
            parsed = await asyncio.to_thread(parse_isolated, data, self._ocr, self._limits)
            del data
            payload = parsed.SerializeToString()
            await write_object(self._store, request.target_key, payload, self._object_timeout)
        DOCUMENTS_PARSED.inc()
        PAGES_PARSED.inc(len(parsed.pages))
        log.info(
            "parsed",
            extra={
                "key": request.source_key,
                "target": request.target_key,
                "pages": len(parsed.pages),
                "chars": len(parsed.text),
            },
        )
        return parser_pb2.ParseDocumentResponse(page_count=len(parsed.pages), char_count=len(parsed.text))
