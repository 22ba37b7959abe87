"""Quality, tokens and wall time of the OpenAI-compatible backend on CUAD contracts, beside the embedded model.

    python -m scripts.eval_llm [--folds 0,1 --per-fold 10] [--runs verify,oracle,chunks,retrieval]
    python -m scripts.eval_llm --base-url http://HOST/v1 --model M [...]

Contracts: from each listed cross-validation fold, the --per-fold shortest of at least --min-chars
characters. Every contract is handled by its fold's embedded model (`training.heldout`), which never
saw it: its own extractions (the `embedded` row), the candidates that `verify` shows the LLM, and
retrieval's passage selector. Runs (`OpenAIExtractor`, the llm service's code path, in-process):
- `verify`: the LLM judges the embedded candidates. Its fusion calibrator is fitted, for the
  contracts of each fold, on the verify runs of the other folds only (`training.fusion.cross_fit`);
  the same verdicts are also decoded without extension and with the identity calibrator (which must
  reproduce the embedded row). The verdicts are saved (`verify-traces.pkl`): `--from-traces` decodes
  them again without calling the LLM;
- `oracle`: verify whose "LLM" answers from the gold labels, through the same HTTP client, reply
  parser and fusion (an httpx mock transport stands in for the server): the ceiling of the design,
  not a result;
- `chunks` (the whole contract in chunks) and `retrieval` (passages chosen by the embedded model).
Each is scored with ../shared/eval/score_cuad.py on exactly those contracts. Prints one markdown
table and writes out/eval-llm/ (`--write-fusion PATH`: the calibrator fitted on all verify runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import httpx2

from bench.llama import LlamaServer, cached_paths, missing
from bench.tokens_report import MESSAGE_OVERHEAD, cost, llama_server_counter
from clausework.clauses import ClauseSpan
from clausework.llm import verify
from clausework.llm.client import OpenAIBackendError
from clausework.llm.extractor import OpenAIExtractor, OpenAIResult, Strategy
from clausework.llm.fusion import Fusion
from clausework.llm.planner import QuoteStrategy
from clausework.llm.prompts import load_categories
from clausework.model.embedded import EmbeddedSelector
from services.llm.settings import LlmSettings
from training.crossval import prediction_line, run_scorer
from training.data import DEFAULT_CUAD, DEFAULT_SCORER, Contract, load_corpus, words
from training.fusion import Judged, cross_fit, fit_on, judge_report
from training.heldout import FoldModels

ROOT = Path(__file__).resolve().parent.parent
# A shown unit is judged part of a gold clause when this share of its words are in the clause.
ORACLE_CONTAINMENT = 0.8


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


@dataclass
class Usage:
    prompt: int = 0
    completion: int = 0
    requests: int = 0
    seconds: float = 0.0
    dropped: int = 0

    def add(self, result: OpenAIResult, seconds: float) -> None:
        self.prompt += result.prompt_tokens
        self.completion += result.completion_tokens
        self.requests += result.requests
        self.seconds += seconds
        self.dropped += result.dropped_quotes


@dataclass
class Table:
    contracts: list[Contract]
    out: Path
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lines = [
            "| run | detection F1 | span P | span R | span F1 | AUPR | prompt / completion tokens per contract"
            " | requests | wall s per contract |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]

    def score(self, name: str, slug: str, spans: dict[str, list[ClauseSpan]], usage: Usage | None = None) -> None:
        path = self.out / f"{slug}.jsonl"
        write_jsonl(path, [prediction_line(c.id, c.text, spans[c.id]) for c in self.contracts])
        scores = run_scorer(DEFAULT_SCORER, self.out / "labels.jsonl", path)
        detection, s = scores["detection"], scores["spans"]
        n = len(self.contracts)
        cost = (
            f"{usage.prompt // n:,} / {usage.completion // n:,} | {usage.requests / n:.1f} | {usage.seconds / n:.1f}"
            if usage
            else "0 | 0 | -"
        )
        self.lines.append(
            f"| {name} | {detection['f1']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f}"
            f" | {s['aupr']:.3f} | {cost} |"
        )
        print(self.lines[-1], file=sys.stderr, flush=True)


def choose(args: argparse.Namespace, folds: FoldModels) -> list[Contract]:
    wanted = [int(f) for f in args.folds.split(",")]
    corpus = [c for c in load_corpus(DEFAULT_CUAD) if len(c.text) >= args.min_chars]
    contracts: list[Contract] = []
    for fold in wanted:
        contracts.extend(
            sorted((c for c in corpus if folds.fold_of(c.id) == fold), key=lambda c: len(c.text))[: args.per_fold]
        )
    return contracts


class Oracle:
    """An OpenAI-compatible server in-process that answers verify prompts from the gold labels.

    It knows which contract a prompt is from by the units it shows (the texts are distinct).
    """

    def __init__(self, contracts: list[Contract]) -> None:
        self.contracts = contracts
        self.flat = {c.id: " ".join(c.text.split()) for c in contracts}  # as the prompt shows units

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        prompt = str(body["messages"][-1]["content"])
        found = re.findall(r"^\[U(\d+)\] (?:\(section: [^)]*\) )?(.*)$", prompt, re.MULTILINE)
        shown = {number: words(text) for number, text in found}
        contract = max(
            self.contracts, key=lambda c: sum(t.removesuffix(" ...") in c.text.replace("\xa0", " ") for _, t in found)
        )
        schema = body["response_format"]["json_schema"]["schema"]["properties"]
        reply: dict[str, dict[str, object]] = {}
        for name, entry in schema.items():
            gold = contract.gold_words.get(name, [])

            def inside(unit: set[str], gold: list[set[str]] = gold) -> bool:
                return bool(unit) and any(len(unit & g) >= ORACLE_CONTAINMENT * len(unit) for g in gold)

            keys = [k for k, v in entry["properties"].items() if v == {"type": "boolean"}]
            answer: dict[str, object] = {k: inside(shown.get(k[1:], set())) for k in keys}
            proposed = {k[1:] for k in keys}
            answer[verify.MORE] = [int(i) for i, u in shown.items() if i not in proposed and inside(u)][
                : verify.MAX_MORE
            ]
            if verify.ANSWER in entry["properties"]:
                answer[verify.ANSWER] = ""
            reply[name] = answer
        completion = {
            "id": "oracle",
            "object": "chat.completion",
            "created": 0,
            "model": "oracle",
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": json.dumps(reply)}}
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
        return httpx2.Response(200, json=completion)


def by_fold(folds: FoldModels, contracts: list[Contract]) -> dict[int, list[Contract]]:
    out: dict[int, list[Contract]] = {}
    for contract in contracts:
        out.setdefault(folds.fold_of(contract.id), []).append(contract)
    return out


def extractor_for(args: argparse.Namespace, strategy: str, in_flight: int = 0, **options: Any) -> OpenAIExtractor:
    """`in_flight`: this extractor's share of --concurrency (default all of it), so that all streams
    together send no more requests at once than the server has slots: a queued request's wait would
    count against its timeout."""
    options.setdefault("max_output_tokens", args.max_output_tokens)
    return OpenAIExtractor(
        base_url=args.base_url,
        api_key=os.environ.get("OPENAI_API_KEY", ""),
        model=args.model,
        timeout_seconds=args.timeout,
        max_concurrency=in_flight or args.concurrency,
        strategy=cast(Strategy, strategy),
        categories=load_categories(),
        **options,
    )


@dataclass
class Journal:
    """A run's finished contracts, one pickle each (our own files), so that a stopped or failed run
    goes on where it was with --resume instead of asking the LLM again."""

    directory: Path

    def start(self, resume: bool) -> dict[str, tuple[OpenAIResult, float]]:
        if not resume:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        done = {}
        for path in sorted(self.directory.glob("*.pkl")):
            done[path.stem] = pickle.loads(path.read_bytes())
        return done

    def save(self, contract_id: str, result: OpenAIResult, seconds: float) -> None:
        partial = self.directory / f".{contract_id}.tmp"
        partial.write_bytes(pickle.dumps((result, seconds)))
        partial.replace(self.directory / f"{contract_id}.pkl")  # whole or not at all


async def each_fold(
    args: argparse.Namespace,
    folds: FoldModels,
    contracts: list[Contract],
    extractor_of: Callable[[int, int], OpenAIExtractor],
    record: Callable[[int, Contract, OpenAIResult, float], None],
    journal: Journal,
) -> None:
    """Streams of contracts concurrently (an extractor each, built with its fold's model and its share
    of the server's slots), a stream's contracts in turn. Contracts the journal holds are replayed; a
    contract whose extraction fails is reported and the others go on; the run then stops with the
    failed ones named, to be retried with --resume."""
    done = journal.start(args.resume)
    failed: list[str] = []
    groups = [
        (fold, members[offset :: args.streams_per_fold])
        for fold, members in by_fold(folds, contracts).items()
        for offset in range(args.streams_per_fold)
    ]
    groups = [(fold, members) for fold, members in groups if members]
    in_flight = max(1, args.concurrency // len(groups))

    async def stream(fold: int, members: list[Contract]) -> None:
        extractor = extractor_of(fold, in_flight)
        try:
            for contract in members:
                if contract.id in done:
                    record(fold, contract, *done[contract.id])
                    continue
                started = time.monotonic()
                try:
                    result = await extractor.extract(contract.text)
                except OpenAIBackendError as error:
                    failed.append(contract.id)
                    print(f"{contract.id} failed: {error}", file=sys.stderr, flush=True)
                    continue
                seconds = time.monotonic() - started
                journal.save(contract.id, result, seconds)
                record(fold, contract, result, seconds)
        finally:
            await extractor.aclose()

    await asyncio.gather(*(stream(fold, members) for fold, members in groups))
    if failed:
        raise SystemExit(f"{len(failed)} contracts failed ({', '.join(failed)}): run again with --resume")


async def replanned(judged: list[Judged], extractor_of: Callable[[int, int], OpenAIExtractor]) -> list[Judged]:
    """Saved verdicts against plans made again by the current fold models (their extent model and any
    other decision change included), allowed only where every prompt is the one the LLM answered."""
    extractors: dict[int, OpenAIExtractor] = {}
    out = []
    try:
        for item in judged:
            extractor = extractors.setdefault(item.fold, extractor_of(item.fold, 1))
            planner = extractor.verifier
            assert planner is not None
            fresh = planner.plan(item.contract.text)
            asked = [planner.messages(item.plan, request) for request in item.plan.requests]
            if [planner.messages(fresh, request) for request in fresh.requests] != asked:
                raise SystemExit(f"{item.contract.id}: its fold model asks other questions now: no --from-traces")
            out.append(replace(item, plan=fresh))
    finally:
        for extractor in extractors.values():
            await extractor.aclose()
    return out


async def verify_run(
    args: argparse.Namespace, folds: FoldModels, table: Table, name: str, oracle: Oracle | None
) -> list[Judged]:
    judged: list[Judged] = []
    usage = Usage()

    def extractor_of(fold: int, in_flight: int) -> OpenAIExtractor:
        options: dict[str, Any] = {
            "verifier": folds.model(fold),
            "fusion": Fusion.identity(),  # the verdicts are fused afterwards, cross-fitted
            "max_output_tokens": args.verify_max_output_tokens,
        }
        if oracle is not None:
            options["http_client"] = httpx2.AsyncClient(transport=oracle.transport())
        return extractor_for(args, "verify", in_flight, **options)

    def record(fold: int, contract: Contract, result: OpenAIResult, seconds: float) -> None:
        usage.add(result, seconds)
        assert result.trace is not None
        plan, verdicts = result.trace
        judged.append(Judged(contract, fold, plan, verdicts))
        print(
            f"{name} {contract.id}: {len(verdicts)} categories judged, {result.prompt_tokens} prompt tokens,"
            f" {result.completion_tokens} completion, {result.failed_requests} failed, {seconds:.0f}s",
            file=sys.stderr,
            flush=True,
        )

    traces = table.out / f"{name}-traces.pkl"
    if args.from_traces:
        saved = pickle.loads(traces.read_bytes())  # our own file, written below
        judged, usage = await replanned(saved["judged"], extractor_of), saved["usage"]
        print(f"{name}: verdicts and usage read from {traces}, no LLM called", file=sys.stderr)
    else:
        await each_fold(args, folds, table.contracts, extractor_of, record, Journal(table.out / f"{name}-done"))
        traces.write_bytes(pickle.dumps({"judged": judged, "usage": usage}))
    print(f"{name} judge: {judge_report(judged)}", file=sys.stderr)
    categories = load_categories()
    fitted = cross_fit(judged, lambda f: f"{name} runs of folds other than {f}")
    variants = {
        f"`{name}` (fusion fitted on the other fold)": ("", fitted, True),
        f"`{name}`, no extension": ("-no-extension", fitted, False),
        f"`{name}`, identity calibrator (the LLM's verdicts carry no weight)": ("-identity", None, True),
    }
    by_id = {j.contract.id: j for j in judged}
    for label, (suffix, fusions, extend) in variants.items():
        spans = {
            c.id: verify.decide(
                folds.model_for(c.id),
                by_id[c.id].plan,
                by_id[c.id].verdicts,
                fusions[by_id[c.id].fold] if fusions else Fusion.identity(),
                extend=extend,
                categories=categories,
            )
            for c in table.contracts
        }
        table.score(f"{args.model if oracle is None else 'oracle judge'} {label}", f"{name}{suffix}", spans, usage)
    for fold, fusion in fitted.items():
        print(f"{name} fusion for fold {fold}: {[round(w, 3) for w in fusion.weights]}", file=sys.stderr)
    return judged


async def quote_run(args: argparse.Namespace, folds: FoldModels, table: Table, run_name: str) -> None:
    strategy, _, selector = run_name.partition(":")
    if selector not in ("", "embedded", "keyword"):
        raise SystemExit(f"unknown selector {selector!r} in {run_name!r}")
    spans: dict[str, list[ClauseSpan]] = {}
    usage = Usage()

    def extractor_of(fold: int, in_flight: int) -> OpenAIExtractor:
        extractor = extractor_for(args, strategy, in_flight)
        if selector != "keyword":
            extractor.planner.selector = EmbeddedSelector(folds.model(fold), args.min_presence)
        return extractor

    def record(fold: int, contract: Contract, result: OpenAIResult, seconds: float) -> None:
        usage.add(result, seconds)
        spans[contract.id] = result.spans
        print(
            f"{run_name} {contract.id}: {len(result.spans)} spans, {result.prompt_tokens} prompt tokens,"
            f" {result.dropped_quotes} quotes dropped, {seconds:.0f}s",
            file=sys.stderr,
            flush=True,
        )

    slug = f"openai-{run_name.replace(':', '-')}"
    await each_fold(args, folds, table.contracts, extractor_of, record, Journal(table.out / f"{slug}-done"))
    label = f"{args.model} `{run_name}` ({usage.dropped} quotes dropped)"
    table.score(label, slug, spans, usage)


def planned_tokens(args: argparse.Namespace, folds: FoldModels, contracts: list[Contract]) -> str:
    """First-attempt prompt tokens per contract of each strategy's plan, counted by the server's own
    tokenizer (bench.tokens_report's counter): the cost comparison without running the LLM."""
    count = llama_server_counter(args.base_url.removesuffix("/v1"))
    lines = [
        "| strategy (planned, not run) | prompt tokens per contract | requests per contract |",
        "| --- | --- | --- |",
    ]
    for name in ("verify", "chunks", "retrieval"):
        tokens = requests = 0
        for contract in contracts:
            model = folds.model_for(contract.id)
            if name == "verify":
                extractor = extractor_for(args, "verify", verifier=model)
                assert extractor.verifier is not None
                plan = extractor.verifier.plan(contract.text)
                messages = [m for r in plan.requests for m in extractor.verifier.messages(plan, r)]
                requests += len(plan.requests)
                tokens += sum(count(str(m.get("content") or "")) + MESSAGE_OVERHEAD for m in messages)
            else:
                extractor = extractor_for(args, name)
                extractor.planner.selector = EmbeddedSelector(model, args.min_presence)
                spent = cost(extractor, contract.text, cast(QuoteStrategy, name), count)
                requests += spent.requests
                tokens += spent.prompt_tokens
        n = len(contracts)
        lines.append(f"| {name} | {tokens // n:,} | {requests / n:.1f} |")
    return "\n".join(lines)


async def run(args: argparse.Namespace, folds: FoldModels, table: Table) -> None:
    if args.plan_only:
        text = planned_tokens(args, folds, table.contracts) + "\n"
        (table.out / "planned.md").write_text(text, encoding="utf-8")
        print(text)
        return
    for run_name in args.runs.split(","):
        if run_name in ("verify", "oracle"):
            oracle = Oracle(table.contracts) if run_name == "oracle" else None
            judged = await verify_run(args, folds, table, run_name, oracle)
            if run_name == "verify" and args.write_fusion:
                fusion = fit_on(judged, f"{args.model}, verify runs of {len(judged)} CUAD contracts (scripts.eval_llm)")
                fusion.dump(args.write_fusion, contracts=[j.contract.id for j in judged])
                print(f"wrote {args.write_fusion}", file=sys.stderr)
        else:
            await quote_run(args, folds, table, run_name)
    text = "\n".join(table.lines) + "\n"
    await asyncio.to_thread((table.out / "table.md").write_text, text, encoding="utf-8")
    print(text)


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
    parser.add_argument("--folds", default="0,1", help="cross-validation folds to take contracts from")
    parser.add_argument("--per-fold", type=int, default=10)
    parser.add_argument("--min-chars", type=int, default=12_000, help="skip the cover-page-only stubs")
    parser.add_argument(
        "--runs",
        default="verify,oracle,retrieval,chunks",
        help="comma-separated: verify, oracle, or STRATEGY[:SELECTOR] (chunks, retrieval, auto; selector"
        " embedded, the service's default, or keyword)",
    )
    parser.add_argument(
        "--min-presence",
        type=float,
        default=LlmSettings.model_fields["openai_min_presence"].default,
        help="the embedded retrieval selector's presence floor (default: the llm service's)",
    )
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--max-output-tokens", type=int, default=1024, help="per request of the quoting runs")
    parser.add_argument(
        "--verify-max-output-tokens", type=int, default=2048, help="per verify request (a boolean per candidate)"
    )
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--write-fusion", type=Path, help="write the calibrator fitted on all verify runs here")
    parser.add_argument("--streams-per-fold", type=int, default=1, help="contracts of one fold extracted at once")
    parser.add_argument(
        "--from-traces", action="store_true", help="verify/oracle: decode the verdicts saved by an earlier run"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the contracts an earlier run with the same --out finished (out/.../RUN-done/) and do the rest",
    )
    parser.add_argument(
        "--plan-only", action="store_true", help="count each strategy's planned prompt tokens; call no LLM"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "eval-llm")
    args = parser.parse_args()
    folds = FoldModels()
    contracts = choose(args, folds)
    args.out.mkdir(parents=True, exist_ok=True)
    ids = {c.id for c in contracts}
    records = [json.loads(line) for line in (DEFAULT_CUAD / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    write_jsonl(args.out / "labels.jsonl", [r for r in records if r["id"] in ids])
    print(f"{len(contracts)} contracts, {sum(len(c.text) for c in contracts):,} characters in all", file=sys.stderr)
    table = Table(contracts, args.out)
    table.score("embedded (fold model)", "embedded", {c.id: folds.model_for(c.id).extract(c.text) for c in contracts})
    if args.base_url:
        args.model = args.model or "default"
        asyncio.run(run(args, folds, table))
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
        asyncio.run(run(args, folds, table))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # temporalio-free, but the LLM client threads can hold the interpreter at exit
