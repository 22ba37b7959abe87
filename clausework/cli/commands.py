"""`contracts`: the command-line client of a Clausework gateway.

    contracts extract FILE.pdf [--json] [--retention 7d] [--webhook URL]
                                          stream the upload (progress bar), follow it live, print the clauses
    contracts get ID [--json]             one extraction
    contracts watch ID                    follow an extraction's progress until it ends
    contracts list [--state S] [--limit N]
    contracts cancel ID
    contracts delete ID                   erase the extraction, its results and (if unshared) its PDF
    contracts report ID --out report.html   each clause next to its page, highlighted

Set CONTRACTS_ADDRESS (default 127.0.0.1:50051) and CONTRACTS_API_KEY, or pass --address / --api-key.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
from google.protobuf import duration_pb2, json_format

from clausework.pipeline import TERMINAL_STATES
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc

CHUNK_BYTES = 1024 * 1024
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> duration_pb2.Duration:
    """`30s`, `15m`, `12h`, `7d`, `2w` as a Duration (for --retention)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number and one of s, m, h, d, w, e.g. 7d")
    duration = duration_pb2.Duration()
    duration.FromTimedelta(timedelta(**{_UNITS[match[2]]: float(match[1])}))
    return duration


class Client:
    """The ExtractionService stub plus the caller's credentials."""

    def __init__(self, address: str, api_key: str = "", tls: bool = False) -> None:
        options = [("grpc.max_send_message_length", 64 * 1024 * 1024), ("grpc.max_receive_message_length", -1)]
        channel = (
            grpc.secure_channel(address, grpc.ssl_channel_credentials(), options=options)
            if tls
            else grpc.insecure_channel(address, options=options)
        )
        self.stub = extraction_pb2_grpc.ExtractionServiceStub(channel)
        self.metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()

    def upload(
        self, path: Path, request_id: str, progress: bool = True, options: pb.ExtractionOptions | None = None
    ) -> pb.Extraction:
        size = path.stat().st_size

        def messages() -> Iterator[pb.UploadExtractionRequest]:
            yield pb.UploadExtractionRequest(
                metadata=pb.UploadMetadata(filename=path.name, request_id=request_id, size_bytes=size, options=options)
            )
            sent = 0
            with path.open("rb") as file:
                while chunk := file.read(CHUNK_BYTES):
                    sent += len(chunk)
                    if progress:
                        bar(f"uploading {path.name}", sent, size)
                    yield pb.UploadExtractionRequest(chunk=chunk)
            if progress:
                print(file=sys.stderr)

        answer: pb.Extraction = self.stub.UploadExtraction(messages(), metadata=self.metadata, timeout=3600)
        return answer

    def watch(self, extraction_id: str, timeout: float = 3600) -> Iterator[pb.Extraction]:
        """Every change until the extraction ends; reconnects if the stream breaks."""
        while True:
            last = None
            try:
                for last in self.stub.WatchExtraction(
                    pb.WatchExtractionRequest(id=extraction_id), metadata=self.metadata, timeout=timeout
                ):
                    yield last
                if last is not None and last.state in TERMINAL_STATES:
                    return
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):  # type: ignore[attr-defined]
                    raise


