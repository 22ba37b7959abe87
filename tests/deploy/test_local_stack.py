"""deploy/local/stack.py: the ports a profile listens on are kept out of the kernel's ephemeral range."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.scale import EXTRA_OFFSET
from deploy.local.stack import (
    METRICS_OFFSET,
    PROFILES,
    RESERVED_PORTS,
    SERVICES,
    TEMPORAL_METRICS_OFFSET,
    Profile,
    reserved_ports,
)

# Replica offsets the tests and benches start extra processes at (tests/integration, bench/scale.py).
REPLICA_OFFSETS = (10, 11, 15, 20, 25, EXTRA_OFFSET)


def listened(profile: Profile) -> set[int]:
    ports = {getattr(profile, name) for name in SERVICES}
    ports |= {port + offset for port in set(ports) for offset in REPLICA_OFFSETS}
    ports |= {port + METRICS_OFFSET for port in set(ports)}
    ports |= {profile.worker + offset + TEMPORAL_METRICS_OFFSET for offset in (0, *REPLICA_OFFSETS)}
    ports |= {profile.postgres, profile.temporal, profile.temporal_server_metrics_port, profile.temporal + 10}
    return ports


def covered(ranges: list[tuple[int, int]]) -> set[int]:
    return {port for low, high in ranges for port in range(low, high + 1)}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_listening_port_is_in_the_profiles_ranges(name: str) -> None:
    profile = PROFILES[name]
    assert listened(profile) <= covered(profile.port_ranges())


@pytest.mark.skipif(os.geteuid() != 0 or not Path(RESERVED_PORTS).exists(), reason="only root may reserve ports")
def test_up_reserves_the_profiles_ports(stack: object) -> None:
    """The test stack is up (the fixture), so its ports are reserved."""
    ephemeral_low, ephemeral_high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    profile = next(p for p in PROFILES.values() if p.name == os.environ.get("CLAUSEWORK_TEST_PROFILE", "test"))
    in_range = {port for port in listened(profile) if ephemeral_low <= port <= ephemeral_high}
    assert in_range and in_range <= reserved_ports(RESERVED_PORTS.read_text())


def test_reserved_ports_reads_the_kernels_format() -> None:
    assert reserved_ports("") == set()
    assert reserved_ports("8080,51051-51053") == {8080, 51051, 51052, 51053}
