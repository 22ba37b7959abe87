"""ruff and mypy --strict are part of the suite, so CI fails on what they find."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def run(*command: str) -> None:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]


def test_ruff_lint() -> None:
    run(str(BIN / "ruff"), "check", ".")


def test_ruff_format() -> None:
    run(str(BIN / "ruff"), "format", "--check", ".")


def test_mypy_strict() -> None:
    run(str(BIN / "mypy"))
