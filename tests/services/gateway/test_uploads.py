from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import regex  # type: ignore[import-untyped]

from clausework.pipeline import MAX_FILENAME_CHARS
from clausework.runtime.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted
from services.gateway.uploads import (
    DEFAULT_FILENAME,
    check_content,
    check_declared_size,
    check_request_id,
    clean_filename,
    idle_limited,
    size_mismatch,
)


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
        ("x" * 300 + ".pdf", "x" * 251 + ".pdf"),
        ("x" * 300, "x" * 255),
        ("x" * 255 + ".pdf", "x" * 251 + ".pdf"),
        ("x" * 251 + ".pdf", "x" * 251 + ".pdf"),
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


def graphemes(text: str) -> list[str]:
    return list(regex.findall(r"\X", text))


FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # man, woman, girl, boy: 7 code points
FLAG = "\U0001f1e9\U0001f1ea"  # regional indicators D E
THUMBS = "\U0001f44d\U0001f3fd"  # with a skin-tone modifier
E_ACUTE = "e\u0301"  # e + combining acute accent (not the precomposed é)
ZALGO = "a" + "\u0300\u0301\u0302\u0303" * 4  # one letter carrying 16 combining marks


@pytest.mark.parametrize(
    "unit",
    [FAMILY, FLAG, THUMBS, E_ACUTE, ZALGO, "\u0915\u094d\u0937", "\u00e9", "\u4e2d"],
    ids=["zwj-family", "flag", "skin-tone", "combining-acute", "zalgo", "devanagari-conjunct", "e-acute", "cjk"],
)
@pytest.mark.parametrize("offset", range(8))
def test_long_filenames_are_cut_between_graphemes_and_keep_the_extension(unit: str, offset: int) -> None:
    """Whatever the cut point falls on, no grapheme is split, `.pdf` survives and the length is <= 255."""
    name = "a" * offset + unit * (600 // len(unit)) + ".pdf"
    cleaned = clean_filename(name)
    assert len(cleaned) <= MAX_FILENAME_CHARS
    assert cleaned.endswith(".pdf")
    stem = cleaned.removesuffix(".pdf")
    assert stem.startswith("a" * offset)
    kept = graphemes(stem[offset:])
    assert kept and set(kept) == {unit}, "only whole graphemes, each as it was"
    # As many as fit: one more would not.
    assert len(cleaned) + len(unit) > MAX_FILENAME_CHARS


def test_a_cut_filename_is_a_prefix_of_whole_graphemes() -> None:
    name = "Vertrag " + E_ACUTE + FAMILY + " " * 3 + THUMBS * 100 + ".pdf"
    cleaned = clean_filename(name)
    assert graphemes(cleaned.removesuffix(".pdf")) == graphemes(name)[: len(graphemes(cleaned)) - 4]


def test_joiners_survive_cleaning_but_bidi_overrides_do_not() -> None:
    assert clean_filename(FAMILY + ".pdf") == FAMILY + ".pdf"
    assert clean_filename("invoice\u202efdp.exe") == "invoicefdp.exe"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("y" * 300 + ".tar.gz", "y" * 252 + ".gz"),  # only the last extension is kept
        ("y" * 300 + "." + "z" * 20, "y" * 255),  # not an extension: too long
        ("." + "z" * 300, "." + "z" * 254),  # a dotfile has no stem to cut
        (ZALGO * 20 + ".pdf", ZALGO * 14 + ".pdf"),
        ("a" * 249 + " . " + "b" * 10 + ".pdf", "a" * 249 + ".pdf"),  # no blank or dot left before .pdf
    ],
)
def test_cut_edge_cases(given: str, expected: str) -> None:
    assert clean_filename(given) == expected


def test_a_single_grapheme_too_long_to_keep_leaves_a_default_stem() -> None:
    assert clean_filename("a" + "\u0301" * 400 + ".pdf") == "document.pdf"


@pytest.mark.parametrize("size", [0, 1, 2048])
def test_declared_size_ok(size: int) -> None:
    assert check_declared_size(size, max_bytes=2048) == size


def test_declared_size_negative_is_invalid() -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_declared_size(-1, max_bytes=2048)
    assert raised.value.reason == "INVALID_ARGUMENT"
    assert "size_bytes is -1" in raised.value.message


def test_declared_size_over_the_limit() -> None:
    with pytest.raises(ResourceExhausted) as raised:
        check_declared_size(2049, max_bytes=2048)
    assert raised.value.reason == "DOCUMENT_TOO_LARGE"


def test_size_mismatch_messages() -> None:
    more = size_mismatch(1000, 1500, more=True)
    less = size_mismatch(1000, 400)
    assert more.reason == less.reason == "SIZE_MISMATCH"
    assert "declared size_bytes 1,000 but more than 1,000 bytes arrived" in more.message
    assert "declared size_bytes 1,000 but 400 bytes arrived" in less.message


async def test_idle_limited_passes_messages_and_times_out_a_stall() -> None:
    async def stalling() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(0.05)
        yield 2
        await asyncio.sleep(10)
        yield 3

    received = []
    with pytest.raises(DeadlineExceeded) as raised:
        async for message in idle_limited(stalling(), 0.5):
            received.append(message)
    assert received == [1, 2]
    assert raised.value.reason == "UPLOAD_IDLE"
    assert "no message for 0.5 s" in raised.value.message


async def test_idle_limited_ends_with_its_source() -> None:
    async def three() -> AsyncIterator[int]:
        for number in range(3):
            yield number

    assert [message async for message in idle_limited(three(), 1)] == [0, 1, 2]
