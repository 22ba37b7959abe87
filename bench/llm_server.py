"""The openai backend against a real local OpenAI-compatible server (llama.cpp's llama-server, SmolLM2-135M):

1. wall time of an N-chunk contract vs its slowest single chunk, with the server's parallel slots (-np)
   and the extractor's max_concurrency both set to N;
2. prompt/completion tokens per contract, retrieval vs chunked prompting, on the same contracts.

Needs `make llm-server` (scripts/setup_llm_server.sh); skipped with a note without it.
"""

from __future__ import annotations

import asyncio
import os
import time

from bench.common import NO_CUAD, ROOT, Section, contract_pages, cuad_available, cuad_pdfs
from bench.llama import LlamaServer, cached_paths, missing

COMMAND = "python -m bench --only llm_server"
CHUNKS = 4
CHUNK_CHARS = 2500
MAX_OUTPUT_TOKENS = 160
PRODUCTION_CHUNK_CHARS = 6000
PLANNED_CONTRACTS = 20
# A few categories per request keep the tiny model's prompts short; the same set for every strategy.
CATEGORIES = (
    "Parties",
    "Agreement Date",
    "Governing Law",
    "Anti-Assignment",
    "Audit Rights",
    "Termination For Convenience",
)


def _extractor(base_url: str, concurrency: int, strategy: str, chunk_chars: int = CHUNK_CHARS) -> object:
    from clausework.llm.extractor import OpenAIExtractor
    from clausework.llm.prompts import load_categories

    categories = [c for c in load_categories() if c.name in CATEGORIES]
    return OpenAIExtractor(
        base_url=base_url,
        api_key="none",
        model="smollm2",
        max_concurrency=concurrency,
        chunk_chars=chunk_chars,
        overlap_chars=200,
        strategy=strategy,  # type: ignore[arg-type]
        categories=categories,
        max_output_tokens=MAX_OUTPUT_TOKENS,
        timeout_seconds=600,
    )


def _planned_chunks(text: str) -> int:
    """How many chunk requests extract() makes of `text` (planning calls no server)."""
    from clausework.llm.extractor import OpenAIExtractor

    planner = _extractor("http://127.0.0.1:9/v1", 1, "chunks")
    assert isinstance(planner, OpenAIExtractor)
    return len(planner.plan(text))


