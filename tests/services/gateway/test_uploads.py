from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument, ResourceExhausted
from services.gateway.uploads import DEFAULT_FILENAME, check_content, check_request_id, clean_filename


def test_accepts_a_pdf_with_leading_junk_within_1024_bytes() -> None:
    check_content(b"\xef\xbb\xbf" * 10 + b"%PDF-1.4 ...", max_bytes=1024)


@pytest.mark.parametrize(
    ("content", "error", "reason"),
    [
        (b"", InvalidArgument, "EMPTY_DOCUMENT"),
        (b"PK\x03\x04 zip", InvalidArgument, "NOT_A_PDF"),
        (b" " * 2000 + b"%PDF-1.4", InvalidArgument, "NOT_A_PDF"),
        (b"%PDF-1.4" + b"x" * 2041, ResourceExhausted, "DOCUMENT_TOO_LARGE"),
    ],
)
def test_rejects(content: bytes, error: type[Exception], reason: str) -> None:
    with pytest.raises(error) as raised:
        check_content(content, max_bytes=2048)
    assert getattr(raised.value, "reason") == reason  # noqa: B009


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("contract.pdf", "contract.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\nda.pdf", "nda.pdf"),
        ("bad\x00name\n.pdf", "badname.pdf"),
        ("", DEFAULT_FILENAME),
        ("..", DEFAULT_FILENAME),
        ("x" * 300 + ".pdf", "x" * 255),
    ],
)
def test_clean_filename(given: str, expected: str) -> None:
    assert clean_filename(given) == expected


def test_request_id() -> None:
    assert check_request_id("") == ""
    assert check_request_id("3f1c-ok_ID.1") == "3f1c-ok_ID.1"
    for bad in ("has space", "x" * 129, "ünïcode"):
        with pytest.raises(InvalidArgument):
            check_request_id(bad)
