"""Which webhook URLs may be called: the SSRF guard shared by the gateway (at submit) and the worker (at
delivery, again, since DNS answers change).

A receiver must be an https URL (plain http only where WEBHOOK_ALLOW_INSECURE says so) whose host
resolves only to public unicast addresses: loopback, private, link-local (which holds the cloud
metadata endpoints 169.254.169.254 and fd00:ec2::254), shared, multicast and reserved ranges are
refused, as is any IPv6 form of such an address, unless WEBHOOK_ALLOW_HOSTS names the host or a network
holding the address. Checks run before any connection, and IP literals need no DNS at all.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings

MAX_URL_CHARS = 2048

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# host -> the addresses it resolves to (raises OSError when it does not resolve)
Resolve = Callable[[str], Awaitable[list[str]]]


class WebhookTargetSettings(BaseSettings):
    """Mixed into the settings of the processes that check webhook URLs (gateway, worker)."""

    # Comma-separated host names, addresses or networks (CIDR) a webhook may reach although they are not
    # public, e.g. `127.0.0.0/8,localhost` for local stacks or `hooks.internal.example` inside a company.
    webhook_allow_hosts: str = Field(default="", validation_alias="WEBHOOK_ALLOW_HOSTS")
    # Plain http:// receivers (local stacks and tests only).
    webhook_allow_insecure: bool = Field(default=False, validation_alias="WEBHOOK_ALLOW_INSECURE")

    def webhook_policy(self) -> TargetPolicy:
        return TargetPolicy.parse(self.webhook_allow_hosts, allow_insecure=self.webhook_allow_insecure)


class RefusedTarget(OSError):
    """A webhook URL or address the policy does not allow; its message is safe to show the caller.

    An OSError, so an HTTP client's resolver may raise it and the connection fails before it is made."""


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    port: int


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(address: Address) -> bool:
    """A public unicast address. IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged by
    it too, so ::ffff:169.254.169.254 is as refused as 169.254.169.254."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class TargetPolicy:
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[Network, ...] = ()
    allow_insecure: bool = False

    @classmethod
    def parse(cls, allow_hosts: str, *, allow_insecure: bool = False) -> TargetPolicy:
        hosts: set[str] = set()
        networks: list[Network] = []
        for entry in (part.strip() for part in allow_hosts.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks), allow_insecure)

    def parse_url(self, url: str) -> Target:
        """The URL's host and port, if its form is acceptable (no DNS)."""
        if len(url) > MAX_URL_CHARS:
            raise RefusedTarget(f"webhook_url is longer than {MAX_URL_CHARS} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise RefusedTarget(f"webhook_url is not a valid URL: {error}") from None
        schemes = ("https", "http") if self.allow_insecure else ("https",)
        if parts.scheme not in schemes:
            raise RefusedTarget(f"webhook_url must be {' or '.join(schemes)}")
        if not parts.hostname:
            raise RefusedTarget("webhook_url has no host")
        if parts.username is not None or parts.password is not None:
            raise RefusedTarget("webhook_url must not carry credentials; sign requests with the webhook secret")
        if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
            raise RefusedTarget("webhook_url contains whitespace or control characters")
        host = parts.hostname.rstrip(".")
        return Target(url, host, port or (443 if parts.scheme == "https" else 80))

    def host_allowed(self, host: str) -> bool:
        return host.lower() in self.allowed_hosts

    def check_address(self, host: str, text: str) -> Address:
        address = _address(text)
        if address is None:
            raise RefusedTarget(f"webhook host {host!r} resolved to something that is not an address")
        if self.host_allowed(host) or is_public(address) or any(address in n for n in self.allowed_networks):
            return address
        raise RefusedTarget(
            f"webhook host {host!r} is not a public address ({address}); private, loopback, link-local and"
            " metadata addresses are refused unless WEBHOOK_ALLOW_HOSTS names them"
        )

    def check_addresses(self, host: str, addresses: Sequence[str]) -> list[Address]:
        """Every address must pass: a host with one private answer could be steered to it."""
        if not addresses:
            raise RefusedTarget(f"webhook host {host!r} does not resolve")
        return [self.check_address(host, text) for text in addresses]

    async def check_url(self, url: str, resolve: Resolve | None = None) -> Target:
        """The target, once its form and every address its host resolves to are allowed."""
        target = self.parse_url(url)
        if _address(target.host) is not None:
            self.check_address(target.host, target.host)
            return target
        if self.host_allowed(target.host):
            return target
        try:
            addresses = await (resolve or resolve_host)(target.host)
        except OSError as error:
            if isinstance(error, RefusedTarget):
                raise
            raise RefusedTarget(f"webhook host {target.host!r} does not resolve") from None
        self.check_addresses(target.host, addresses)
        return target


async def resolve_host(host: str) -> list[str]:
    """The addresses `host` resolves to (the system resolver, as HTTP clients use it)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})
