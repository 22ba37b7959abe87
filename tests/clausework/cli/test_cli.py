"""The `contracts` command against the real stack, as a person at a terminal runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local.stack import Stack
from tests import pdfs

pytestmark = pytest.mark.integration


def contracts(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clausework.cli", "--address", stack.gateway_address, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_extract_get_list_watch_cancel(stack: Stack, tmp_path: Path) -> None:
    contract = tmp_path / "msa.pdf"
    contract.write_bytes(pdfs.text_pdf([*pdfs.CONTRACT_PAGES, "cli test"]))

    table = contracts(stack, "extract", str(contract))
    assert table.returncode == 0, table.stderr
    assert "Governing Law" in table.stdout and "msa.pdf: 4 pages" in table.stdout
    assert "succeeded" in table.stderr, "live progress is shown"

    extracted = contracts(stack, "extract", str(contract), "--json")
    assert extracted.returncode == 0, extracted.stderr
    assert len(extracted.stdout.strip().splitlines()) == 1, "one JSON line"
    result = json.loads(extracted.stdout)
    assert result["state"] == "STATE_SUCCEEDED" and result["clauses"]

    got = contracts(stack, "get", result["id"], "--json")
    assert json.loads(got.stdout)["id"] == result["id"]
    listed = contracts(stack, "list", "--state", "succeeded", "--limit", "5")
    assert listed.returncode == 0 and result["id"] in listed.stdout
    watched = contracts(stack, "watch", result["id"])
    assert watched.returncode == 0 and "Governing Law" in watched.stdout
    cancelled = contracts(stack, "cancel", result["id"])
    assert cancelled.returncode == 0 and "succeeded" in cancelled.stdout
    report = tmp_path / "report.html"
    written = contracts(stack, "report", result["id"], "--out", str(report))
    assert written.returncode == 0, written.stderr
    html = report.read_text()
    assert "data:image/png;base64," in html and "Governing Law" in html


def test_errors_are_one_clear_line(stack: Stack, tmp_path: Path) -> None:
    not_pdf = tmp_path / "notes.pdf"
    not_pdf.write_text("just text")
    failed = contracts(stack, "extract", str(not_pdf))
    assert failed.returncode != 0
    assert failed.stderr.strip().splitlines()[-1] == "error: INVALID_ARGUMENT: content is not a PDF (no %PDF- header)"
    missing = contracts(stack, "get", "00000000-0000-0000-0000-000000000000")
    assert "NOT_FOUND" in missing.stderr


def test_extract_with_retention_and_webhook_then_delete(stack: Stack, tmp_path: Path) -> None:
    contract = tmp_path / "nda.pdf"
    contract.write_bytes(pdfs.text_pdf([*pdfs.CONTRACT_PAGES, "cli lifecycle test"]))
    extracted = contracts(stack, "extract", str(contract), "--json", "--retention", "7d")
    assert extracted.returncode == 0, extracted.stderr
    result = json.loads(extracted.stdout)
    assert result["expireTime"] > result["createTime"]
    refused = contracts(stack, "extract", str(contract), "--webhook", "https://10.0.0.1/hook")
    assert refused.returncode != 0 and "INVALID_ARGUMENT" in refused.stderr
    bad = contracts(stack, "extract", str(contract), "--retention", "soon")
    assert bad.returncode == 2 and "expected a number" in bad.stderr
    deleted = contracts(stack, "delete", result["id"])
    assert deleted.returncode == 0, deleted.stderr
    assert "NOT_FOUND" in contracts(stack, "get", result["id"]).stderr
    assert "NOT_FOUND" in contracts(stack, "delete", result["id"]).stderr
