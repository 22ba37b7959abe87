"""Run the benchmarks and write BENCHMARKS.md.

    python -m bench                     # everything (brings the `bench` stack up, and down at the end)
    python -m bench --quick             # small counts: a smoke run of the harness, figures not meaningful
    python -m bench --only parser,submit --output /tmp/b.md

Benchmarks that need no stack run first and after it (llm_server, which wants the cores to itself);
those through the stack run on the `bench` profile (own ports and data), idle ones before loaded ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import breakdown, costs, e2e, llm_latency, llm_server, load, parser, parser_rss, pipeline, scale, submit
from bench.common import ROOT, Section, machine
from bench.markdown import render

ORDER = (
    "parser", "parser_rss", "llm_latency", "e2e", "pipeline", "scale", "costs", "breakdown", "submit", "load",
    "llm_server",
)  # fmt: skip
NEEDS_STACK = {"e2e", "pipeline", "scale", "costs", "breakdown", "submit", "load"}


def _guarded(name: str, title: str, command: str, body: Callable[[], Section]) -> Section:
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    began = time.perf_counter()
    try:
        section = body()
    except Exception as error:
        traceback.print_exc()
        section = Section(title, command, skipped=f"failed: {error!r}")
    section.seconds = time.perf_counter() - began
    print(f"[bench] {name} done in {section.seconds:.0f} s", file=sys.stderr, flush=True)
    for figure in section.figures:
        print(f"    {figure.metric}: {figure.render_value()} {figure.target} {figure.met}", file=sys.stderr)
    return section


def main(argv: list[str] | None = None) -> int:
    args_parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args_parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    args_parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(ORDER)}")
    args_parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args_parser.add_argument("--json", type=Path, help="also write the raw figures as JSON")
    args_parser.add_argument(
        "--no-stack", action="store_true", help="skip what needs the stack (submit: the no-op floor only)"
    )
    args_parser.add_argument("--keep-stack", action="store_true", help="leave the bench stack running")
    args = args_parser.parse_args(argv)
    chosen = [n for n in ORDER if not args.only or n in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(ORDER) - {""}
    if unknown:
        args_parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    facts = machine()
    sections: list[Section] = []
    quick = args.quick

    for name in chosen:
        if name == "parser":
            sections.append(_guarded(name, "Parser pages/s", parser.COMMAND, lambda: parser.run(quick)))
        elif name == "parser_rss":
            sections.append(_guarded(name, "Parser peak RSS", parser_rss.COMMAND, lambda: parser_rss.run(quick)))
        elif name == "llm_latency":
            sections.append(_guarded(name, "llm latency", llm_latency.COMMAND, lambda: llm_latency.run(quick)))

    stacked = [] if args.no_stack else [n for n in chosen if n in NEEDS_STACK]
    if stacked:
        from bench.stackutil import bench_stack, fresh_up

        stack = bench_stack()
        print("[bench] bringing the bench stack up ...", file=sys.stderr, flush=True)
        try:
            fresh_up(stack)
            gateway = stack.gateway_address
            runs: dict[str, tuple[str, str, Callable[[], Section]]] = {
                "e2e": ("End-to-end", e2e.COMMAND, lambda: asyncio.run(e2e.run(gateway, quick))),
                "pipeline": ("Pipeline", pipeline.COMMAND, lambda: asyncio.run(pipeline.run(stack, quick))),
                "scale": ("Scale-out", scale.COMMAND, lambda: asyncio.run(scale.run(stack, quick))),
                "costs": ("Costs", costs.COMMAND, lambda: asyncio.run(costs.run(stack, quick))),
                "breakdown": ("Breakdown", breakdown.COMMAND, lambda: asyncio.run(breakdown.run(stack, quick))),
                "submit": ("Submit", submit.COMMAND, lambda: _submit(gateway, quick)),
                "load": ("Load", load.COMMAND, lambda: asyncio.run(load.run(stack, quick))),
            }
            for name in stacked:
                sections.append(_guarded(name, *runs[name]))
        finally:
            if not args.keep_stack:
                stack.down()
    if args.no_stack and "submit" in chosen:
        sections.append(_guarded("submit", "Submit", submit.COMMAND, lambda: _submit(None, quick)))

    if "llm_server" in chosen:
        sections.append(_guarded("llm_server", "LLM server", llm_server.COMMAND, lambda: llm_server.run(quick)))

    argv_text = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    args.output.write_text(render(sections, facts, argv_text, quick), encoding="utf-8")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": facts,
                    "sections": [{"title": s.title, "figures": [vars(f) for f in s.figures]} for s in sections],
                },
                indent=2,
            )
        )
    print(f"[bench] wrote {args.output}", file=sys.stderr)
    return 0


def _submit(gateway: str | None, quick: bool) -> Section:
    section, ids = asyncio.run(submit.run(gateway, quick))
    if gateway is not None and ids:
        # Drain what the submits started, so the load benchmark starts from an idle pipeline (watched
        # from here on, not during the submits: their latency is the measurement).
        from bench.stackutil import wait_all

        began = time.perf_counter()
        done = asyncio.run(wait_all(gateway, ids, timeout=1800))
        seconds = time.perf_counter() - began
        section.add("backlog the submits started: drained in", seconds, "s")
        section.add("backlog SUCCEEDED", sum(1 for e in done.values() if e.state == 3), f"of {len(ids)}")
    return section


if __name__ == "__main__":
    raise SystemExit(main())
