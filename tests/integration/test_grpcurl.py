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


def test_every_rpc_as_in_the_readme(stack: Stack) -> None:
    """The README's grpcurl calls for each ExtractionService RPC, verbatim in spirit."""
    service = "contracts.v1.ExtractionService"
    content = base64.b64encode(pdfs.text_pdf([*pdfs.CONTRACT_PAGES, "grpcurl upload"])).decode()
    half = len(content) // 8 * 4  # split on a base64 quantum so each chunk decodes alone
    stream = "\n".join(
        json.dumps(message)
        for message in (
            {"metadata": {"filename": "streamed.pdf", "request_id": "grpcurl-upload-1"}},
            {"chunk": content[:half]},
            {"chunk": content[half:]},
        )
    )
    uploaded = json.loads(grpcurl(stack.gateway_address, f"{service}/UploadExtraction", data=stream))
    assert uploaded["document"]["filename"] == "streamed.pdf"
    watched = grpcurl(stack.gateway_address, f"{service}/WatchExtraction", data=json.dumps({"id": uploaded["id"]}))
    updates = [json.loads(part) for part in watched.replace("}\n{", "}\x00{").split("\x00")]
    assert updates[-1]["state"] == "STATE_SUCCEEDED"
    listed = json.loads(grpcurl(stack.gateway_address, f"{service}/ListExtractions", data=json.dumps({"page_size": 5})))
    assert uploaded["id"] in [e["id"] for e in listed["extractions"]]
    cancelled = json.loads(
        grpcurl(stack.gateway_address, f"{service}/CancelExtraction", data=json.dumps({"id": uploaded["id"]}))
    )
    assert cancelled["state"] == "STATE_SUCCEEDED", "cancel leaves a finished extraction unchanged"


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
