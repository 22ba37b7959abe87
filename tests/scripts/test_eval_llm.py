"""eval_llm's journal: a stopped or failed run resumes where it was, without asking the LLM again."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

import pytest

pytest.importorskip("sklearn")  # scripts.eval_llm imports the training code (the `train` extra)

from clausework.clauses import ClauseSpan
from clausework.llm.client import OpenAIBackendError
from clausework.llm.extractor import OpenAIExtractor, OpenAIResult
from scripts.eval_llm import Journal, each_fold
from training.data import Contract
from training.heldout import FoldModels


def contract(n: int) -> Contract:
    return Contract(id=f"c{n}", source_name=f"c{n}", text=f"text {n}", gold={}, answers={})


class Folds:
    """What each_fold needs of FoldModels: the fold of each contract."""

    def fold_of(self, contract_id: str) -> int:
        return int(contract_id[1:]) % 2


class Extractor:
    """Counts calls; fails for the texts in `failing`."""

    def __init__(self, calls: list[str], failing: set[str]) -> None:
        self.calls, self.failing = calls, failing

    async def extract(self, text: str) -> OpenAIResult:
        self.calls.append(text)
        if text in self.failing:
            raise OpenAIBackendError("LLM request timed out", retryable=True)
        return OpenAIResult([ClauseSpan("Parties", 0, 4, 0.5, "")], 10, 2, 0, requests=1)

    async def aclose(self) -> None:
        pass


async def run(tmp: Path, resume: bool, failing: set[str]) -> tuple[list[str], dict[str, int], list[int]]:
    args = argparse.Namespace(resume=resume, concurrency=4, streams_per_fold=2)
    calls: list[str] = []
    recorded: dict[str, int] = {}
    shares: list[int] = []

    def extractor_of(fold: int, in_flight: int) -> OpenAIExtractor:
        shares.append(in_flight)
        return cast(OpenAIExtractor, Extractor(calls, failing))

    def record(fold: int, c: Contract, result: OpenAIResult, seconds: float) -> None:
        recorded[c.id] = result.prompt_tokens

    contracts = [contract(n) for n in range(6)]
    await each_fold(args, cast(FoldModels, Folds()), contracts, extractor_of, record, Journal(tmp / "run-done"))
    return calls, recorded, shares


async def test_a_failed_contract_stops_the_run_and_resume_asks_only_for_it(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"1 contracts failed \(c3\).*--resume"):
        await run(tmp_path, resume=False, failing={"text 3"})
    calls, recorded, shares = await run(tmp_path, resume=True, failing=set())
    assert calls == ["text 3"]  # the five that finished are replayed from the journal
    assert recorded == {f"c{n}": 10 for n in range(6)}
    assert shares == [1, 1, 1, 1]  # 4 streams share the 4 slots: no request waits in the server's queue


async def test_without_resume_the_journal_is_cleared(tmp_path: Path) -> None:
    await run(tmp_path, resume=False, failing=set())
    calls, recorded, _ = await run(tmp_path, resume=False, failing=set())
    assert len(calls) == 6 and len(recorded) == 6


def test_journal_keeps_what_it_saved(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    assert journal.start(resume=True) == {}
    result = OpenAIResult([], 1, 2, 3)
    journal.save("c1", result, 4.5)
    assert journal.start(resume=True) == {"c1": (result, 4.5)}
    assert list((tmp_path / "j").iterdir()) == [tmp_path / "j" / "c1.pkl"]  # no partial file left
    assert journal.start(resume=False) == {}
