"""What an operator does with grpcurl: list services via reflection, check health, call the API."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local.stack import Stack
from tests import pdfs

GRPCURL = Path(sys.executable).parent / "grpcurl"

EXPECTED = {
    "gateway": "contracts.v1.ExtractionService",
    "parser": "contracts.internal.v1.ParserService",
    "llm": "contracts.internal.v1.LlmService",
    "store": "contracts.internal.v1.StoreService",
    "worker": None,
}


def grpcurl(*args: str, data: str | None = None) -> str:
    command = [str(GRPCURL), "-plaintext", *(["-d", "@"] if data is not None else []), *args]
    done = subprocess.run(command, input=data, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reflection_lists_services_and_health_is_serving(stack: Stack, name: str) -> None:
    address = f"127.0.0.1:{stack.port(name)}"
    listed = grpcurl(address, "list").split()
    assert "grpc.health.v1.Health" in listed
    assert "grpc.reflection.v1alpha.ServerReflection" in listed
    if EXPECTED[name]:
        assert EXPECTED[name] in listed
    assert json.loads(grpcurl(address, "grpc.health.v1.Health/Check")) == {"status": "SERVING"}


def test_readme_create_and_get_calls(stack: Stack) -> None:
    payload = json.dumps({"content": base64.b64encode(pdfs.contract_pdf()).decode(), "filename": "a.pdf"})
    created = json.loads(
        grpcurl(stack.gateway_address, "contracts.v1.ExtractionService/CreateExtraction", data=payload)
    )
    assert created["state"] == "STATE_PENDING"
    got = json.loads(
        grpcurl(
            stack.gateway_address,
            "contracts.v1.ExtractionService/GetExtraction",
            data=json.dumps({"id": created["id"]}),
        )
    )
    assert got["id"] == created["id"]
    described = grpcurl(stack.gateway_address, "describe", "contracts.v1.Clause")
    assert "char_start" in described and "confidence" in described
