"""The API as its users meet it, on the real stack: two tenants behind two authenticating gateway
replicas, streaming uploads, live watch across replicas, listing, cancel, result reuse."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeAlias

import asyncpg
import grpc
import pymupdf
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from clausework.pipeline import TERMINAL_STATES
from clausework.pipeline.payloads import workflow_id
from clausework.runtime.errors import error_reason
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import Stack
from services.gateway.auth import hash_key
from services.store.objects import ObjectStore
from tests import pdfs

MiB = 1024 * 1024
KEYS = {"tenant-a": "key-a-" + "x" * 32, "tenant-b": "key-b-" + "y" * 32}
# Extra gateway replicas listen just above the profile's gateway port.
REPLICAS = {"gateway-a1": 10, "gateway-a2": 11}
STREAM_LIMIT = 128 * MiB

Stub: TypeAlias = "extraction_pb2_grpc.ExtractionServiceAsyncStub"


@pytest.fixture(scope="module")
def replicas(stack: Stack) -> Iterator[dict[str, str]]:
    """Two more gateway replicas with authentication on, as in production."""
    env = {
        "GATEWAY_AUTH_DISABLED": "false",
        "GATEWAY_API_KEYS": ",".join(f"{tenant}:{hash_key(key)}" for tenant, key in KEYS.items()),
        "MAX_STREAM_UPLOAD_BYTES": str(STREAM_LIMIT),
    }
    ports = {name: stack.profile.gateway + offset for name, offset in REPLICAS.items()}
    for name, port in ports.items():
        stack.start_extra(name, "gateway", port, {**env, "GATEWAY_PORT": str(port)})
    yield {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    for name in REPLICAS:
        stack.stop(name)


@pytest.fixture(scope="module")
async def channels(replicas: dict[str, str]) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    options = [("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", -1)]
    opened = {name: grpc.aio.insecure_channel(address, options=options) for name, address in replicas.items()}
    yield opened
    for channel in opened.values():
        await channel.close(grace=None)


def auth(tenant: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {KEYS[tenant]}"),)


def stub(channels: dict[str, grpc.aio.Channel], name: str = "gateway-a1") -> Stub:
    return extraction_pb2_grpc.ExtractionServiceStub(channels[name])


async def create(api: Stub, tenant: str, content: bytes, **fields: object) -> pb.Extraction:
    request = pb.CreateExtractionRequest(content=content, filename="c.pdf", **fields)  # type: ignore[arg-type]
    return await api.CreateExtraction(request, metadata=auth(tenant), timeout=30)


async def finish(api: Stub, tenant: str, extraction_id: str) -> list[pb.Extraction]:
    updates = []
    async for update in api.WatchExtraction(pb.WatchExtractionRequest(id=extraction_id), metadata=auth(tenant)):
        updates.append(update)
    return updates


def unique_contract(label: str = "") -> bytes:
    """Distinct bytes each call, so no test reuses another's finished result by accident."""
    return pdfs.text_pdf([*pdfs.CONTRACT_PAGES[:2], f"{pdfs.CONTRACT_PAGES[2]}\n\nRef {label}{uuid.uuid4()}"])


