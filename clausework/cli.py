"""`contracts`: upload a PDF contract to a Clausework gateway and print its clauses.

contracts extract FILE.pdf [--json]     upload, wait for the result, print a table
contracts get ID [--json]               one extraction's current state
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import textwrap
import time
import uuid
from pathlib import Path

import grpc
from google.protobuf import json_format

from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc

TERMINAL = (pb.STATE_SUCCEEDED, pb.STATE_FAILED, pb.STATE_CANCELLED)
MAX_MESSAGE_BYTES = 33 * 1024 * 1024


def connect(address: str) -> extraction_pb2_grpc.ExtractionServiceStub:
    options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES), ("grpc.max_receive_message_length", -1)]
    return extraction_pb2_grpc.ExtractionServiceStub(grpc.insecure_channel(address, options=options))


def wait(stub: extraction_pb2_grpc.ExtractionServiceStub, extraction: pb.Extraction, timeout: float) -> pb.Extraction:
    """Poll until the extraction is terminal, showing its stage on stderr."""
    deadline = time.monotonic() + timeout
    last_stage = -1
    while extraction.state not in TERMINAL:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s; still {pb.State.Name(extraction.state)}")
        if extraction.stage != last_stage:
            print(f"  {pb.Stage.Name(extraction.stage).removeprefix('STAGE_').lower()}…", file=sys.stderr)
            last_stage = extraction.stage
        time.sleep(0.2)
        extraction = stub.GetExtraction(pb.GetExtractionRequest(id=extraction.id), timeout=10)
    return extraction


def render_table(extraction: pb.Extraction) -> str:
    """Clauses as a readable table sized to the terminal."""
    width = shutil.get_terminal_size((120, 40)).columns
    lines = [
        f"{extraction.document.filename}: {extraction.document.page_count} pages, "
        f"{len(extraction.clauses)} clauses ({extraction.model})",
        "",
    ]
    header = f"{'CATEGORY':<34} {'PAGE':>5} {'CONF':>5}  {'ANSWER / TEXT'}"
    lines += [header, "-" * min(width, 120)]
    text_width = max(30, min(width, 120) - 48)
    for clause in sorted(extraction.clauses, key=lambda c: (c.category, -c.confidence)):
        pages = (
            str(clause.page_start) if clause.page_start == clause.page_end else f"{clause.page_start}-{clause.page_end}"
        )
        shown = " ".join(clause.text.split())
        if clause.answer:
            shown = f"[{clause.answer}] {shown}"
        wrapped = textwrap.shorten(shown, width=text_width, placeholder=" …")
        lines.append(f"{clause.category[:34]:<34} {pages:>5} {clause.confidence:5.2f}  {wrapped}")
    return "\n".join(lines)


def print_extraction(extraction: pb.Extraction, as_json: bool) -> None:
    if as_json:
        print(json_format.MessageToJson(extraction, indent=1))
    elif extraction.state == pb.STATE_SUCCEEDED:
        print(render_table(extraction))
    else:
        print(f"{extraction.id}: {pb.State.Name(extraction.state)} {pb.Stage.Name(extraction.stage)}")
        if extraction.error.code:
            print(f"  {extraction.error.code}: {extraction.error.message}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="contracts", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--address", default=os.environ.get("CONTRACTS_ADDRESS", "127.0.0.1:50051"))
    commands = parser.add_subparsers(dest="command", required=True)
    extract = commands.add_parser("extract", help="upload a PDF and print its clauses")
    extract.add_argument("file", type=Path)
    extract.add_argument("--json", action="store_true")
    extract.add_argument("--timeout", type=float, default=300)
    get = commands.add_parser("get", help="show one extraction")
    get.add_argument("id")
    get.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    stub = connect(args.address)
    try:
        if args.command == "extract":
            content = args.file.read_bytes()
            print(f"uploading {args.file.name} ({len(content) / 1024:.0f} KiB) to {args.address}", file=sys.stderr)
            extraction = stub.CreateExtraction(
                pb.CreateExtractionRequest(content=content, filename=args.file.name, request_id=str(uuid.uuid4())),
                timeout=60,
            )
            print(f"  extraction {extraction.id}", file=sys.stderr)
            extraction = wait(stub, extraction, args.timeout)
            print_extraction(extraction, args.json)
            if extraction.state != pb.STATE_SUCCEEDED:
                sys.exit(1)
        elif args.command == "get":
            print_extraction(stub.GetExtraction(pb.GetExtractionRequest(id=args.id), timeout=10), args.json)
    except grpc.RpcError as error:
        sys.exit(f"error: {error.code().name}: {error.details()}")  # type: ignore[attr-defined]
