from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clausework.runtime.settings import PIPELINE_CPU_NICE
from orchestrator.settings import WorkerSettings
from services.gateway.settings import GatewaySettings
from services.llm.settings import LlmSettings
from services.parser.settings import ParserSettings
from services.store.settings import StoreSettings


def test_local_defaults_fit_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATEWAY_PORT", "STORE_ADDRESS", "DATABASE_URL", "TEMPORAL_ADDRESS", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    assert GatewaySettings().port == 50051
    assert ParserSettings().port == 50052
    assert LlmSettings().port == 50053
    assert StoreSettings().port == 50054
    assert WorkerSettings().port == 50055
    assert GatewaySettings().store_address == ParserSettings().store_address == "127.0.0.1:50054"
    assert GatewaySettings().max_upload_bytes == 32 * 1024 * 1024


def test_prefixed_and_shared_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARSER_PORT", "6001")
    monkeypatch.setenv("PARSER_HOST", "0.0.0.0")
    monkeypatch.setenv("STORE_ADDRESS", "dns:///store.ns.svc:50054")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/x")
    parser = ParserSettings()
    assert (parser.host, parser.port, parser.address) == ("0.0.0.0", 6001, "0.0.0.0:6001")
    assert parser.store_address == "dns:///store.ns.svc:50054"
    assert parser.log_level == "DEBUG"
    assert StoreSettings().database_url == "postgresql://u@db/x"
    assert GatewaySettings().port == 50051, "another service's prefix does not leak"


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "not-a-port")
    with pytest.raises(ValueError, match="port"):
        GatewaySettings()


def test_the_pipeline_runs_below_the_submit_path() -> None:
    assert [s().cpu_nice for s in (ParserSettings, LlmSettings, WorkerSettings)] == [PIPELINE_CPU_NICE] * 3
    assert [s().cpu_nice for s in (GatewaySettings, StoreSettings)] == [0, 0]


def test_lower_cpu_priority_raises_the_nice_value_of_the_process() -> None:
    code = (
        "import os; from services.parser.settings import ParserSettings; before = os.nice(0); "
        "ParserSettings().lower_cpu_priority(); print(os.nice(0) - before)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "PARSER_CPU_NICE": "7"},
    )  # fmt: skip
    assert done.stdout.strip() == "7"
