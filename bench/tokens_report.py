"""Prompt tokens per contract: the whole contract in chunks versus retrieval of passages per category.

Both strategies are planned exactly as `OpenAIExtractor.extract` would send them (same prompt, same
chunking, same selector); no LLM is called. Tokens are counted by a llama-server's /tokenize (exact for
that model's tokenizer) or, offline, estimated at 4 characters a token. With CUAD labels, it also
reports retrieval recall: the share of labelled clauses that land in a request asking their category
— the ceiling retrieval puts on the LLM's recall.

    python -m bench.tokens_report --cuad 20 [--tokenize-url http://127.0.0.1:8080]
    python -m bench.tokens_report contract.pdf other.txt
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clausework.chunking import PassageSelector
from clausework.llm.extractor import OpenAIExtractor, PlannedRequest
from clausework.llm.grounding import Grounder
from clausework.llm.planner import QuoteStrategy
from services.llm.settings import LlmSettings
from training.data import DEFAULT_CUAD

TokenCounter = Callable[[str], int]
# Tokens a chat template adds per message (role markers): a small constant for common templates.
MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """The usual rule of thumb for English BPE vocabularies: ~4 characters a token."""
    return math.ceil(len(text) / 4)


def llama_server_counter(url: str) -> TokenCounter:
    """Exact counts from a running llama-server's /tokenize (its model's tokenizer)."""

    def count(text: str) -> int:
        request = urllib.request.Request(
            url.rstrip("/") + "/tokenize",
            data=json.dumps({"content": text, "add_special": False}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return len(json.loads(response.read())["tokens"])

    return count


@dataclass(frozen=True)
class StrategyCost:
    requests: int
    prompt_tokens: int
    prompt_chars: int


def cost(
    extractor: OpenAIExtractor,
    text: str,
    strategy: QuoteStrategy,
    count: TokenCounter,
    plan: Sequence[PlannedRequest] | None = None,
) -> StrategyCost:
    """Prompt tokens of the requests planned for `text` (first attempts; repairs are extra)."""
    plan = plan if plan is not None else extractor.plan(text, strategy)
    tokens = chars = 0
    for request in plan:
        for message in extractor.messages(text, request):
            content = str(message.get("content") or "")
            tokens += count(content) + MESSAGE_OVERHEAD
            chars += len(content)
    return StrategyCost(len(plan), tokens, chars)


def retrieval_recall(
    extractor: OpenAIExtractor, text: str, gold: dict[str, list[str]], plan: Sequence[PlannedRequest] | None = None
) -> tuple[int, int]:
    """(labelled clauses inside a request for their category, labelled clauses found in the text).

    A clause counts as sent when at least half of it lies in passages of a request asking its category.
    """
    plan = plan if plan is not None else extractor.plan(text, "retrieval")
    grounder = Grounder(text)
    covered = total = 0
    for category, contexts in gold.items():
        ranges = [(p.start, p.end) for r in plan if any(c.name == category for c in r.categories) for p in r.pieces]
        for context in contexts:
            found = grounder.locate(context)
            if found is None:
                continue
            total += 1
            length = found.end - found.start
            overlap = sum(max(0, min(found.end, e) - max(found.start, s)) for s, e in ranges)
            covered += overlap * 2 >= length
    return covered, total


def _load_text(path: Path) -> str:
    if path.suffix.lower() == ".pdf":
        from clausework.pdf import parse_pdf

        return parse_pdf(path.read_bytes()).text
    return path.read_text(encoding="utf-8")


def _selectors(args: argparse.Namespace) -> Callable[[str | None], PassageSelector]:
    """Selector per document: for a CUAD contract (by id), its cross-validation fold's model, so its
    recall is not measured on the model's own training data; for other files, the shipped model."""
    from clausework.model.embedded import EmbeddedExtractor, EmbeddedSelector

    shipped = EmbeddedSelector(EmbeddedExtractor.load(), args.min_presence)
    folds = None
    if args.cuad:
        try:  # a development checkout: trains or loads fold models
            from training.heldout import FoldModels
        except ImportError as error:
            raise SystemExit(
                f"--cuad with the embedded selector needs the training extra ({error}): "
                "pip install -e '.[train]', or --selector keyword"
            ) from error

        folds = FoldModels(args.cuad_dir)

    def selector_for(contract_id: str | None) -> PassageSelector:
        if contract_id is None or folds is None:
            return shipped
        return EmbeddedSelector(folds.model_for(contract_id), args.min_presence)

    return selector_for


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="PDF or text files")
    parser.add_argument("--cuad", type=int, default=0, help="also the first N contracts of shared/cuad (with labels)")
    parser.add_argument("--cuad-dir", type=Path, default=DEFAULT_CUAD)
    parser.add_argument("--tokenize-url", default="", help="llama-server base URL for exact token counts")
    parser.add_argument("--chunk-chars", type=int, default=6000)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument(
        "--selector",
        choices=("keyword", "embedded"),
        default="embedded",
        help="retrieval's passage selector; embedded: on CUAD contracts the fold model that never saw them",
    )
    parser.add_argument("--min-presence", type=float, default=LlmSettings.model_fields["openai_min_presence"].default)
    args = parser.parse_args(argv)

    count = llama_server_counter(args.tokenize_url) if args.tokenize_url else estimate_tokens
    documents: list[tuple[str, Path, dict[str, list[str]] | None]] = [(p.name, p, None) for p in args.paths]
    gold: dict[str, list[str]] | None
    if args.cuad:
        lines = (args.cuad_dir / "labels.jsonl").read_text(encoding="utf-8").splitlines()
        for line in sorted(lines)[: args.cuad]:
            row = json.loads(line)
            gold = {k: list(v["contexts"]) for k, v in row["clauses"].items()}
            documents.append((row["id"], args.cuad_dir / row["pdf"], gold))
    if not documents:
        parser.error("give files or --cuad N")

    extractor = OpenAIExtractor(
        base_url="http://127.0.0.1:9/v1", api_key="", model="plan-only", chunk_chars=args.chunk_chars, top_k=args.top_k
    )
    strategies: tuple[QuoteStrategy, ...] = ("chunks", "retrieval", "auto")
    print(f"tokens: {'llama-server ' + args.tokenize_url if args.tokenize_url else 'estimated at 4 chars/token'}")
    print(f"retrieval selector: {args.selector}" + (f", min presence {args.min_presence}" if args.min_presence else ""))
    print("prompt tokens of first attempts (requests); recall: labelled clauses sent to a request for their category")
    print(
        f"{'document':<18}{'chars':>8}"
        + "".join(f"{s:>18}" for s in strategies)
        + f"{'retr recall':>13}{'auto recall':>13}"
    )
    totals = {s: [0, 0] for s in strategies}
    recall_totals = {"retrieval": [0, 0], "auto": [0, 0]}
    total_chars = 0
    selector_for = _selectors(args) if args.selector == "embedded" else None
    for name, path, gold in documents:
        text = _load_text(path)
        if selector_for is not None:
            extractor.planner.selector = selector_for(name if gold is not None else None)
        total_chars += len(text)
        line = f"{name:<18}{len(text):>8}"
        # planned once per strategy: with the embedded selector, planning runs the model over the text
        plans = {strategy: extractor.plan(text, strategy) for strategy in strategies}
        for strategy in strategies:
            spent = cost(extractor, text, strategy, count, plans[strategy])
            totals[strategy][0] += spent.prompt_tokens
            totals[strategy][1] += spent.requests
            line += f"{spent.prompt_tokens:>12} ({spent.requests:>3})"
        for strategy in ("retrieval", "auto"):
            if gold is None:
                line += f"{'':>13}"
                continue
            covered, labelled = retrieval_recall(extractor, text, gold, plans[strategy])
            recall_totals[strategy][0] += covered
            recall_totals[strategy][1] += labelled
            line += f"{f'{covered}/{labelled}':>13}"
        print(line)
    n = len(documents)
    whole = totals["chunks"][0] or 1
    print(
        f"{'mean':<18}{total_chars // n:>8}"
        + "".join(f"{totals[s][0] // n:>12} ({totals[s][1] / n:>3.0f})" for s in strategies)
    )
    for strategy in ("retrieval", "auto"):
        covered, labelled = recall_totals[strategy]
        recall = f", recall of labelled clauses {covered / labelled:.1%}" if labelled else ""
        print(f"{strategy}: {totals[strategy][0] / whole:.2f} x the whole-contract prompt tokens{recall}")
    asyncio.run(extractor.aclose())
    return 0


if __name__ == "__main__":
    sys.exit(main())
