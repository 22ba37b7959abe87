"""Quality and tokens of the OpenAI-compatible backend on CUAD contracts, beside the embedded model.

    python -m scripts.eval_llm [--n 4] [--runs chunks,retrieval:embedded,retrieval:keyword]
    python -m scripts.eval_llm --base-url http://HOST/v1 --model M [...]

Runs `OpenAIExtractor` (the llm service's OpenAI path, in-process) against any OpenAI-compatible
server on the N shortest CUAD contracts of at least --min-chars characters, once per run (a strategy,
and for retrieval/auto the passage selector), and scores each run with ../shared/eval/score_cuad.py on
exactly those contracts. The embedded selector of a contract is its cross-validation fold's model
(`training.heldout`), which never saw it; the embedded model's own row is those fold models'
extractions, so nothing is scored on contracts a model was trained on. Prints one table (markdown)
and writes out/eval-llm/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, cast

from bench.llama import LlamaServer, cached_paths, missing
from clausework.llm.extractor import OpenAIExtractor, Strategy
from clausework.llm.prompts import load_categories
from clausework.model.embedded import EmbeddedSelector
from services.llm.settings import LlmSettings
from training.crossval import prediction_line, run_scorer
from training.data import DEFAULT_CUAD, DEFAULT_SCORER, Contract, load_corpus
from training.heldout import FoldModels

ROOT = Path(__file__).resolve().parent.parent


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def row(name: str, scores: dict[str, Any], extra: str) -> str:
    detection, spans = scores["detection"], scores["spans"]
    return (
        f"| {name} | {detection['f1']:.3f} | {spans['precision']:.3f} | {spans['recall']:.3f} | {spans['f1']:.3f}"
        f" | {spans['aupr']:.3f} | {extra} |"
    )


def baseline(args: argparse.Namespace, folds: FoldModels) -> tuple[list[Contract], list[str]]:
    """The N shortest contracts, their labels, and the embedded model's row (each contract extracted by
    its fold's model, as in cross-validation)."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    long_enough = [c for c in load_corpus(DEFAULT_CUAD) if len(c.text) >= args.min_chars]
    contracts = sorted(long_enough, key=lambda c: len(c.text))[: args.n]
    ids = {c.id for c in contracts}
    records = [json.loads(line) for line in (DEFAULT_CUAD / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    write_jsonl(out / "labels.jsonl", [r for r in records if r["id"] in ids])
    print(f"{len(contracts)} contracts, {sum(len(c.text) for c in contracts)} characters in all", file=sys.stderr)

    lines = ["| predictions | detection F1 | span P | span R | span F1 | AUPR | prompt / completion tokens |"]
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    embedded = [prediction_line(c.id, c.text, folds.model_for(c.id).extract(c.text)) for c in contracts]
    write_jsonl(out / "embedded.jsonl", embedded)
    lines.append(
        row("embedded (fold model)", run_scorer(DEFAULT_SCORER, out / "labels.jsonl", out / "embedded.jsonl"), "none")
    )
    return contracts, lines


async def run(args: argparse.Namespace, folds: FoldModels, contracts: list[Contract], lines: list[str]) -> None:
    out: Path = args.out
    labels = out / "labels.jsonl"
    for run_name in args.runs.split(","):
        strategy, _, selector = run_name.partition(":")
        extractor = OpenAIExtractor(
            base_url=args.base_url,
            api_key=os.environ.get("OPENAI_API_KEY", ""),
            model=args.model,
            timeout_seconds=args.timeout,
            max_concurrency=args.concurrency,
            strategy=cast(Strategy, strategy),
            max_output_tokens=args.max_output_tokens,
            categories=load_categories(),
        )
        predictions, prompt_tokens, completion_tokens, dropped = [], 0, 0, 0
        started = time.monotonic()
        try:
            for contract in contracts:
                if selector == "embedded":
                    extractor.planner.selector = EmbeddedSelector(folds.model_for(contract.id), args.min_presence)
                elif selector not in ("", "keyword"):
                    raise SystemExit(f"unknown selector {selector!r} in {run_name!r}")
                result = await extractor.extract(contract.text)
                clauses = [
                    {
                        "category": s.category,
                        "text": contract.text[s.char_start : s.char_end],
                        "confidence": s.confidence,
                    }
                    for s in result.spans
                ]
                predictions.append({"id": contract.id, "clauses": clauses})
                prompt_tokens += result.prompt_tokens
                completion_tokens += result.completion_tokens
                dropped += result.dropped_quotes
                print(
                    f"{run_name} {contract.id}: {len(result.spans)} spans, {result.prompt_tokens} prompt tokens,"
                    f" {result.dropped_quotes} quotes dropped, {time.monotonic() - started:.0f}s",
                    file=sys.stderr,
                )
        finally:
            await extractor.aclose()
        path = out / f"openai-{run_name.replace(':', '-')}.jsonl"
        write_jsonl(path, predictions)
        tokens = f"{prompt_tokens // len(contracts):,} / {completion_tokens // len(contracts):,} per contract"
        lines.append(
            row(
                f"{args.model} `{run_name}` ({dropped} quotes dropped)",
                run_scorer(DEFAULT_SCORER, labels, path),
                tokens,
            )
        )
    table = "\n".join(lines)
    await asyncio.to_thread((out / "table.md").write_text, table + "\n", encoding="utf-8")
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--base-url", help="a running OpenAI-compatible server (key: OPENAI_API_KEY)")
    where.add_argument(
        "--local",
        choices=("qwen", "smollm2"),
        default="qwen",
        help="without --base-url: start llama-server with these weights (scripts/setup_llm_server.sh --with-qwen)",
    )
    parser.add_argument("--model", default="", help="model name sent to the server (default: the local weights)")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--min-chars", type=int, default=10_000, help="skip the cover-page-only stubs")
    parser.add_argument(
        "--runs",
        default="chunks,retrieval:embedded,retrieval:keyword",
        help="comma-separated STRATEGY[:SELECTOR]; selector embedded (default in the service) or keyword",
    )
    parser.add_argument(
        "--min-presence",
        type=float,
        default=LlmSettings.model_fields["openai_min_presence"].default,
        help="the embedded selector's presence floor (default: the llm service's)",
    )
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--max-output-tokens", type=int, default=1024)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "eval-llm")
    args = parser.parse_args()
    folds = FoldModels()
    contracts, lines = baseline(args, folds)
    if args.base_url:
        args.model = args.model or "default"
        asyncio.run(run(args, folds, contracts, lines))
        return
    paths = cached_paths()
    weights = {"qwen": "QWEN_GGUF", "smollm2": "SMOLLM2_GGUF"}[args.local]
    if absent := missing(paths, ("LLAMA_SERVER_BIN", weights)):
        raise SystemExit(f"{', '.join(absent)} not set up: run scripts/setup_llm_server.sh --with-qwen")
    args.model = args.model or Path(paths[weights]).stem
    server = LlamaServer(
        paths["LLAMA_SERVER_BIN"],
        paths[weights],
        args.out / "llama-server.log",
        parallel=args.concurrency,
        threads=os.cpu_count() or 1,
        context_per_slot=8192,  # 41 category definitions, a 6,000-character chunk and the reply
    )
    with server:
        args.base_url = server.base_url
        asyncio.run(run(args, folds, contracts, lines))


if __name__ == "__main__":
    main()