def bar(label: str, done: int, total: int) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    percent = 100 * done / total if total else 100
    print(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {percent:5.1f}%", end="", file=sys.stderr, flush=True)


def describe(extraction: pb.Extraction) -> str:
    stage = pb.Stage.Name(extraction.stage).removeprefix("STAGE_").lower()
    progress = extraction.progress
    pages = f" {progress.pages_parsed}/{progress.pages_total} pages" if progress.pages_total else ""
    terminal = extraction.state in (pb.STATE_SUCCEEDED, pb.STATE_FAILED, pb.STATE_CANCELLED)
    pending_cancel = ", cancel requested" if extraction.HasField("cancel_time") and not terminal else ""
    return f"{pb.State.Name(extraction.state).removeprefix('STATE_').lower()} ({stage}){pages}{pending_cancel}"


def render_table(extraction: pb.Extraction) -> str:
    """Clauses as a readable table sized to the terminal."""
    width = min(shutil.get_terminal_size((120, 40)).columns, 140)
    lines = [
        f"{extraction.document.filename}: {extraction.document.page_count} pages, "
        f"{len(extraction.clauses)} clauses ({extraction.model})",
        "",
        f"{'CATEGORY':<34} {'PAGE':>5} {'CONF':>5}  ANSWER / TEXT",
        "-" * width,
    ]
    text_width = max(30, width - 48)
    for clause in sorted(extraction.clauses, key=lambda c: (c.category, -c.confidence)):
        pages = str(clause.page_start)
        if clause.page_end != clause.page_start:
            pages += f"-{clause.page_end}"
        shown = " ".join(clause.text.split())
        if clause.answer:
            shown = f"[{clause.answer}] {shown}"
        wrapped = textwrap.shorten(shown, width=text_width, placeholder=" …")
        lines.append(f"{clause.category[:34]:<34} {pages:>5} {clause.confidence:5.2f}  {wrapped}")
    return "\n".join(lines)


def print_extraction(extraction: pb.Extraction, as_json: bool) -> None:
    if as_json:
        # One line, {"id", "clauses": [{"category", "text", "confidence", ...}], ...}: appendable to the
        # predictions JSONL that ../shared/eval/score_cuad.py reads.
        print(json.dumps(json_format.MessageToDict(extraction), ensure_ascii=False))
    elif extraction.state == pb.STATE_SUCCEEDED:
        print(render_table(extraction))
    else:
        print(f"{extraction.id}: {describe(extraction)}")
        if extraction.error.code:
            print(f"  {extraction.error.code}: {extraction.error.message}")


def follow(client: Client, extraction_id: str) -> pb.Extraction:
    """Print each new state/stage/progress on stderr; return the final extraction with its clauses."""
    last = ""
    for update in client.watch(extraction_id):
        line = describe(update)
        if line != last:
            print(f"  {line}", file=sys.stderr)
            last = line
    final: pb.Extraction = client.stub.GetExtraction(
        pb.GetExtractionRequest(id=extraction_id), metadata=client.metadata, timeout=30
    )
    return final


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="contracts", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--address", default=os.environ.get("CONTRACTS_ADDRESS", "127.0.0.1:50051"))
    parser.add_argument("--api-key", default=os.environ.get("CONTRACTS_API_KEY", ""))
    parser.add_argument("--tls", action="store_true", help="connect with TLS (system roots)")
    commands = parser.add_subparsers(dest="command", required=True)
    extract = commands.add_parser("extract", help="upload a PDF, follow it, print its clauses")
    extract.add_argument("file", type=Path)
    extract.add_argument("--json", action="store_true")
    extract.add_argument("--request-id", default="")
    extract.add_argument("--retention", type=parse_duration, help="delete it this long after upload, e.g. 7d")
    extract.add_argument("--webhook", default="", help="https URL to POST a signed event to when it ends")
    get = commands.add_parser("get", help="show one extraction")
    get.add_argument("id")
    get.add_argument("--json", action="store_true")
    watch = commands.add_parser("watch", help="follow an extraction until it ends")
    watch.add_argument("id")
    listing = commands.add_parser("list", help="your extractions, newest first")
    listing.add_argument("--state", choices=[n.removeprefix("STATE_").lower() for n in pb.State.keys()[1:]])
    listing.add_argument("--limit", type=int, default=20)
    cancel = commands.add_parser("cancel", help="cancel an extraction")
    cancel.add_argument("id")
    delete = commands.add_parser("delete", help="delete an extraction and everything stored for it")
    delete.add_argument("id")
    report = commands.add_parser("report", help="write an HTML evidence report")
    report.add_argument("id")
    report.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    client = Client(args.address, args.api_key, args.tls)
    metadata = client.metadata
    try:
        if args.command == "extract":
            options = pb.ExtractionOptions(retention=args.retention, webhook_url=args.webhook)
            request_id = args.request_id or str(uuid.uuid4())
            extraction = client.upload(args.file, request_id, progress=sys.stderr.isatty(), options=options)
            print(f"extraction {extraction.id}", file=sys.stderr)
            extraction = follow(client, extraction.id)
            print_extraction(extraction, args.json)
            if extraction.state != pb.STATE_SUCCEEDED:
                sys.exit(1)
        elif args.command == "get":
            got = client.stub.GetExtraction(pb.GetExtractionRequest(id=args.id), metadata=metadata, timeout=30)
            print_extraction(got, args.json)
        elif args.command == "watch":
            print_extraction(follow(client, args.id), as_json=False)
        elif args.command == "list":
            state = pb.State.Value("STATE_" + args.state.upper()) if args.state else pb.STATE_UNSPECIFIED
            request = pb.ListExtractionsRequest(page_size=min(args.limit, 500), state=state)
            shown = 0
            while shown < args.limit:
                page = client.stub.ListExtractions(request, metadata=metadata, timeout=30)
                for item in page.extractions[: args.limit - shown]:
                    created = item.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
                    print(f"{item.id}  {created}  {describe(item):<32} {item.document.filename}")
                    shown += 1
                if not page.next_page_token:
                    break
                request.page_token = page.next_page_token
        elif args.command == "cancel":
            cancelled = client.stub.CancelExtraction(
                pb.CancelExtractionRequest(id=args.id), metadata=metadata, timeout=30
            )
            print(f"{cancelled.id}: {describe(cancelled)}")
        elif args.command == "delete":
            client.stub.DeleteExtraction(pb.DeleteExtractionRequest(id=args.id), metadata=metadata, timeout=30)
            print(f"{args.id}: deleted (erasure of its data completes in the background)")
        elif args.command == "report":
            from clausework.cli.report import build_report  # PyMuPDF is only needed here

            found = client.stub.GetExtraction(pb.GetExtractionRequest(id=args.id), metadata=metadata, timeout=30)
            if found.state != pb.STATE_SUCCEEDED:
                sys.exit(f"error: extraction is {describe(found)}; a report needs a SUCCEEDED extraction")
            pdf = b"".join(
                piece.chunk
                for piece in client.stub.DownloadDocument(
                    pb.DownloadDocumentRequest(id=args.id), metadata=metadata, timeout=600
                )
            )
            args.out.write_text(build_report(found, pdf), encoding="utf-8")
            print(f"wrote {args.out} ({len(found.clauses)} clauses)")
    except grpc.RpcError as error:
        sys.exit(f"error: {error.code().name}: {error.details()}")  # type: ignore[attr-defined]
