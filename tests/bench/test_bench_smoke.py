"""The benchmark harness runs: `python -m bench --quick` on the micro-benchmarks that need no stack (the
parser comparison on generated PDFs, the no-op gRPC floor of the submit benchmark) and writes its
report. No timing assertions: figures on a shared test machine mean nothing."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import main
from bench.common import Section, percentile
from bench.markdown import render


def test_quick_run_writes_the_report(tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    assert main(["--quick", "--only", "parser,submit", "--no-stack", "--output", str(output)]) == 0
    report = output.read_text()
    assert "## Machine" in report and "cores:" in report
    assert "raw PyMuPDF page.get_text()" in report
    assert "parse_pdf / raw PyMuPDF" in report
    assert "floor (no-op server): p50 at 32 client(s)" in report
    assert "gateway part skipped" in report  # no stack in the smoke test
    assert "Skipped" not in report and "failed:" not in report


def test_percentile_and_render() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([float(x) for x in range(1, 101)], 99) == 99.0
    section = Section("x", "python -m bench --only x")
    section.add("speed", 3.0, "pages/s", "≥ 2", True)
    section.add("skipped one", None, "s")
    text = render([section], {"cores": "2"}, "python -m bench", quick=False)
    assert "| x | speed | 3 pages/s | ≥ 2 | ✅ met |" in text
    assert "n/a" in text
