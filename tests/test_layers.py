"""Imports run downward only: tools -> processes -> the clausework library -> generated contracts.

The layers, top to bottom:
- tools: training/, bench/, scripts/, deploy/, tests/ (may import anything below them);
- processes: services/<name>/ (one per service) and orchestrator/; a process imports only its own code
  and the library, never another process;
- the library: clausework/ (imports nothing of the above);
- contracts (generated stubs) and third-party packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = frozenset({"training", "bench", "scripts", "deploy", "tests"})
PROCESSES = frozenset({"orchestrator", "services"})
SKIPPED = frozenset({".git", ".venv", ".run", "gen", "build", "out", "node_modules"})


def owner(module: str) -> str:
    """The unit a module belongs to: `services.<name>` for a service, else its top-level package."""
    parts = module.split(".")
    if parts[0] == "services" and len(parts) > 1:
        return f"services.{parts[1]}"
    return parts[0]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, inside functions too."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]  # a module's package, or __init__'s own
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def violation(source: str, target: str) -> str | None:
    """Why `source`'s unit may not import `target`, or None when the import runs downward."""
    mine, theirs = owner(source), owner(target)
    if mine == theirs or (theirs not in TOOLS | PROCESSES | {"clausework"} and not theirs.startswith("services.")):
        return None
    if mine == "clausework":
        return "the library imports nothing above it"
    if mine.startswith("services.") or mine == "orchestrator":
        if theirs in TOOLS:
            return "a process imports no tool (training, bench, scripts, deploy, tests)"
        if theirs.startswith("services.") or theirs in PROCESSES:
            return "a process imports no other process (shared code belongs in clausework/)"
    return None


def python_files() -> list[Path]:
    return sorted(path for path in ROOT.rglob("*.py") if not SKIPPED.intersection(path.relative_to(ROOT).parts[:1]))


def module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_imports_run_downward() -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{line} imports {target}: {why}"
        for path in python_files()
        for line, target in imported_modules(path)
        if (why := violation(module_of(path), target))
    ]
    assert not problems, "imports that run back up:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("services.gateway.server", "services.store.extractions"),
        ("services.store.relay", "orchestrator.workflows"),
        ("orchestrator.activities", "services.parser.sandbox"),
        ("services.llm.backends", "training.heldout"),
        ("orchestrator.worker", "deploy.local.stack"),
        ("clausework.pdf", "services.parser.sandbox"),
        ("clausework.model.embedded", "training.model"),
        ("clausework.cli.commands", "tests.pdfs"),
    ],
)
def test_an_upward_import_is_a_violation(source: str, target: str) -> None:
    assert violation(source, target)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("services.llm.server", "services.llm.backends"),
        ("services.gateway.server", "clausework.pipeline"),
        ("orchestrator.activities", "clausework.runtime.errors"),
        ("training.model", "clausework.model.embedded"),
        ("bench.pipeline", "services.store.extractions"),
        ("tests.conftest", "deploy.local.stack"),
        ("clausework.llm.extractor", "contracts.v1.extraction_pb2"),
        ("clausework.cli.commands", "grpc"),
    ],
)
def test_a_downward_import_is_allowed(source: str, target: str) -> None:
    assert violation(source, target) is None
