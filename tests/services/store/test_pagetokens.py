"""Page tokens: opaque, signed, bound to tenant and filter; anything else is INVALID_ARGUMENT."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from clausework.runtime.errors import InvalidArgument
from services.store.extractions import document_key, request_fingerprint
from services.store.pagetokens import PageTokens

WHEN = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
IDENT = uuid.uuid4()


def test_round_trip() -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.encode("tenant-a", "state=0", WHEN, IDENT)
    assert tokens.decode(token, "tenant-a", "state=0") == (WHEN, IDENT)
    assert str(IDENT) not in token and "2026" not in token, "opaque: not readable as plain text"


@pytest.mark.parametrize(
    ("tenant", "query", "key"),
    [("tenant-b", "state=0", b"k" * 32), ("tenant-a", "state=4", b"k" * 32), ("tenant-a", "state=0", b"j" * 32)],
)
def test_bound_to_tenant_filter_and_key(tenant: str, query: str, key: bytes) -> None:
    token = PageTokens(b"k" * 32).encode("tenant-a", "state=0", WHEN, IDENT)
    with pytest.raises(InvalidArgument):
        PageTokens(key).decode(token, tenant, query)


@pytest.mark.parametrize("token", ["", "garbage!", "A" * 1000, "AAAA", "%%%", "eyJ9"])
def test_garbage_is_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument):
        PageTokens(b"k" * 32).decode(token, "tenant-a", "state=0")


def test_every_tampered_character_is_caught() -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.encode("tenant-a", "state=0", WHEN, IDENT)
    for position in range(len(token)):
        flipped = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
        with pytest.raises(InvalidArgument):
            tokens.decode(flipped, "tenant-a", "state=0")


def test_documents_are_keyed_per_tenant() -> None:
    sha = "ab" * 32
    assert document_key("tenant-a", sha) != document_key("tenant-b", sha)
    assert document_key("tenant-a", sha).endswith(f"/{sha}.pdf")


def test_fingerprint_tells_a_retry_from_another_request() -> None:
    base = request_fingerprint("ab" * 32, "c.pdf", False)
    assert base == request_fingerprint("ab" * 32, "c.pdf", False)
    assert base != request_fingerprint("cd" * 32, "c.pdf", False)
    assert base != request_fingerprint("ab" * 32, "d.pdf", False)
    assert base != request_fingerprint("ab" * 32, "c.pdf", True)
