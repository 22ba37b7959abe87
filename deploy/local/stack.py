"""The whole stack on one machine, no Docker: real Temporal, PostgreSQL, S3 (SeaweedFS) and our processes.

    python deploy/local/stack.py up|down|ps|env [--profile dev|test]

`up` is idempotent (what runs is left alone) and returns once everything answers its health check;
`down` stops everything it started. Each process logs to .run/<profile>/logs/<name>.log. The `test`
profile uses other ports and another directory, so the test suite never touches a developer's stack.
Tests drive the same code through the `Stack` class (stop/start/kill one process mid-run).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.store.objects import ObjectStore

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATABASE = "clausework"


@dataclass(frozen=True)
class Profile:
    name: str
    gateway: int
    parser: int
    llm: int
    store: int
    worker: int
    temporal: int
    temporal_ui: int
    postgres: int
    s3: int
    # SeaweedFS's internal servers; their gRPC ports are these + 10000.
    weed_master: int
    weed_volume: int
    weed_filer: int
    headless: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    def metrics_port(self, name: str) -> int:
        """Prometheus metrics of one of our processes: its gRPC port + METRICS_OFFSET."""
        return int(getattr(self, name)) + METRICS_OFFSET

    @property
    def temporal_metrics_port(self) -> int:
        """The Temporal SDK's own metrics, served by the worker."""
        return self.worker + TEMPORAL_METRICS_OFFSET

    @property
    def temporal_server_metrics_port(self) -> int:
        """The Temporal dev server's own metrics (its `action` counter among them)."""
        return self.temporal + 20

    def port_ranges(self) -> list[tuple[int, int]]:
        """Every port this profile's processes may listen on: ours with their replicas (up to +50),
        metrics (+100) and Temporal SDK metrics (+200); Temporal's (+10 http, +20 metrics); the rest."""
        single = (self.temporal_ui, self.postgres, self.s3, self.weed_master, self.weed_volume, self.weed_filer)
        ranges = [(self.gateway, self.worker + TEMPORAL_METRICS_OFFSET + 50), (self.temporal, self.temporal + 20)]
        ranges += [(port, port) for port in single] + [(port + 10000, port + 10000) for port in single[3:]]
        return ranges


# Test stacks: the retention schedule runs every 2 s, deletions sweep late objects after 1 s, and a
# webhook receiver that hangs is given up on after 2 s, so tests see each happen quickly. Two tenants of
# tests/integration/test_webhooks.py are configured as an operator would: one opted in to clause text in
# its events, one signing with its own secret (not one either: test stacks only).
TEST_ENV = {
    "RETENTION_SWEEP_SECONDS": "2",
    "DELETION_SETTLE_SECONDS": "1",
    "WEBHOOK_TIMEOUT_SECONDS": "2",
    "WEBHOOK_CLAUSE_TEXT_TENANTS": "hooks-text",
    "WEBHOOK_TENANT_SIGNING_SECRETS": "hooks-own-key:whsec_" + base64.b64encode(b"test-hooks-own-key-secret").decode(),
}

PROFILES = {
    "dev": Profile("dev", 50051, 50052, 50053, 50054, 50055, 7233, 8233, 54320, 8333, 9333, 8080, 8888),
    "test": Profile(
        "test",
        51051,
        51052,
        51053,
        51054,
        51055,
        17233,
        18233,
        54330,
        8433,
        9433,
        8180,
        8988,
        headless=True,
        extra_env=TEST_ENV,
    ),
    # A second test stack, so two test sessions can run side by side (CLAUSEWORK_TEST_PROFILE=test2 or test3).
    "test2": Profile(
        "test2",
        52051,
        52052,
        52053,
        52054,
        52055,
        27233,
        28233,
        54340,
        8533,
        9533,
        8280,
        9088,
        headless=True,
        extra_env=TEST_ENV,
    ),
    "test3": Profile(
        "test3",
        54051,
        54052,
        54053,
        54054,
        54055,
        47233,
        48233,
        54360,
        8733,
        9733,
        8480,
        9288,
        headless=True,
        extra_env=TEST_ENV,
    ),
    # `make bench` runs on its own stack, so benchmarks never touch a developer's data. Deletions sweep
    # late objects after 1 s, not 60: bench/costs.py measures what a deletion costs, not that idle wait.
    "bench": Profile(
        "bench",
        53051,
        53052,
        53053,
        53054,
        53055,
        37233,
        38233,
        54350,
        8633,
        9633,
        8380,
        9188,
        headless=True,
        extra_env={"DELETION_SETTLE_SECONDS": "1"},
    ),
}

