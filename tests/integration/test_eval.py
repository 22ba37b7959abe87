"""`make eval`: contracts from ../shared/cuad through the gateway, scored by the CUAD scorer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local.stack import Stack
from tests.conftest import ROOT, cuad_available


@pytest.mark.skipif(not cuad_available(), reason="../shared/cuad is not here")
def test_eval_scores_contracts_uploaded_through_the_gateway(stack: Stack, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scripts.eval_cuad", "--n", "2", "--address", stack.gateway_address,
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert "detection P=" in done.stdout and "spans P=" in done.stdout
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    labels = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [p["id"] for p in predictions] == [d["id"] for d in labels]
    assert all(p["state"] == "STATE_SUCCEEDED" and p["clauses"] for p in predictions)
    assert {"category", "text", "confidence"} <= set(predictions[0]["clauses"][0])
