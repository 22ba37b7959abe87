"""The SSRF guard: URLs refused by form or address before any connection is made (no DNS for IP literals,
a fake resolver for names, and a socket that fails the test if anything tries to connect)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from clausework.runtime.webhook_targets import RefusedTarget, TargetPolicy

STRICT = TargetPolicy()
LOCAL = TargetPolicy.parse("127.0.0.0/8, localhost, hooks.internal.example", allow_insecure=True)


@pytest.fixture(autouse=True)
def no_connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the guard must decide without connecting")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield


def resolver(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str) -> list[str]:
        if host not in answers:
            raise OSError("no such host")
        return answers[host]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "https://10.0.0.1/hook",
        "https://192.168.1.10/",
        "https://172.16.0.5/",
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://[fd00:ec2::254]/",  # AWS metadata over IPv6 (unique local)
        "https://[::ffff:169.254.169.254]/",  # IPv4-mapped
        "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "https://100.100.100.200/",  # Alibaba metadata (shared address space)
        "https://0.0.0.0/",
        "https://224.0.0.1/",
    ],
)
async def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(RefusedTarget, match="not a public address"):
        await STRICT.check_url(url, resolver({}))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.example.com/x", "must be https"),
        ("ftp://hooks.example.com/x", "must be https"),
        ("https:///nohost", "no host"),
        ("https://user:secret@hooks.example.com/", "credentials"),
        ("https://hooks.example.com:99999/", "not a valid URL"),
        ("https://hooks.example.com/a b", "whitespace"),
        ("https://hooks.example.com/" + "a" * 3000, "longer than"),
    ],
)
async def test_malformed_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(RefusedTarget, match=message):
        await STRICT.check_url(url, resolver({"hooks.example.com": ["93.184.215.14"]}))


async def test_names_are_judged_by_every_address_they_resolve_to() -> None:
    public = resolver({"hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    target = await STRICT.check_url("https://hooks.example.com:8443/cb?x=1", public)
    assert (target.host, target.port) == ("hooks.example.com", 8443)
    mixed = resolver({"rebind.example.com": ["93.184.215.14", "10.0.0.1"]})
    with pytest.raises(RefusedTarget, match=r"10\.0\.0\.1"):
        await STRICT.check_url("https://rebind.example.com/", mixed)
    with pytest.raises(RefusedTarget, match="does not resolve"):
        await STRICT.check_url("https://nowhere.example.com/", resolver({}))


async def test_the_allow_list_admits_named_hosts_and_networks() -> None:
    assert (await LOCAL.check_url("http://127.0.0.1:8080/h")).port == 8080
    assert (await LOCAL.check_url("http://LOCALHOST:9/h", resolver({}))).host == "localhost"
    internal = resolver({"hooks.internal.example": ["10.1.2.3"]})
    assert await LOCAL.check_url("https://hooks.internal.example/", internal)
    # Only what is named: other private addresses stay refused.
    with pytest.raises(RefusedTarget):
        await LOCAL.check_url("http://10.0.0.1/", resolver({}))
    with pytest.raises(RefusedTarget):
        await LOCAL.check_url("http://169.254.169.254/", resolver({}))
