"""API-key authentication: `authorization: Bearer <key>` metadata → tenant.

Keys are configured per tenant as SHA-256 hashes (GATEWAY_API_KEYS="tenant:hexdigest,..."), so the
gateway's configuration never holds a usable key. Keys are long random tokens, which is why a plain
hash suffices (no password stretching needed); comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

import grpc

from clausework.runtime.errors import ServiceError

DEFAULT_TENANT = "default"
_TENANT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """The tenants' key hashes; `None` keys means authentication is off (local/demo mode only)."""

    def __init__(self, hashes: dict[str, str] | None) -> None:
        self._hashes = hashes

    @property
    def enabled(self) -> bool:
        return self._hashes is not None

    @classmethod
    def parse(cls, spec: str) -> ApiKeys:
        """`tenant:sha256hex` pairs separated by commas or newlines; a tenant may have several keys."""
        hashes: dict[str, str] = {}
        for entry in filter(None, (part.strip() for part in re.split(r"[,\n]", spec))):
            tenant, _, digest = entry.partition(":")
            if not _TENANT.match(tenant) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError(f"invalid API key entry {entry[:20]!r}...: expected tenant:sha256-hex")
            hashes[digest] = tenant
        if not hashes:
            raise ValueError("no API keys configured")
        return cls(hashes)

    def tenant(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        if self._hashes is None:
            return DEFAULT_TENANT
        header = next((str(value) for key, value in metadata or () if key == "authorization"), "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("missing credentials: send metadata `authorization: Bearer <api key>`")
        digest = hash_key(key.strip())
        for known, tenant in self._hashes.items():
            if hmac.compare_digest(known, digest):
                return tenant
        raise Unauthenticated("invalid API key")
