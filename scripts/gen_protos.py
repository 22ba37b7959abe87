"""Generate the Python stubs for protos/ into gen/python (importable as `contracts.v1`).

Used by `make protos` and by the drift test, which generates into a temporary directory and compares.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
DEFAULT_OUT = ROOT / "gen" / "python"
BIN = Path(sys.executable).parent


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out: Path) -> None:
    """Regenerate every stub under `out/contracts`, with .pyi type stubs and package __init__ files."""
    if (out / "contracts").exists():
        shutil.rmtree(out / "contracts")
    out.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        # Typed stubs (mypy-protobuf) for messages and for sync + asyncio gRPC stubs and servicers.
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for directory in sorted({p.parent for p in (out / "contracts").rglob("*.py")} | {out / "contracts"}):
        while directory != out:
            (directory / "__init__.py").touch()
            (directory / "py.typed").touch()
            directory = directory.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