# Metrics ports sit this far above the gRPC port of the same process (profiles are 1000 apart, test
# replicas 10-30 above a profile's ports, so these collide with nothing).
METRICS_OFFSET = 100
TEMPORAL_METRICS_OFFSET = 200

SERVICES = ("store", "parser", "llm", "gateway", "worker")
INFRA = ("postgres", "s3", "temporal")
MODULES = {
    "store": "services.store",
    "parser": "services.parser",
    "llm": "services.llm",
    "gateway": "services.gateway",
    "worker": "orchestrator",
}


RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")


def reserve_ports(profile: Profile) -> None:
    """Keep the kernel from giving the profile's ports to outgoing connections as their local port.

    The fixed ports sit inside Linux's ephemeral range (32768-60999): a client socket that happened to
    be given one made a later listen on it fail with EADDRINUSE (a clean-clone CI run lost a test
    gateway replica to it: "cannot serve metrics on 127.0.0.1:51166"). Reserved ports are skipped
    when the kernel picks a local port; listening on them is unchanged. Only root may set this, and it is
    machine-wide (until reboot; it only adds ranges): elsewhere nothing changes.
    """
    if os.geteuid() != 0 or not RESERVED_PORTS.exists():
        return
    current = RESERVED_PORTS.read_text().strip()
    held = reserved_ports(current)
    missing = [(low, high) for low, high in profile.port_ranges() if not set(range(low, high + 1)) <= held]
    if missing:
        wanted = [f"{low}-{high}" if high > low else str(low) for low, high in missing]
        try:
            RESERVED_PORTS.write_text(",".join(filter(None, [current, *wanted])))
        except OSError as error:  # e.g. a container without write access to /proc/sys
            print(f"could not reserve the stack's ports: {error}", file=sys.stderr)


def reserved_ports(text: str) -> set[int]:
    """The ports of ip_local_reserved_ports' text: comma-separated ports and `low-high` ranges."""
    ports: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        ports |= set(range(int(low), int(high or low) + 1))
    return ports


class StackError(RuntimeError):
    pass


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def log_tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:])


