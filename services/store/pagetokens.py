"""Opaque, signed page tokens for ListExtractions (AIP-158).

A token names the last row of a page (its create_time and id) and is bound by an HMAC to the tenant and
the filter it was issued for, so a client can neither forge a position, nor page through another
tenant's list, nor change the filter mid-way: any such token is INVALID_ARGUMENT, never a database
error. The key (STORE_PAGE_TOKEN_KEY) must be the same on every store replica.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import datetime

from clausework.runtime.errors import InvalidArgument

_MAC_BYTES = 16
_MAX_TOKEN_CHARS = 512


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the page-token key must be at least 16 bytes")
        self._key = key

    def _mac(self, tenant: str, query: str, payload: bytes) -> bytes:
        message = b"\0".join((tenant.encode(), query.encode(), payload))
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, tenant: str, query: str, create_time: datetime, ident: uuid.UUID) -> str:
        """A token for the page after the row (create_time, ident) of `tenant`'s list under `query`."""
        payload = json.dumps([create_time.isoformat(), str(ident)], separators=(",", ":")).encode()
        return _b64(payload + self._mac(tenant, query, payload))

    def decode(self, token: str, tenant: str, query: str) -> tuple[datetime, uuid.UUID]:
        invalid = InvalidArgument(
            "invalid page_token: use the next_page_token of the previous page, with the same filter"
        )
        if len(token) > _MAX_TOKEN_CHARS:
            raise invalid
        try:
            raw = _unb64(token)
        except (ValueError, TypeError):
            raise invalid from None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(tenant, query, payload)):
            raise invalid
        try:
            stamp, ident = json.loads(payload)
            when = datetime.fromisoformat(stamp)
            if when.tzinfo is None:
                raise ValueError("naive timestamp")
            return when, uuid.UUID(ident)
        except (ValueError, TypeError):  # signed by us, so only a key shared with another format gets here
            raise invalid from None
