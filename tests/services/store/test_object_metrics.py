"""clausework_s3_requests counts every HTTP request the store's S3 client sends, by operation, retries
included (what S3 bills and rate-limits), against a fake S3 endpoint on localhost."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from services.store.objects import ObjectStore

SLOW_DOWN = b'<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>wait</Message></Error>'


def sent(operation: str) -> float:
    return REGISTRY.get_sample_value("clausework_s3_requests_total", {"operation": operation}) or 0.0


@pytest.fixture
async def fake_s3() -> AsyncIterator[str]:
    """PUT fails once with a retryable SlowDown, then succeeds; HEAD answers 404."""
    puts = 0

    async def put(request: web.Request) -> web.Response:
        nonlocal puts
        await request.read()
        puts += 1
        if puts == 1:
            return web.Response(status=503, body=SLOW_DOWN, content_type="application/xml")
        return web.Response(status=200, headers={"ETag": '"0"'})

    async def head(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_put("/{tail:.*}", put)
    app.router.add_route("HEAD", "/{tail:.*}", head)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_every_request_is_counted_by_operation(fake_s3: str) -> None:
    before = {op: sent(op) for op in ("PutObject", "HeadObject")}
    store = ObjectStore(
        endpoint_url=fake_s3, bucket="bucket", region="us-east-1", access_key_id="key", secret_access_key="secret"
    )
    async with store as objects:
        await objects.put("documents/a.pdf", b"%PDF-1.7")
        assert not await objects.exists("documents/a.pdf")
    assert sent("PutObject") - before["PutObject"] == 2  # the SlowDown answer and its retry
    assert sent("HeadObject") - before["HeadObject"] == 1
