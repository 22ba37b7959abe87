"""The bad-input corpus: every file or request a careless or hostile client may send, made by code.

Each case says what the client must get:

- `Rejected`: the call fails at once with a gRPC status, a message naming the problem and an
  `error-reason` trailer; nothing is stored and no workflow starts;
- `Failed`: the upload is accepted, then the extraction ends FAILED with `Extraction.error.code`;
- `Succeeded`: an odd but valid input, extracted normally.

Uploads (`Upload`) go through CreateExtraction, or through the UploadExtraction stream when `stream`
is set; malformed calls of the other RPCs are `Call`s. Most go to the stack's own gateway (authentication
off); those with `auth` set go to a strict replica (authentication on, a short upload idle timeout,
small upload caps) that the runner starts. tests/integration/test_bad_inputs.py runs them
all against the real stack; docs/bad-inputs.md lists them for users.
"""

from __future__ import annotations

import base64
import io
import uuid
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import grpc
import pymupdf

from contracts.v1 import extraction_pb2 as pb
from tests import pdfs

MiB = 1024 * 1024
UNARY_LIMIT = 32 * MiB
STREAM_LIMIT = 512 * MiB
# Text every valid case carries, so the embedded model has something to find.
CLAUSE = pdfs.GOVERNING_LAW


@dataclass(frozen=True)
class Rejected:
    code: grpc.StatusCode
    reason: str
    message: str  # a fragment of the status message


@dataclass(frozen=True)
class Failed:
    reason: str  # Extraction.error.code
    message: str  # a fragment of Extraction.error.message


@dataclass(frozen=True)
class Succeeded:
    page_count: int
    filename: str = "contract.pdf"


@dataclass(frozen=True)
class Upload:
    name: str
    make: Callable[[], bytes]
    expect: Rejected | Failed | Succeeded
    filename: str = "contract.pdf"
    # Raw UTF-8 bytes of the filename, sent as they are (possibly invalid UTF-8) instead of `filename`.
    raw_filename: bytes | None = None
    request_id: str | None = None  # None: a fresh UUID
    stream: bool = False  # UploadExtraction instead of CreateExtraction
    # Streams only: the size_bytes declared in the metadata, and whether to send the metadata at all.
    declared_size: int = 0
    metadata_first: bool = True
    metadata_twice: bool = False
    # Streams only: send the metadata, then nothing more (the stream stays open until the server ends it).
    stall_after_metadata: bool = False
    # "off": the stack's gateway, no key. Else the strict gateway, with a valid key, a wrong one, or none.
    auth: Literal["off", "valid", "wrong", "missing"] = "off"
    # Sent this many times at once; every one must get `expect` (Rejected only).
    concurrent: int = 1
    # The gateway's peak resident memory (VmHWM) may grow at most this many MiB while the case runs.
    max_gateway_growth_mib: int | None = None


@dataclass(frozen=True)
class Call:
    name: str
    method: str  # an ExtractionService RPC
    request: Callable[[], object]
    expect: Rejected = field(default_factory=lambda: Rejected(grpc.StatusCode.INVALID_ARGUMENT, "", ""))


# ---- building blocks ---------------------------------------------------------------------------------


def unique_contract(pages: int = 3) -> bytes:
    """A small contract whose bytes are new each call, so no case reuses another's finished result."""
    texts = [pdfs.CONTRACT_PAGES[i % len(pdfs.CONTRACT_PAGES)] for i in range(pages)]
    texts[-1] += f"\n\nReference {uuid.uuid4()}"
    return pdfs.text_pdf(texts)


