"""llama.cpp's llama-server as a local child process: the real OpenAI-compatible endpoint that the tests,
the benchmark and the LLM evaluation run against.

`scripts/setup_llm_server.sh` builds the server and fetches the weights into ~/.cache/clausework once;
`cached_paths()` asks that script where they are (LLAMA_SERVER_BIN, SMOLLM2_GGUF, QWEN_GGUF; the
environment overrides each).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from deploy.local.stack import StackError, wait_until

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup_llm_server.sh"
KEYS = ("LLAMA_SERVER_BIN", "SMOLLM2_GGUF", "QWEN_GGUF")


def cached_paths() -> dict[str, str]:
    """Where the set-up script puts the server and the weights (whether or not they exist yet)."""
    result = subprocess.run(["bash", str(SETUP), "--paths"], capture_output=True, text=True, check=False)
    paths = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    paths.update({key: os.environ[key] for key in KEYS if os.environ.get(key)})
    return paths


def missing(paths: dict[str, str], keys: tuple[str, ...]) -> list[str]:
    return [key for key in keys if not (paths.get(key) and Path(paths[key]).is_file())]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LlamaServer:
    """One llama-server on a free loopback port, `parallel` slots of `context_per_slot` tokens each.

    Started in its own session so `stop()` takes down the whole process group; use as a context
    manager or call `stop()` in a `finally`.
    """

    binary: str
    model: str
    log_path: Path
    parallel: int = 2
    threads: int = 1
    context_per_slot: int = 4096
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    port: int = field(default=0, init=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 180.0) -> LlamaServer:
        self.port = free_port()
        command = [self.binary, "-m", self.model, "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["-c", str(self.context_per_slot * self.parallel), "-np", str(self.parallel)]
        command += ["-t", str(self.threads)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until("llama-server", self._healthy, timeout, self.log_path)
        except StackError:
            self.stop()
            raise
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise StackError(f"llama-server exited with {self.process.returncode}")
        # 503 while the model loads raises, and the wait goes on
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
            return bool(response.status == 200)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