def wait_until(what: str, check: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    """Poll `check` until it is true; a StackError from it (the process died) ends the wait at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except StackError as error:
            raise StackError(f"{error}\n{log_tail(log)}") from None
        except Exception:  # not answering yet
            pass
        time.sleep(0.2)
    raise StackError(f"{what} did not become ready in {timeout:.0f}s\n{log_tail(log)}")


def _grpc_serving(port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if found:
        return found[-1].parent
    if which := shutil.which("pg_ctl"):
        return Path(which).parent
    raise StackError("PostgreSQL is not installed: run `make setup` (installs Debian's postgresql)")


def _has_pg_stat_statements(bindir: Path) -> bool:
    """Whether this PostgreSQL ships pg_stat_statements (Debian's postgresql package does): preloading a
    library that is missing would stop the server from starting."""
    if (bindir.parent / "lib" / "pg_stat_statements.so").exists():
        return True
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        return False
    found = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, text=True)
    return found.returncode == 0 and (Path(found.stdout.strip()) / "pg_stat_statements.so").exists()


class Stack:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.run_dir = ROOT / ".run" / profile.name
        self.logs = self.run_dir / "logs"
        self.pids = self.run_dir / "pids"
        self.external_database = os.environ.get("DATABASE_URL") if profile.name == "dev" else None
        self.external_s3 = os.environ.get("S3_ENDPOINT_URL") if profile.name == "dev" else None
        self.extra_ports: dict[str, int] = {}
        # Added to every process's environment from the next (re)start on, e.g. an OTLP endpoint.
        self.extra_env: dict[str, str] = {}
        # Processes this object spawned: their exit status is known exactly, without reading /proc.
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # ---- configuration every process of ours gets ----------------------------------------------------

    @property
    def database_url(self) -> str:
        return self.external_database or f"postgresql://postgres@127.0.0.1:{self.profile.postgres}/{DATABASE}"

    @property
    def s3_endpoint(self) -> str:
        return self.external_s3 or f"http://127.0.0.1:{self.profile.s3}"

    @property
    def gateway_address(self) -> str:
        return f"127.0.0.1:{self.profile.gateway}"

    def object_store(self) -> ObjectStore:
        """A client of the bucket the stack's store service writes to, configured as that service is."""
        from services.store.objects import ObjectStore
        from services.store.settings import StoreSettings

        return ObjectStore.from_settings(StoreSettings().model_copy(update={"s3_endpoint_url": self.s3_endpoint}))

    def port(self, name: str) -> int:
        ports = {"s3": self.profile.s3, **{n: getattr(self.profile, n) for n in (*SERVICES, "postgres", "temporal")}}
        return int(ports.get(name) or self.extra_ports[name])

    def env(self) -> dict[str, str]:
        p = self.profile
        return {
            "GATEWAY_PORT": str(p.gateway),
            "PARSER_PORT": str(p.parser),
            "LLM_PORT": str(p.llm),
            "STORE_PORT": str(p.store),
            "WORKER_PORT": str(p.worker),
            **{f"{name.upper()}_METRICS_PORT": str(p.metrics_port(name)) for name in SERVICES},
            "WORKER_TEMPORAL_METRICS_PORT": str(p.temporal_metrics_port),
            "STORE_ADDRESS": f"127.0.0.1:{p.store}",
            "PARSER_ADDRESS": f"127.0.0.1:{p.parser}",
            "LLM_ADDRESS": f"127.0.0.1:{p.llm}",
            "TEMPORAL_ADDRESS": f"127.0.0.1:{p.temporal}",
            "DATABASE_URL": self.database_url,
            "S3_ENDPOINT_URL": self.s3_endpoint,
            "HF_HUB_OFFLINE": "1",
            # Local stacks run without API keys; the gateway says so loudly at start-up.
            "GATEWAY_AUTH_DISABLED": "true",
            # Not a secret: local stacks only (deploy/k8s takes it from the Secret).
            "STORE_PAGE_TOKEN_KEY": f"local-{p.name}-page-token-key",
            # Webhooks to receivers on this machine, over plain http; a signing secret that is not one
            # either (deploy/k8s takes it from the Secret).
            "WEBHOOK_ALLOW_HOSTS": "127.0.0.0/8,localhost",
            "WEBHOOK_ALLOW_INSECURE": "true",
            "WEBHOOK_SIGNING_SECRET": "whsec_" + base64.b64encode(f"local-{p.name}-webhook-key".encode()).decode(),
            **p.extra_env,
            **self.extra_env,
        }

    # ---- process bookkeeping -------------------------------------------------------------------------

    def _pid(self, name: str) -> int | None:
        path = self.pids / f"{name}.pid"
        if not path.exists():
            return None
        pid = int(path.read_text().strip() or 0)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        # Guard against a recycled pid: the process must be one of ours.
        if str(self.run_dir).encode() not in cmdline:
            environ = b""
            with contextlib.suppress(OSError):
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            if f"CLAUSEWORK_STACK={self.run_dir}".encode() not in environ:
                return None
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
        return None if state == "Z" else pid

    def running(self, name: str) -> bool:
        if name == "postgres":
            return self._postgres_running()
        return self._pid(name) is not None

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pids.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        full_env = {**os.environ, **(env or {}), "CLAUSEWORK_STACK": str(self.run_dir)}
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._children[name] = process
        (self.pids / f"{name}.pid").write_text(str(process.pid))

    def _exited(self, name: str) -> str | None:
        """Why `name` is not running (None while it runs): the exit code when we spawned it."""
        child = self._children.get(name)
        if child is not None:
            code = child.poll()
            return None if code is None else f"{name} exited with code {code}"
        return f"{name} is not running" if self._pid(name) is None else None

    def _signal(self, name: str, sig: signal.Signals, timeout: float) -> None:
        pid = self._pid(name)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while self._pid(name) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._pid(name) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while self._pid(name) is not None:
                time.sleep(0.1)
        (self.pids / f"{name}.pid").unlink(missing_ok=True)
        child = self._children.pop(name, None)
        if child is not None:
            child.poll()  # reap the zombie

    # ---- infrastructure ------------------------------------------------------------------------------

    @property
    def _pg_data(self) -> Path:
        """Inside .run when the postgres user can reach it; else under /var/tmp (e.g. a clone in /root)."""
        local = self.run_dir / "postgres"
        if os.geteuid() != 0:
            return local
        # Probe the repository root, which always exists, so start and stop agree on the answer.
        probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(ROOT)], capture_output=True)
        if probe.returncode == 0:
            return local
        digest = hashlib.sha1(str(self.run_dir).encode()).hexdigest()[:12]
        return Path("/var/tmp/clausework") / digest / "postgres"

    def _as_postgres(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def _postgres_running(self) -> bool:
        if self.external_database:
            return True
        return _port_open(self.profile.postgres)

    def _start_postgres(self) -> None:
        if self.external_database or self._postgres_running():
            return
        bindir = _postgres_bin()
        data = self._pg_data
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(data, "postgres", "postgres")
                data.chmod(0o700)
            subprocess.run(
                self._as_postgres(
                    [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
                ),
                check=True,
                capture_output=True,
            )
        log = self.logs / "postgres.log"
        log.touch()
        if os.geteuid() == 0:
            shutil.chown(log, "postgres", "postgres")
        options = (
            f"-p {self.profile.postgres} -c listen_addresses=127.0.0.1 -k {data}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        if _has_pg_stat_statements(bindir):
            # Counts every statement, so bench/costs.py can report statements per document (read through
            # its view, which a database gets with CREATE EXTENSION pg_stat_statements).
            options += " -c shared_preload_libraries=pg_stat_statements"
        subprocess.run(
            self._as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"]),
            check=True,
            capture_output=True,
        )
        created = subprocess.run(
            [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.profile.postgres), "-U", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        if created.stdout.strip() != "1":
            subprocess.run(
                [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.profile.postgres), "-U", "postgres",
                 DATABASE],
                check=True, capture_output=True,
            )  # fmt: skip

    def _stop_postgres(self) -> None:
        if self.external_database or not self._postgres_running():
            return
        data = self._pg_data
        stopped = subprocess.run(
            self._as_postgres([str(_postgres_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            text=True,
        )
        if stopped.returncode != 0 or self._postgres_running():
            raise StackError(f"could not stop PostgreSQL on port {self.profile.postgres}: {stopped.stderr.strip()}")

    def _start_s3(self) -> None:
        if self.external_s3 or self.running("s3"):
            return
        data = self.run_dir / "s3"
        (data / "log").mkdir(parents=True, exist_ok=True)
        p = self.profile
        self._spawn(
            "s3",
            [
                str(BIN / "weed"), f"-logdir={data / 'log'}", "mini", f"-dir={data}",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={p.s3}", f"-master.port={p.weed_master}",
                f"-volume.port={p.weed_volume}", f"-filer.port={p.weed_filer}", "-admin.ui=false",
                "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            ],
        )  # fmt: skip

    def _s3_ready(self) -> bool:
        with urllib.request.urlopen(self.s3_endpoint + "/", timeout=1) as answer:
            return bool(answer.status == 200)

    def _start_temporal(self) -> None:
        if self.running("temporal"):
            return
        p = self.profile
        self.run_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(BIN / "temporal"), "server", "start-dev",
            "--db-filename", str(self.run_dir / "temporal.db"),
            "--ip", "127.0.0.1", "--port", str(p.temporal), "--ui-port", str(p.temporal_ui),
            "--http-port", str(p.temporal + 10), "--metrics-port", str(p.temporal_server_metrics_port),
            "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=off",
            "--log-level", "warn",
        ]  # fmt: skip
        from clausework.pipeline import search

        for key in search.REQUIRED:  # the attributes our workflows carry, registered at start-dev
            command += ["--search-attribute", f"{key.name}={search.KIND}"]
        if p.headless:
            command.append("--headless")
        self._spawn("temporal", command)

    def _temporal_ready(self) -> bool:
        answer = subprocess.run(
            [str(BIN / "temporal"), "operator", "cluster", "health", "--address", f"127.0.0.1:{self.profile.temporal}"],
            capture_output=True,
            timeout=10,
        )
        return answer.returncode == 0

    # ---- public operations ---------------------------------------------------------------------------

    def start(self, name: str, wait: bool = True) -> None:
        """Start one process (if it is not running) and wait for its health check."""
        if name == "postgres":
            self._start_postgres()
            return
        if name == "s3":
            self._start_s3()
            if wait:
                wait_until("s3", self._s3_ready, 60, self.logs / "s3.log")
            return
        if name == "temporal":
            self._start_temporal()
            if wait:
                wait_until("temporal", self._temporal_ready, 90, self.logs / "temporal.log")
            return
        if not self.running(name):
            self._spawn(name, [sys.executable, "-m", MODULES[name]], self.env())
        if wait:
            self.wait_ready(name)

    def start_extra(self, name: str, module: str, port: int, env: dict[str, str], wait: bool = True) -> None:
        """Another replica of one of our processes (`module`), with its own port and settings; its
        metrics ports are derived from `port` like the profile's, unless `env` sets them."""
        self.extra_ports[name] = port
        derived = {}
        if module in MODULES:
            derived[f"{module.upper()}_METRICS_PORT"] = str(port + METRICS_OFFSET)
            if module == "worker":
                derived["WORKER_TEMPORAL_METRICS_PORT"] = str(port + TEMPORAL_METRICS_OFFSET)
        if not self.running(name):
            self._spawn(name, [sys.executable, "-m", MODULES.get(module, module)], {**self.env(), **derived, **env})
        if wait:
            self.wait_ready(name)

    def wait_ready(self, name: str, timeout: float = 90) -> None:
        port = self.port(name)

        def ready() -> bool:
            reason = self._exited(name)
            if reason is not None:
                raise StackError(f"{reason}; see {self.logs / (name + '.log')}")
            return _grpc_serving(port)

        wait_until(name, ready, timeout, self.logs / f"{name}.log")

    def stop(self, name: str, timeout: float = 30) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after `timeout`)."""
        if name == "postgres":
            self._stop_postgres()
        else:
            self._signal(name, signal.SIGTERM, timeout)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crashed node would."""
        self._signal(name, signal.SIGKILL, 10)

    def up(self) -> None:
        reserve_ports(self.profile)
        self._start_postgres()
        self._start_s3()
        self._start_temporal()
        if not self.external_s3:
            wait_until("s3", self._s3_ready, 60, self.logs / "s3.log")
        wait_until("temporal", self._temporal_ready, 90, self.logs / "temporal.log")
        self.start("store")
        for name in ("parser", "llm", "gateway", "worker"):
            self.start(name, wait=False)
        for name in ("parser", "llm", "gateway", "worker"):
            self.wait_ready(name)

    def down(self) -> None:
        extras = (
            [p.stem for p in self.pids.glob("*.pid") if p.stem not in (*SERVICES, *INFRA)] if self.pids.exists() else []
        )
        for name in [*extras, *reversed(SERVICES)]:
            self.stop(name)
        for name in ("temporal", "s3"):
            self.stop(name)
        self._stop_postgres()

    def destroy(self) -> None:
        """Delete all data (databases, objects, Temporal history, logs); the stack must be down."""
        if self._postgres_running() and not self.external_database:
            raise StackError("PostgreSQL is still running; stop the stack first")
        data = self._pg_data
        if data.parent.parent == Path("/var/tmp/clausework"):
            shutil.rmtree(data.parent, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def status(self) -> Iterator[tuple[str, str, int | None, str]]:
        p = self.profile
        rows: list[tuple[str, int, str]] = [
            ("postgres", p.postgres, "external: DATABASE_URL" if self.external_database else "PostgreSQL"),
            ("s3", p.s3, "external: S3_ENDPOINT_URL" if self.external_s3 else "SeaweedFS S3 API"),
            ("temporal", p.temporal, f"Temporal frontend; web UI http://127.0.0.1:{p.temporal_ui}"),
            ("store", p.store, "contracts.internal.v1.StoreService"),
            ("parser", p.parser, "contracts.internal.v1.ParserService"),
            ("llm", p.llm, "contracts.internal.v1.LlmService"),
            ("gateway", p.gateway, "contracts.v1.ExtractionService (public)"),
            ("worker", p.worker, "Temporal worker (gRPC health only)"),
        ]
        for name, port, what in rows:
            pid = None if name == "postgres" else self._pid(name)
            state = "running" if self.running(name) else "stopped"
            if name in SERVICES:
                what += f"; metrics http://127.0.0.1:{p.metrics_port(name)}/metrics"
            if name == "worker":
                what += f", Temporal SDK metrics :{p.temporal_metrics_port}"
            yield name, state, port, f"{what}" + (f" (pid {pid})" if pid else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "ps", "env", "start", "stop"])
    parser.add_argument("names", nargs="*", help="processes, for start/stop")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="dev")
    args = parser.parse_args()
    stack = Stack(PROFILES[args.profile])
    try:
        if args.command == "up":
            stack.up()
            print(
                f"stack up: gateway on {stack.gateway_address}, Temporal UI http://127.0.0.1:{stack.profile.temporal_ui}"
            )
        elif args.command == "down":
            stack.down()
            print("stack down")
        elif args.command == "ps":
            print(f"{'NAME':<10}{'STATE':<10}{'PORT':<8}WHAT")
            for name, state, port, what in stack.status():
                print(f"{name:<10}{state:<10}{port!s:<8}{what}")
        elif args.command == "env":
            for key, value in stack.env().items():
                print(f"export {key}={value}")
        elif args.command == "start":
            for name in args.names:
                stack.start(name)
        elif args.command == "stop":
            for name in args.names:
                stack.stop(name)
    except StackError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