async def test_credentials_are_required(channels: dict[str, grpc.aio.Channel]) -> None:
    api = stub(channels)
    for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", KEYS["tenant-a"]),)):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await api.ListExtractions(pb.ListExtractionsRequest(), metadata=metadata, timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_tenants_never_see_each_other(channels: dict[str, grpc.aio.Channel]) -> None:
    api = stub(channels)
    mine = await create(api, "tenant-a", unique_contract())
    for call in (
        api.GetExtraction(pb.GetExtractionRequest(id=mine.id), metadata=auth("tenant-b"), timeout=10),
        api.CancelExtraction(pb.CancelExtractionRequest(id=mine.id), metadata=auth("tenant-b"), timeout=10),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    theirs = await api.ListExtractions(pb.ListExtractionsRequest(page_size=500), metadata=auth("tenant-b"), timeout=10)
    assert mine.id not in {e.id for e in theirs.extractions}
    own = await api.ListExtractions(pb.ListExtractionsRequest(page_size=500), metadata=auth("tenant-a"), timeout=10)
    assert mine.id in {e.id for e in own.extractions}
    # The same request_id in two tenants is two extractions.
    request_id = str(uuid.uuid4())
    content = unique_contract()
    first = await create(api, "tenant-a", content, request_id=request_id)
    second = await create(api, "tenant-b", content, request_id=request_id)
    assert first.id != second.id


async def test_watch_streams_every_change_and_ends_terminal(channels: dict[str, grpc.aio.Channel]) -> None:
    api = stub(channels)
    created = await create(api, "tenant-a", unique_contract())
    updates = await finish(api, "tenant-a", created.id)
    assert updates[0].id == created.id
    assert updates[-1].state == pb.STATE_SUCCEEDED
    assert all(u.state not in TERMINAL_STATES for u in updates[:-1])
    stages = [u.stage for u in updates]
    assert stages == sorted(stages), "stages only move forward"
    assert pb.STAGE_EXTRACTING in stages or pb.STAGE_STORING in stages or len(updates) >= 2
    assert updates[-1].progress.pages_total == 3 and updates[-1].progress.pages_parsed == 3
    # The embedded model reads a document in one pass: one chunk, done.
    assert (updates[-1].progress.chunks_done, updates[-1].progress.chunks_total) == (1, 1)
    # Watching a finished extraction sends it once and ends.
    again = await finish(api, "tenant-a", created.id)
    assert len(again) == 1 and again[0].state == pb.STATE_SUCCEEDED


async def test_watch_reconnects_on_another_replica(channels: dict[str, grpc.aio.Channel]) -> None:
    content = pdfs.text_pdf([pdfs.CONTRACT_PAGES[i % 3] + f" {uuid.uuid4()}" for i in range(150)])
    created = await create(stub(channels, "gateway-a1"), "tenant-a", content)
    first = stub(channels, "gateway-a1").WatchExtraction(
        pb.WatchExtractionRequest(id=created.id), metadata=auth("tenant-a")
    )
    opening = await first.read()
    assert isinstance(opening, pb.Extraction) and opening.id == created.id
    first.cancel()  # the client drops its connection mid-run ...
    updates = await finish(stub(channels, "gateway-a2"), "tenant-a", created.id)  # ... and comes back elsewhere
    assert updates[-1].state == pb.STATE_SUCCEEDED


async def test_list_pages_newest_first_and_filters(channels: dict[str, grpc.aio.Channel]) -> None:
    api = stub(channels)
    made = [await create(api, "tenant-b", b"%PDF-1.4 not really\n%%EOF") for _ in range(3)]
    for extraction in made:
        await finish(api, "tenant-b", extraction.id)
    seen: list[pb.Extraction] = []
    token = ""
    while True:
        page = await api.ListExtractions(
            pb.ListExtractionsRequest(page_size=2, page_token=token, state=pb.STATE_FAILED),
            metadata=auth("tenant-b"),
            timeout=10,
        )
        assert len(page.extractions) <= 2
        seen.extend(page.extractions)
        token = page.next_page_token
        if not token:
            break
    ids = [e.id for e in seen]
    assert len(ids) == len(set(ids))
    assert [m.id for m in reversed(made)] == [i for i in ids if i in {m.id for m in made}]
    assert all(e.state == pb.STATE_FAILED for e in seen)
    stamps = [e.create_time.ToDatetime() for e in seen]
    assert stamps == sorted(stamps, reverse=True)
    for bad in (pb.ListExtractionsRequest(page_token="garbage!"), pb.ListExtractionsRequest(page_size=-1)):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await api.ListExtractions(bad, metadata=auth("tenant-b"), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_cancel_mid_run(channels: dict[str, grpc.aio.Channel], temporal: Client, objects: ObjectStore) -> None:
    api = stub(channels)
    content = pdfs.text_pdf([pdfs.CONTRACT_PAGES[i % 3] + f" {uuid.uuid4()}" for i in range(1500)])
    created = await create(api, "tenant-a", content)
    async for update in api.WatchExtraction(pb.WatchExtractionRequest(id=created.id), metadata=auth("tenant-a")):
        if update.state == pb.STATE_RUNNING:
            break
    cancelled = await api.CancelExtraction(
        pb.CancelExtractionRequest(id=created.id), metadata=auth("tenant-a"), timeout=30
    )
    assert cancelled.state == pb.STATE_CANCELLED
    again = await api.CancelExtraction(pb.CancelExtractionRequest(id=created.id), metadata=auth("tenant-a"), timeout=30)
    assert again.state == pb.STATE_CANCELLED, "idempotent"
    handle = temporal.get_workflow_handle(workflow_id(created.id))
    for _ in range(100):
        if (await handle.describe()).status == WorkflowExecutionStatus.CANCELED:
            break
        await asyncio.sleep(0.1)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    final = await api.GetExtraction(pb.GetExtractionRequest(id=created.id), metadata=auth("tenant-a"), timeout=10)
    assert final.state == pb.STATE_CANCELLED and not final.clauses
    assert final.HasField("cancel_time")
    assert not [key for key in await objects.keys() if created.id in key], "nothing names a cancelled extraction"


async def test_same_bytes_reuse_the_finished_result_unless_reprocess(channels: dict[str, grpc.aio.Channel]) -> None:
    api = stub(channels)
    content = unique_contract()
    first = await create(api, "tenant-a", content)
    await finish(api, "tenant-a", first.id)
    reused = await create(api, "tenant-a", content)
    assert reused.id == first.id and reused.state == pb.STATE_SUCCEEDED
    fresh = await create(api, "tenant-a", content, options=pb.ExtractionOptions(reprocess=True))
    assert fresh.id != first.id and fresh.state == pb.STATE_PENDING
    other_tenant = await create(api, "tenant-b", content)
    assert other_tenant.id not in (first.id, fresh.id)


def big_pdf(path: Path, megabytes: int) -> None:
    """A real contract PDF carrying an incompressible attachment, `megabytes` large."""
    document = pymupdf.open(stream=unique_contract("big"), filetype="pdf")
    document.embfile_add("attachment.bin", os.urandom(megabytes * MiB))
    document.save(path)
    document.close()


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def upload(api: Stub, path: Path, tenant: str, declared: int = 0) -> pb.Extraction:
    async def messages() -> AsyncIterator[pb.UploadExtractionRequest]:
        yield pb.UploadExtractionRequest(
            metadata=pb.UploadMetadata(filename=path.name, request_id=str(uuid.uuid4()), size_bytes=declared)
        )
        with path.open("rb") as file:
            while chunk := file.read(MiB):
                yield pb.UploadExtractionRequest(chunk=chunk)

    return await api.UploadExtraction(messages(), metadata=auth(tenant), timeout=600)


def upload_sync(address: str, path: Path, tenant: str, declared: int = 0) -> grpc.StatusCode:
    """A refused upload as the blocking client (the CLI's) sees it: grpc-python's asyncio client may
    report its own failed write instead of the status the server ended the stream with."""

    def messages() -> Iterator[pb.UploadExtractionRequest]:
        yield pb.UploadExtractionRequest(metadata=pb.UploadMetadata(filename=path.name, size_bytes=declared))
        with path.open("rb") as file:
            while chunk := file.read(MiB):
                yield pb.UploadExtractionRequest(chunk=chunk)

    with grpc.insecure_channel(address) as channel:
        try:
            extraction_pb2_grpc.ExtractionServiceStub(channel).UploadExtraction(
                messages(), metadata=auth(tenant), timeout=600
            )
        except grpc.RpcError as error:
            assert "limit" in (error.details() or ""), error.details()  # type: ignore[attr-defined]
            return error.code()  # type: ignore[attr-defined, no-any-return]
    raise AssertionError("the upload was accepted")


async def test_100_mib_streamed_upload_with_bounded_gateway_memory(
    stack: Stack, channels: dict[str, grpc.aio.Channel], objects: ObjectStore, tmp_path: Path
) -> None:
    path = tmp_path / "big.pdf"
    big_pdf(path, 100)
    assert path.stat().st_size > 100 * MiB
    pid = stack._pid("gateway-a1")
    assert pid is not None
    before = peak_rss_kib(pid)
    created = await upload(stub(channels), path, "tenant-a")
    growth_mib = (peak_rss_kib(pid) - before) / 1024
    assert growth_mib < 48, f"gateway peak RSS grew by {growth_mib:.0f} MiB for a 100 MiB upload"
    assert created.document.size_bytes == path.stat().st_size
    updates = await finish(stub(channels), "tenant-a", created.id)
    assert updates[-1].state == pb.STATE_SUCCEEDED, updates[-1].error
    assert await objects.keys("uploads/") == [], "the upload was moved into place"


async def test_oversized_stream_is_refused_and_leaves_nothing(
    replicas: dict[str, str], objects: ObjectStore, db: asyncpg.Pool, tmp_path: Path
) -> None:
    path = tmp_path / "huge.pdf"
    big_pdf(path, STREAM_LIMIT // MiB + 8)
    async with db.acquire() as connection:
        before = await connection.fetchval("SELECT count(*) FROM extractions")
    for declared in (path.stat().st_size, 0):  # refused up front, and mid-stream when not declared
        code = await asyncio.to_thread(upload_sync, replicas["gateway-a1"], path, "tenant-a", declared)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await objects.keys("uploads/") == []
    async with db.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM extractions") == before


async def test_upload_rejects_bad_streams(channels: dict[str, grpc.aio.Channel], tmp_path: Path) -> None:
    api = stub(channels)
    not_pdf = tmp_path / "x.pdf"
    not_pdf.write_bytes(b"PK\x03\x04" + b"z" * 5000)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await upload(api, not_pdf, "tenant-a")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    async def chunk_first() -> AsyncIterator[pb.UploadExtractionRequest]:
        yield pb.UploadExtractionRequest(chunk=b"%PDF-1.4")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await api.UploadExtraction(chunk_first(), metadata=auth("tenant-a"), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_tls_gateway(stack: Stack, tmp_path: Path) -> None:
    """With a certificate configured the gateway speaks TLS only."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(  # noqa: ASYNC221 -- a one-off certificate before the test starts
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    port = stack.profile.gateway + 20
    stack.start_extra(
        "gateway-tls",
        "gateway",
        port,
        {"GATEWAY_PORT": str(port), "GATEWAY_TLS_CERT_FILE": str(cert), "GATEWAY_TLS_KEY_FILE": str(key)},
        wait=False,
    )
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
            await asyncio.wait_for(channel.channel_ready(), 60)
            api = extraction_pb2_grpc.ExtractionServiceStub(channel)
            listed = await api.ListExtractions(pb.ListExtractionsRequest(page_size=1), timeout=10)
            assert isinstance(listed, pb.ListExtractionsResponse)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await extraction_pb2_grpc.ExtractionServiceStub(plain).ListExtractions(
                    pb.ListExtractionsRequest(), timeout=5
                )
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        stack.stop("gateway-tls")


def test_logs_hold_no_keys_contents_or_clause_text(stack: Stack) -> None:
    """Runs after the tests above: none of their secrets or document text reached any process's log."""
    logs = "\n".join(path.read_text(errors="replace") for path in stack.logs.glob("*.log"))
    assert "extraction accepted" in logs, "the logs were written"
    for secret in (*KEYS.values(), *(hash_key(key) for key in KEYS.values())):
        assert secret not in logs
    for text in ("shall be governed by and construed", "Acme Widgets", "Globex Logistics"):
        assert text not in logs


async def test_identical_bytes_of_another_tenant_reveal_nothing(
    channels: dict[str, grpc.aio.Channel], db: asyncpg.Pool, objects: ObjectStore
) -> None:
    """Content addressing is per tenant: tenant-b's copy of tenant-a's finished PDF is new work with
    its own object (the S3 write is not skipped) and no counts from tenant-a's extraction."""
    api = stub(channels)
    content = unique_contract("shared")
    first = await create(api, "tenant-a", content)
    done = (await finish(api, "tenant-a", first.id))[-1]
    assert done.state == pb.STATE_SUCCEEDED and done.document.page_count == 3
    second = await create(api, "tenant-b", content)
    assert second.id != first.id
    assert second.state == pb.STATE_PENDING
    assert (second.document.page_count, second.document.char_count) == (0, 0)
    keys = await db.fetch(
        "SELECT tenant, object_key FROM documents WHERE sha256 = $1 ORDER BY tenant", second.document.sha256
    )
    assert [k["tenant"] for k in keys] == ["tenant-a", "tenant-b"]
    assert keys[0]["object_key"] != keys[1]["object_key"]
    assert await objects.exists(keys[1]["object_key"]), "tenant-b's bytes were written for tenant-b"
    assert (await finish(api, "tenant-b", second.id))[-1].state == pb.STATE_SUCCEEDED


async def test_a_request_id_names_one_request(channels: dict[str, grpc.aio.Channel]) -> None:
    api = stub(channels)
    request_id = f"order-{uuid.uuid4()}"
    content = unique_contract()
    first = await create(api, "tenant-a", content, request_id=request_id)
    again = await create(api, "tenant-a", content, request_id=request_id)
    assert again.id == first.id, "a retry gets the first answer"
    for different in (
        {"content": unique_contract()},
        {"content": content, "filename": "other.pdf"},
        {"content": content, "options": pb.ExtractionOptions(reprocess=True)},
    ):
        request = pb.CreateExtractionRequest(**{"filename": "c.pdf", "request_id": request_id, **different})  # type: ignore[arg-type]
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await api.CreateExtraction(request, metadata=auth("tenant-a"), timeout=30)
        assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_reason(raised.value) == "REQUEST_ID_REUSED"
        assert "different request" in (raised.value.details() or "")
    other_tenant = await create(api, "tenant-b", unique_contract(), request_id=request_id)
    assert other_tenant.id != first.id, "request ids are per tenant"
    # Finished here, so no later test sees this one's work land.
    await finish(api, "tenant-a", first.id)
    await finish(api, "tenant-b", other_tenant.id)


async def test_page_tokens_are_bound_to_tenant_and_filter(channels: dict[str, grpc.aio.Channel]) -> None:
    api = stub(channels)
    for made in [await create(api, "tenant-b", unique_contract()) for _ in range(2)]:
        await finish(api, "tenant-b", made.id)  # so no later test sees this one's work land
    page = await api.ListExtractions(pb.ListExtractionsRequest(page_size=1), metadata=auth("tenant-b"), timeout=10)
    token = page.next_page_token
    assert token
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for tenant, request in (
        ("tenant-a", pb.ListExtractionsRequest(page_size=1, page_token=token)),  # another tenant's token
        ("tenant-b", pb.ListExtractionsRequest(page_size=1, page_token=token, state=pb.STATE_FAILED)),  # filter
        ("tenant-b", pb.ListExtractionsRequest(page_size=1, page_token=tampered)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await api.ListExtractions(request, metadata=auth(tenant), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert "page_token" in (raised.value.details() or "")
    again = await api.ListExtractions(
        pb.ListExtractionsRequest(page_size=1, page_token=token), metadata=auth("tenant-b"), timeout=10
    )
    assert again.extractions and again.extractions[0].id != page.extractions[0].id