async def _fan_out(base_url: str, text: str, slots: int) -> tuple[float, list[float], int]:
    """(wall time of the whole text, time of each chunk alone, planned chunks)."""
    from clausework.llm.extractor import OpenAIExtractor

    whole = _extractor(base_url, slots, "chunks")
    alone = _extractor(base_url, 1, "chunks")
    assert isinstance(whole, OpenAIExtractor) and isinstance(alone, OpenAIExtractor)
    try:
        plan = whole.plan(text)
        await alone.extract(text[: CHUNK_CHARS // 2])  # warm-up
        singles = []
        for request in plan:
            piece = request.pieces[0]
            began = time.perf_counter()
            await alone.extract(text[piece.start : piece.end])
            singles.append(time.perf_counter() - began)
        began = time.perf_counter()
        await whole.extract(text)
        wall = time.perf_counter() - began
    finally:
        await whole.aclose()
        await alone.aclose()
    return wall, singles, len(plan)


async def _tokens(base_url: str, texts: list[str]) -> dict[str, tuple[int, int, int]]:
    """Per strategy: (prompt tokens, completion tokens, requests), summed over `texts`, by real extractions."""
    from clausework.llm.extractor import OpenAIExtractor

    totals: dict[str, tuple[int, int, int]] = {}
    for strategy in ("chunks", "retrieval"):
        extractor = _extractor(base_url, CHUNKS, strategy, chunk_chars=PRODUCTION_CHUNK_CHARS)
        assert isinstance(extractor, OpenAIExtractor)
        prompt = completion = requests = 0
        try:
            for text in texts:
                result = await extractor.extract(text)
                prompt += result.prompt_tokens
                completion += result.completion_tokens
                requests += result.requests
        finally:
            await extractor.aclose()
        totals[strategy] = (prompt, completion, requests)
    return totals


def _planned_prompt_tokens(base_url: str, texts: list[str]) -> dict[str, tuple[float, float]]:
    """Per strategy, with the production settings (all 41 categories, 6,000-char chunks): mean prompt tokens
    and requests per contract, planned exactly as extract() would send them, counted by the server's
    /tokenize (no generation)."""
    from bench.tokens_report import cost, llama_server_counter
    from clausework.llm.extractor import OpenAIExtractor

    extractor = OpenAIExtractor(base_url=base_url, api_key="none", model="smollm2")
    count = llama_server_counter(base_url.removesuffix("/v1"))
    out = {}
    for strategy in ("chunks", "retrieval"):
        costs = [cost(extractor, text, strategy, count) for text in texts]
        out[strategy] = (
            sum(c.prompt_tokens for c in costs) / len(costs),
            sum(c.requests for c in costs) / len(costs),
        )
    return out


def run(quick: bool) -> Section:
    section = Section("LLM path against llama-server (SmolLM2-135M)", COMMAND)
    paths = cached_paths()
    if missing(paths, ("LLAMA_SERVER_BIN", "SMOLLM2_GGUF")):
        section.skipped = "llama-server or SmolLM2 not set up: run `make llm-server`"
        return section
    from clausework.pdf import parse_pdf

    if cuad_available() and not quick:
        pdfs = cuad_pdfs()
        planned_texts = [parse_pdf(p.read_bytes()).text for p in pdfs[:PLANNED_CONTRACTS]]
        fan_text = planned_texts[0][: CHUNKS * (CHUNK_CHARS - 300)]
        source = f"CUAD {pdfs[0].name}, first {len(fan_text):,} chars"
        # Real extractions cost minutes a contract on 2 cores: the two shortest of those contracts.
        texts = sorted(planned_texts, key=len)[:2]
        sizes = ", ".join(f"{len(x):,}" for x in texts)
        token_source = f"the 2 shortest of the first {PLANNED_CONTRACTS} CUAD contracts ({sizes} chars)"
    else:
        fan_text = "\n\n".join(contract_pages(4, 2200))
        texts = ["\n\n".join(contract_pages(6, 2400))]
        planned_texts = texts
        source = "a generated contract text"
        token_source = "one generated 6-page contract text"
        if not quick:
            section.notes.append(NO_CUAD + "; generated texts were used")
    log = ROOT / ".run" / "bench" / "logs" / "llama-server.log"
    # As many parallel slots (and extractor concurrency) as the contract has chunks.
    slots = _planned_chunks(fan_text)
    threads = int(os.environ.get("BENCH_LLAMA_THREADS", str(os.cpu_count() or 1)))
    server = LlamaServer(paths["LLAMA_SERVER_BIN"], paths["SMOLLM2_GGUF"], log, parallel=slots, threads=threads)
    server.start()
    try:
        wall, singles, chunks = asyncio.run(_fan_out(server.base_url, fan_text, slots))
        ratio = wall / max(singles)
        section.add(f"{chunks}-chunk contract, concurrently", wall, "s")
        section.add("slowest single chunk alone", max(singles), "s")
        section.add("whole / slowest chunk", ratio, "x", "≤ 1.5x", ratio <= 1.5)
        section.add("sum of the chunks alone (sequential)", sum(singles), "s")
        planned = {} if quick else _planned_prompt_tokens(server.base_url, planned_texts)
        totals = {} if quick else asyncio.run(_tokens(server.base_url, texts))
    finally:
        server.stop()
    section.load = (
        f"fan-out: {source} cut into {chunks} chunks of ≤ {CHUNK_CHARS} chars, llama-server -np {slots} "
        f"-t {server.threads}, extractor max_concurrency {slots}, {len(CATEGORIES)} categories, "
        f"max_tokens {MAX_OUTPUT_TOKENS}; tokens by real extractions: {token_source}, same 6 categories, "
        f"chunks of {PRODUCTION_CHUNK_CHARS:,} chars vs retrieval; planned prompt tokens: {len(planned_texts)} "
        "contracts, production settings (41 categories), counted by the server's /tokenize"
    )
    for strategy, (tokens, requests) in planned.items():
        section.add(f"planned {strategy}: prompt tokens per contract (41 categories)", tokens, "tokens")
        section.add(f"planned {strategy}: requests per contract", requests, "")
    if planned:
        saving = 1 - planned["retrieval"][0] / planned["chunks"][0]
        section.add("retrieval saves (planned prompt tokens)", saving * 100, "%")
    for strategy, (prompt, completion, requests) in totals.items():
        n = len(texts)
        section.add(f"{strategy}: prompt tokens per contract", prompt / n, "tokens")
        section.add(f"{strategy}: completion tokens per contract", completion / n, "tokens")
        section.add(f"{strategy}: requests per contract", requests / n, "")
    section.notes.append(
        "llama-server batches the N slots' sequences into one forward pass per step (continuous batching), so N "
        "chunks decode together at little more than one chunk's cost — as long as the cores are not taken by "
        "other work; on 2 shared cores the prompt processing of N chunks still competes for the same CPU."
    )
    return section
