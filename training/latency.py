"""Time the embedded model on real contracts: load once, then extract, as the llm service does.

    python -m training.latency [--pages 30] [--runs 5] [--model-dir DIR ...]

Picks the CUAD contracts with the requested page count (the longest text among them, i.e. the
worst case), parses them with the production parser (parsing is not timed: it happens in the parser
service) and reports load time and the median extract() time per contract. With several
`--model-dir` artefacts (e.g. an earlier model's, from `git show REV:clausework/model/cuad-sparse-lr/...`)
each run times them in turn on the same text, so they are compared side by side on one machine state.
For a model with dense scores it also reports how many units the encoder embedded and its throughput
on them (tokens per second, after its cut to MAX_TOKENS), timed alone on the same units.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from clausework.model.encoder import default_encoder
from training.data import DEFAULT_CUAD

if TYPE_CHECKING:
    from clausework.model.embedded import EmbeddedExtractor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuad-dir", type=Path, default=DEFAULT_CUAD)
    parser.add_argument("--pages", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--contracts", type=int, default=3)
    parser.add_argument(
        "--model-dir", type=Path, action="append", default=[], help="an artefact to time (default: the shipped one)"
    )
    args = parser.parse_args(argv)

    from clausework.pdf import parse_pdf

    records = [json.loads(x) for x in (args.cuad_dir / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = []
    for record in records:
        parsed = parse_pdf((args.cuad_dir / record["pdf"]).read_bytes())
        if len(parsed.pages) == args.pages:
            texts.append((len(parsed.text), record["id"], parsed.text))
    texts.sort(reverse=True)

    started = time.perf_counter()
    from clausework.model.embedded import EmbeddedExtractor

    extractors = [EmbeddedExtractor.load(d) for d in args.model_dir] or [EmbeddedExtractor.load()]
    print(f"import + load: {time.perf_counter() - started:.2f} s ({', '.join(e.model_name for e in extractors)})")
    for chars, contract_id, text in texts[: args.contracts]:
        timings: list[list[float]] = [[] for _ in extractors]
        clauses = [0] * len(extractors)
        for _ in range(args.runs):
            for i, extractor in enumerate(extractors):
                started = time.perf_counter()
                clauses[i] = len(extractor.extract(text))
                timings[i].append(time.perf_counter() - started)
        for extractor, times, count in zip(extractors, timings, clauses, strict=True):
            print(
                f"{contract_id}: {args.pages} pages, {chars} chars, {count} clauses ({extractor.model_name}): "
                f"median {statistics.median(times):.3f} s, max {max(times):.3f} s over {args.runs} runs"
            )
            if extractor.encoder is not None:
                print("  " + encoder_report(extractor, text, args.runs))
    return 0


def encoder_report(extractor: EmbeddedExtractor, text: str, runs: int) -> str:
    """The dense units of `text` and the encoder's median time and throughput on them."""
    assert extractor.encoder is not None
    evidence = extractor.evidence(text)
    pieces = [text[evidence.unit_bounds[i][0] : evidence.unit_bounds[i][1]] for i in sorted(evidence.embeddings)]
    encoder = default_encoder()
    tokens = sum(len(ids) for ids in encoder.token_ids(pieces))
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        encoder.encode(pieces)
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return f"encoder: {len(pieces)} units, {tokens} tokens: median {median:.3f} s ({tokens / median:.0f} tokens/s)"


if __name__ == "__main__":
    raise SystemExit(main())
