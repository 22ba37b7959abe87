"""Object storage (any S3 API: SeaweedFS locally, AWS S3, MinIO, ...) via aioboto3."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from datetime import datetime
from types import TracebackType
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from prometheus_client import Counter

from clausework.runtime.errors import InvalidArgument, NotFound, register_transient, register_transient_check
from clausework.runtime.settings import MiB
from services.store.settings import StoreSettings

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 * MiB
# S3 multipart parts must be >= 5 MiB (but the last); larger objects are uploaded in parts of this size.
PART_BYTES = 8 * MiB
# What S3 bills and rate-limits: every HTTP request sent, retries included, by API operation.
S3_REQUESTS = Counter(
    "clausework_s3_requests",
    "HTTP requests sent to the S3 API (each retry counts), by operation (PutObject, GetObject, HeadObject, ...).",
    ["operation"],
)
_KEY_PATTERN = re.compile(r"^(documents|extractions|results|uploads)/[A-Za-z0-9._/-]{1,900}$")


def check_key(key: str) -> str:
    """Object keys are built by our own services; anything else is a bug or an attack."""
    if not _KEY_PATTERN.match(key) or ".." in key or "//" in key:
        raise InvalidArgument(f"invalid object key {key!r}")
    return key


# The S3 server restarting or unreachable: callers retry (UNAVAILABLE), rather than giving up (INTERNAL).
register_transient(EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)
# S3 answers these while it recovers (e.g. SeaweedFS right after a restart, before its volumes are back):
# AWS documents them as retryable; botocore's own few quick retries may not outlast the recovery.
RETRYABLE_S3_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "500", "503"})


def _count_request(event_name: str, **kwargs: object) -> None:
    """botocore's `before-send.s3.<Operation>` event: emitted once per HTTP attempt, so retries count."""
    S3_REQUESTS.labels(event_name.rsplit(".", 1)[-1]).inc()


def _retryable_s3_error(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in RETRYABLE_S3_CODES


register_transient_check(_retryable_s3_error)


class ObjectStore:
    """One S3 client for the process's lifetime; use as an async context manager."""

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        bucket: str,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
    ) -> None:
        self.bucket = bucket
        self._session = aioboto3.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
        )
        self._endpoint_url = endpoint_url
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> ObjectStore:
        """The store service's client, as its settings (environment) configure it."""
        return cls(
            endpoint_url=settings.s3_endpoint_url,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            access_key_id=settings.aws_access_key_id,
            secret_access_key=settings.aws_secret_access_key,
        )

    async def __aenter__(self) -> ObjectStore:
        config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            s3={"addressing_style": "path"},
        )
        self._client = await self._stack.enter_async_context(
            self._session.client("s3", endpoint_url=self._endpoint_url, config=config)
        )
        self._client.meta.events.register("before-send.s3", _count_request)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def ensure_bucket(self) -> None:
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except ClientError:
            log.info("creating bucket", extra={"bucket": self.bucket})
            with contextlib.suppress(self._client.exceptions.BucketAlreadyOwnedByYou):
                await self._client.create_bucket(Bucket=self.bucket)

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        await self._client.put_object(Bucket=self.bucket, Key=check_key(key), Body=data, ContentType=content_type)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """Upload from a stream without holding it in memory: multipart above PART_BYTES."""
        check_key(key)
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                while len(buffer) >= PART_BYTES:
                    if upload_id is None:
                        created = await self._client.create_multipart_upload(Bucket=self.bucket, Key=key)
                        upload_id = created["UploadId"]
                    part = bytes(buffer[:PART_BYTES])
                    del buffer[:PART_BYTES]
                    number = len(parts) + 1
                    answer = await self._client.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part
                    )
                    parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            if upload_id is None:
                await self.put(key, bytes(buffer))
                return size
            if buffer:
                number = len(parts) + 1
                answer = await self._client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(buffer)
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            await self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            return size
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    async def copy(self, source: str, target: str) -> None:
        """Server-side copy (up to 5 GiB in one request, far above any upload limit)."""
        await self._client.copy_object(
            Bucket=self.bucket, Key=check_key(target), CopySource={"Bucket": self.bucket, "Key": check_key(source)}
        )

    async def delete(self, key: str) -> None:
        await self._client.delete_object(Bucket=self.bucket, Key=check_key(key))

    async def get(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.stream(key)])

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        try:
            answer = await self._client.get_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"object {key!r} not found") from exc
            raise
        body = answer["Body"]
        async with body:  # releases the HTTP connection even if the reader stops early
            async for chunk in body.iter_chunks(CHUNK_BYTES):
                yield chunk

    async def exists(self, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise
        return True

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix` (a folder of one extraction); returns how many."""
        check_key(prefix + "x")
        keys = await self.keys(prefix)
        for key in keys:
            await self.delete(key)
        return len(keys)

    async def older_than(self, prefix: str, before: datetime) -> list[str]:
        """Keys under `prefix` last written before `before` (the janitor's candidates)."""
        found: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", []) if item["LastModified"] < before)
        return found

    async def abort_stale_multipart(self, prefix: str, before: datetime) -> int:
        """Abort multipart uploads under `prefix` begun before `before` (a store killed mid-upload)."""
        answer = await self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        aborted = 0
        for upload in answer.get("Uploads", []):
            if upload["Initiated"] < before:
                await self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                aborted += 1
        return aborted

    async def keys(self, prefix: str = "") -> list[str]:
        """Every key under `prefix` (for tests and operators: orphan checks)."""
        return list(await self.sizes(prefix))

    async def sizes(self, prefix: str = "") -> dict[str, int]:
        """Every key under `prefix` with its size in bytes (operators, bench/costs.py: bytes stored by kind)."""
        found: dict[str, int] = {}
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            found.update((item["Key"], int(item["Size"])) for item in page.get("Contents", []))
        return found
