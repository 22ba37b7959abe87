"""Parser process: `python -m services.parser`."""

from __future__ import annotations

import asyncio

import grpc

from clausework.pdf import OcrOptions, find_tessdata
from clausework.runtime.jsonlog import configure_logging
from clausework.runtime.rpc import channel, serve, service_name
from clausework.runtime.settings import MiB
from clausework.runtime.telemetry import configure_tracing
from contracts.internal.v1 import parser_pb2, parser_pb2_grpc, store_pb2_grpc
from services.parser import sandbox
from services.parser.sandbox import ParseLimits
from services.parser.server import ParserServicer
from services.parser.settings import ParserSettings


async def main(settings: ParserSettings) -> None:
    # Its forkserver loads PyMuPDF now, not on the first request; a spare child per concurrent parse.
    sandbox.start(spares=settings.concurrency)

    store_channel = channel(settings.store_address, settings.max_message_bytes)
    ocr = None
    if settings.ocr_enabled:
        tessdata = find_tessdata()
        if tessdata is None:
            raise SystemExit("PARSER_OCR_ENABLED=true but Tesseract is not installed (apt-get install tesseract-ocr)")
        ocr = OcrOptions(language=settings.ocr_language, max_pages=settings.ocr_max_pages, tessdata=tessdata)
    limits = ParseLimits(memory_bytes=settings.parse_memory_mib * MiB, timeout_seconds=settings.parse_timeout_seconds)
    servicer = ParserServicer(
        store_pb2_grpc.StoreServiceStub(store_channel),
        settings.concurrency,
        settings.object_timeout_seconds,
        ocr,
        limits,
    )

    def register(server: grpc.aio.Server) -> None:
        parser_pb2_grpc.add_ParserServiceServicer_to_server(servicer, server)

    try:
        await serve(
            settings,
            service_names=[service_name(parser_pb2, "ParserService")],
            register=register,
            on_stop=lambda: store_channel.close(grace=None),
        )
    finally:
        sandbox.discard_spares()  # the children waiting for a next document; parses have been drained


if __name__ == "__main__":
    settings = ParserSettings()
    settings.lower_cpu_priority()
    configure_logging("parser", settings.log_level)
    configure_tracing("parser")
    asyncio.run(main(settings))
