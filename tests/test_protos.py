"""The protos are the contract: they lint clean and the committed stubs match them."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from scripts.gen_protos import generate
from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def test_buf_lint_standard() -> None:
    done = subprocess.run([str(BIN / "buf"), "lint"], cwd=ROOT / "protos", capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_committed_stubs_match_protos(tmp_path: Path) -> None:
    generate(tmp_path)
    committed = ROOT / "gen" / "python"
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    existing = sorted(
        p.relative_to(committed)
        for p in (committed / "contracts").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh == existing, "run `make protos`"
    drifted = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, committed / p, shallow=False)]
    assert not drifted, f"stubs differ from protos/, run `make protos`: {drifted}"


def test_stubs_import_as_contracts_v1() -> None:
    from contracts.v1 import extraction_pb2

    names = set(extraction_pb2.DESCRIPTOR.services_by_name["ExtractionService"].methods_by_name)
    assert {"CreateExtraction", "GetExtraction"} <= names
    state = extraction_pb2.State
    assert state.Name(extraction_pb2.STATE_UNSPECIFIED) == "STATE_UNSPECIFIED"
    assert {state.Name(v) for v in state.values()} >= {
        "STATE_PENDING",
        "STATE_RUNNING",
        "STATE_SUCCEEDED",
        "STATE_FAILED",
        "STATE_CANCELLED",
    }
    clause_fields = set(extraction_pb2.Clause.DESCRIPTOR.fields_by_name)
    assert clause_fields == {
        "category",
        "text",
        "page_start",
        "page_end",
        "char_start",
        "char_end",
        "confidence",
        "answer",
    }


def test_buf_generate_config_for_other_languages() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "protos" / "buf.gen.yaml").read_text())
    remotes = {plugin["remote"] for plugin in config["plugins"]}
    assert {"buf.build/grpc/go", "buf.build/grpc/java", "buf.build/connectrpc/es"} <= remotes
    done = subprocess.run([str(BIN / "buf"), "build", "-o", "/dev/null"], cwd=ROOT / "protos", capture_output=True)
    assert done.returncode == 0, done.stderr