def raw_pdf(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF written byte by byte: objects 1..n (1 is the catalog), a correct xref table and trailer."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    return bytes(out)


def stream(data: bytes, keys: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n%s\nendstream" % (len(data), keys, data)


def flate(data: bytes, keys: bytes = b"") -> bytes:
    return stream(zlib.compress(data, 9), b"/Filter /FlateDecode " + keys)


def flate_repeated(head: bytes, unit: bytes, total_bytes: int, tail: bytes = b"", keys: bytes = b"") -> bytes:
    """A FlateDecode stream inflating to head + unit repeated to ~total_bytes + tail. A 1 MiB run of units
    is compressed once after a full flush (which resets the compressor) and its output repeated, so the
    inflated bytes never exist here and a gigabyte takes milliseconds."""
    block = unit * max(1, MiB // len(unit))
    count = max(1, total_bytes // len(block))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate; zlib header and checksum by hand
    start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.compress(tail) + compressor.flush()
    checksum = zlib.adler32(head)
    for _ in range(count):
        checksum = zlib.adler32(block, checksum)
    checksum = zlib.adler32(tail, checksum)
    data = b"\x78\xda" + start + repeated * count + end + checksum.to_bytes(4, "big")
    return stream(data, b"/Filter /FlateDecode " + keys)


FONT = b"<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>"


def text_ops(text: str, x: int = 72, y: int = 720) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")
    return b"BT /F1 10 Tf %d %d Td (%s) Tj ET\n" % (x, y, escaped)


def one_page(
    content: bytes, *, resources: bytes = FONT, mediabox: bytes = b"[0 0 612 792]", page_keys: bytes = b""
) -> list[bytes]:
    """Catalog, page tree, one page and its content stream (objects 1-4); append more objects after."""
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox %s /Resources %s /Contents 4 0 R %s>>"
        % (mediabox, resources, page_keys),
        content,
    ]


def clause_ops() -> bytes:
    return text_ops(CLAUSE[:90]) + text_ops(CLAUSE[90:], y=706) + text_ops(f"Reference {uuid.uuid4()}", y=692)


# ---- generators --------------------------------------------------------------------------------------


def png() -> bytes:
    pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 32, 32), False)
    pixmap.clear_with(200)
    return bytes(pixmap.tobytes("png"))


def zip_archive() -> bytes:
    """A ZIP holding a real PDF: what a user gets by compressing the file before sending it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("contract.pdf", unique_contract())
    return buffer.getvalue()


def html() -> bytes:
    return b"<!DOCTYPE html><html><head><title>Contract</title></head><body><p>%s</p></body></html>" % CLAUSE.encode()


def text_renamed() -> bytes:
    return (CLAUSE + "\n").encode() * 20


def header_too_late() -> bytes:
    """A PDF behind 2 KiB of junk: the header must start in the first 1024 bytes."""
    return b"\n" * 2048 + unique_contract()


def largest_unary() -> bytes:
    """As large as a CreateExtraction body may be (the content limit, in bytes)."""
    return b"%PDF-1.7\n" + b"\0" * (UNARY_LIMIT - 9)


def oversized_unary() -> bytes:
    return b"%PDF-1.7\n" + b"\0" * (UNARY_LIMIT - 8)  # one byte over


def truncated() -> bytes:
    data = unique_contract(3)
    return data[: len(data) // 2]


def garbage_body() -> bytes:
    """The right header and trailer marker around bytes that are no PDF at all."""
    return b"%PDF-1.7\n" + bytes(range(256)) * 64 + b"\n%%EOF\n"


def corrupt_xref() -> bytes:
    """A valid contract whose xref table points at wrong offsets; readers rebuild it from the objects."""
    data = unique_contract(3)
    start = data.rindex(b"\nxref\n")
    table_end = data.index(b"trailer", start)
    table = data[start:table_end]
    broken = bytearray(table)
    for index in range(len(broken)):
        if broken[index : index + 1].isdigit() and broken[index - 11 : index - 10] == b"\n":
            broken[index] = ord("9")
    return data[:start] + bytes(broken) + data[table_end:]


def encrypted_with_user_password() -> bytes:
    return _encrypted(user_password="secret", permissions=-1)


def encrypted_owner_only() -> bytes:
    """Opens without a password; the owner password only forbids printing, copying and editing."""
    return _encrypted(user_password="", permissions=int(pymupdf.PDF_PERM_ACCESSIBILITY))


def _encrypted(user_password: str, permissions: int) -> bytes:
    document = pymupdf.open(stream=unique_contract(3), filetype="pdf")
    data = document.tobytes(
        encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner-secret", user_pw=user_password, permissions=permissions
    )
    document.close()
    return bytes(data)


def scanned() -> bytes:
    return pdfs.image_only_pdf()


def zero_pages() -> bytes:
    return raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])


def many_pages(count: int = 5000) -> bytes:
    """`count` pages of one short line each; the clause is on the middle page."""
    kids = b" ".join(b"%d 0 R" % (3 + 2 * index) for index in range(count))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count)]
    for number in range(1, count + 1):
        content = clause_ops() if number == count // 2 else text_ops(f"Page {number} of this agreement is short.")
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources %s /Contents %d 0 R >>"
            % (FONT, len(objects) + 2)
        )
        objects.append(stream(content))
    return raw_pdf(objects)


def huge_page() -> bytes:
    """One page of the largest size PDF allows (200 x 200 inches), covered in 3,000 lines of text."""
    lines = b"".join(text_ops(f"{CLAUSE[:80]} line {row}", x=36, y=14380 - 4 * row) for row in range(3000))
    return raw_pdf(one_page(flate(clause_ops() + lines), mediabox=b"[0 0 14400 14400]"))


def giant_mediabox() -> bytes:
    """A page claiming to be 10^9 points (350 km) wide, far past the spec's 14,400."""
    return raw_pdf(one_page(flate(clause_ops()), mediabox=b"[0 0 1000000000 1000000000]"))


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def deeply_nested_page(depth: int = 100_000) -> bytes:
    """A page object holding an array nested 100,000 deep (a recursive parser's stack overflow)."""
    return raw_pdf(one_page(flate(clause_ops()), page_keys=b"/PieceInfo " + _nested(depth)))


def deeply_nested_unused(depth: int = 100_000) -> bytes:
    """The same array in an object the text does not depend on: the page itself reads fine."""
    return raw_pdf([*one_page(flate(clause_ops()), page_keys=b"/PieceInfo 5 0 R"), _nested(depth)])


def content_bomb(megabytes: int = 400) -> bytes:
    """A ~1 MB file whose page content inflates to `megabytes` MB of text-showing operators: several
    GB of memory and minutes of CPU for a parser that does not stop it."""
    content = flate_repeated(clause_ops() + b"BT /F1 10 Tf 72 600 Td ", b"(AAAA) Tj ", megabytes * MiB, b"ET\n")
    return raw_pdf(one_page(content))


def whitespace_bomb(megabytes: int = 300) -> bytes:
    """A content stream inflating to `megabytes` MB of blanks around a clause: read as a stream, never whole."""
    return raw_pdf(one_page(flate_repeated(clause_ops(), b" ", megabytes * MiB)))


def image_bomb(side: int = 60_000) -> bytes:
    """A 3.5 MB image that would decode to `side`² bytes (3.6 GB); text extraction must not decode it."""
    resources = FONT[:-2] + b" /XObject << /Im1 5 0 R >> >>"
    image = flate_repeated(
        b"",
        b"\0",
        side * side,
        keys=b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 8 "
        % (side, side),
    )
    content = stream(b"q 540 0 0 500 36 36 cm /Im1 Do Q\n" + clause_ops())
    return raw_pdf([*one_page(content, resources=resources), image])


def javascript() -> bytes:
    """A contract that runs JavaScript when opened and on a link: text extraction never runs it."""
    document = pymupdf.open(stream=unique_contract(3), filetype="pdf")
    catalog = document.pdf_catalog()
    action = document.get_new_xref()
    document.update_object(action, "<< /Type /Action /S /JavaScript /JS (app.alert\\('pwned'\\);) >>")
    document.xref_set_key(catalog, "OpenAction", f"{action} 0 R")
    data = document.tobytes()
    document.close()
    return bytes(data)


def embedded_files() -> bytes:
    """A contract carrying an executable attachment and a nested PDF."""
    document = pymupdf.open(stream=unique_contract(3), filetype="pdf")
    document.embfile_add("setup.exe", b"MZ" + b"\x90" * 4096, filename="setup.exe")
    document.embfile_add("other.pdf", pdfs.encrypted_pdf(), filename="other.pdf")
    data = document.tobytes()
    document.close()
    return bytes(data)


# A ZWJ sequence of 7 code points (man, woman, girl, boy): one grapheme a cut must never split.
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"


def _wrong_kind(name: str, make: Callable[[], bytes]) -> Upload:
    return Upload(name, make, Rejected(grpc.StatusCode.INVALID_ARGUMENT, "NOT_A_PDF", "not a PDF"))


UPLOADS: list[Upload] = [
    Upload("empty", lambda: b"", Rejected(grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_DOCUMENT", "empty")),
    _wrong_kind("one-byte", lambda: b"%"),
    _wrong_kind("png", png),
    _wrong_kind("zip", zip_archive),
    _wrong_kind("html", html),
    _wrong_kind("text-renamed-pdf", text_renamed),
    _wrong_kind("header-after-1024-bytes", header_too_late),
    Upload(
        "oversized-unary",
        oversized_unary,
        Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED, "DOCUMENT_TOO_LARGE", "the limit is 32.0 MiB"),
    ),
    Upload("truncated", truncated, Failed("CORRUPT_PDF", "truncated")),
    Upload("garbage-body", garbage_body, Failed("CORRUPT_PDF", "cannot be read")),
    Upload("corrupt-xref", corrupt_xref, Succeeded(page_count=3)),
    Upload("encrypted-user-password", encrypted_with_user_password, Failed("ENCRYPTED_PDF", "password")),
    Upload("encrypted-owner-password-only", encrypted_owner_only, Succeeded(page_count=3)),
    Upload("scanned-no-text-layer", scanned, Failed("NO_TEXT_LAYER", "scanned")),
    Upload("zero-pages", zero_pages, Failed("EMPTY_DOCUMENT", "no pages")),
    Upload("5000-pages", many_pages, Succeeded(page_count=5000)),
    Upload("huge-page", huge_page, Succeeded(page_count=1)),
    Upload("giant-mediabox", giant_mediabox, Succeeded(page_count=1)),
    Upload("deeply-nested-page", deeply_nested_page, Failed("CORRUPT_PDF", "nested too deeply")),
    Upload("deeply-nested-unused-object", deeply_nested_unused, Succeeded(page_count=1)),
    Upload("content-stream-bomb", content_bomb, Failed("DOCUMENT_TOO_COMPLEX", "memory")),
    Upload("whitespace-bomb", whitespace_bomb, Succeeded(page_count=1)),
    Upload("image-bomb", image_bomb, Succeeded(page_count=1)),
    Upload("javascript", javascript, Succeeded(page_count=3)),
    Upload("embedded-files", embedded_files, Succeeded(page_count=3)),
    Upload(
        "invalid-utf8-filename",
        unique_contract,
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST", "not a valid"),
        raw_filename=b"contract-\xff\xfe.pdf",
    ),
    Upload("path-filename", unique_contract, Succeeded(page_count=3, filename="passwd"), filename="../../etc/passwd"),
    Upload(
        "windows-path-and-control-chars",
        unique_contract,
        Succeeded(page_count=3, filename="nda.pdf"),
        filename="C:\\Users\\me\\n\x00d\ra.pdf",
    ),
    Upload(
        "request-id-with-spaces",
        unique_contract,
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "request_id"),
        request_id="not a valid id",
    ),
    Upload(
        "request-id-too-long",
        unique_contract,
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "request_id"),
        request_id="x" * 129,
    ),
    # UploadExtraction streams.
    Upload(
        "stream-declared-oversized",
        unique_contract,
        Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED, "DOCUMENT_TOO_LARGE", "the limit is 512.0 MiB"),
        stream=True,
        declared_size=STREAM_LIMIT + 1,
    ),
    Upload(
        "stream-no-metadata",
        unique_contract,
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "metadata"),
        stream=True,
        metadata_first=False,
    ),
    Upload(
        "stream-metadata-twice",
        unique_contract,
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "metadata"),
        stream=True,
        metadata_twice=True,
    ),
    Upload(
        "stream-no-content",
        lambda: b"",
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_DOCUMENT", "empty"),
        stream=True,
    ),
    Upload(
        "stream-zip",
        zip_archive,
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "NOT_A_PDF", "not a PDF"),
        stream=True,
    ),
    Upload("stream-truncated", truncated, Failed("CORRUPT_PDF", "truncated"), stream=True),
    Upload(
        "stream-negative-size",
        unique_contract,
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "size_bytes is -1"),
        stream=True,
        declared_size=-1,
    ),
    Upload(
        "stream-more-than-declared",
        unique_contract,
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "SIZE_MISMATCH", "but more than 1,000 bytes arrived"),
        stream=True,
        declared_size=1000,
    ),
    Upload(
        "stream-less-than-declared",
        unique_contract,
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "SIZE_MISMATCH", "declared size_bytes 10,485,760 but"),
        stream=True,
        declared_size=10 * MiB,
    ),
    # A client that sends its metadata and then nothing: refused after the strict gateway's idle timeout
    # (GATEWAY_UPLOAD_IDLE_SECONDS), not held for the hour a stream may last.
    Upload(
        "stream-stalled-after-metadata",
        unique_contract,
        Rejected(grpc.StatusCode.DEADLINE_EXCEEDED, "UPLOAD_IDLE", "the upload stalled"),
        stream=True,
        stall_after_metadata=True,
        auth="valid",
    ),
    Upload(
        "long-emoji-filename",
        unique_contract,
        Succeeded(page_count=3, filename=FAMILY * 35 + ".pdf"),  # 35 x 7 + 4 = 249 characters
        filename=FAMILY * 60 + ".pdf",
    ),
    # Authentication.
    Upload(
        "no-api-key",
        unique_contract,
        Rejected(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", "missing credentials"),
        auth="missing",
    ),
    # 24 callers at once, each sending the largest allowed body with a wrong key: all refused from the
    # headers, before the body is read, so the gateway's memory barely moves (it grew by 1.4 GB when the
    # servicer authenticated after grpc had received each body; ~20-30 MiB measured since, see
    # docs/bad-inputs.md).
    Upload(
        "wrong-api-key-24-concurrent-32mib",
        largest_unary,
        Rejected(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", "invalid API key"),
        auth="wrong",
        concurrent=24,
        max_gateway_growth_mib=120,
    ),
]


def _uuid() -> str:
    return str(uuid.uuid4())


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


_BAD_ID = Rejected(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "expected a UUID")
_UNKNOWN_ID = Rejected(grpc.StatusCode.NOT_FOUND, "NOT_FOUND", "not found")

CALLS: list[Call] = [
    Call("get-empty-id", "GetExtraction", lambda: pb.GetExtractionRequest(id=""), _BAD_ID),
    Call("get-not-a-uuid", "GetExtraction", lambda: pb.GetExtractionRequest(id="not-a-uuid"), _BAD_ID),
    Call("get-path-id", "GetExtraction", lambda: pb.GetExtractionRequest(id="../../etc/passwd"), _BAD_ID),
    Call("get-unknown-id", "GetExtraction", lambda: pb.GetExtractionRequest(id=_uuid()), _UNKNOWN_ID),
    Call("cancel-not-a-uuid", "CancelExtraction", lambda: pb.CancelExtractionRequest(id="1; DROP TABLE"), _BAD_ID),
    Call("cancel-unknown-id", "CancelExtraction", lambda: pb.CancelExtractionRequest(id=_uuid()), _UNKNOWN_ID),
    Call("watch-not-a-uuid", "WatchExtraction", lambda: pb.WatchExtractionRequest(id="x" * 10_000), _BAD_ID),
    Call("download-not-a-uuid", "DownloadDocument", lambda: pb.DownloadDocumentRequest(id="%00"), _BAD_ID),
    Call("download-unknown-id", "DownloadDocument", lambda: pb.DownloadDocumentRequest(id=_uuid()), _UNKNOWN_ID),
    Call(
        "list-negative-page-size",
        "ListExtractions",
        lambda: pb.ListExtractionsRequest(page_size=-1),
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "page_size"),
    ),
    Call(
        "list-unknown-state",
        "ListExtractions",
        lambda: pb.ListExtractionsRequest(state=99),  # type: ignore[arg-type]
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "unknown state 99"),
    ),
    Call(
        "list-garbage-page-token",
        "ListExtractions",
        lambda: pb.ListExtractionsRequest(page_token="garbage!"),
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "page_token"),
    ),
    # The format tokens had before they were signed: an out-of-range timestamp once reached PostgreSQL.
    Call(
        "list-forged-page-token",
        "ListExtractions",
        lambda: pb.ListExtractionsRequest(page_token=_b64(f"9999-12-31T23:59:59.999999+00:00|{_uuid()}")),
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "page_token"),
    ),
    Call(
        "list-forged-json-page-token",
        "ListExtractions",
        lambda: pb.ListExtractionsRequest(page_token=_b64(f'["0001-01-01T00:00:00+00:00","{_uuid()}"]' + "x" * 16)),
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "page_token"),
    ),
    Call(
        "list-huge-page-token",
        "ListExtractions",
        lambda: pb.ListExtractionsRequest(page_token="A" * 100_000),
        Rejected(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "page_token"),
    ),
]
