"""Fitting the verify strategy's calibrator (`clausework.llm.fusion`) on judged CUAD contracts.

A row per candidate the LLM judged or named: the evidence (embedded probability, presence, the LLM's
answer and P(yes)) and whether the candidate's span matches a gold clause of its category by the
scorer's rule (word Jaccard >= 0.5). `scripts.eval_llm` collects the rows from its verify runs,
scores every contract with a calibrator fitted on the other folds' contracts (`cross_fit`), and with
`--write-fusion` fits one on all of them: the shipped `clausework/llm/fusion.json`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from clausework.llm.fusion import Evidence, Fusion, fit
from clausework.llm.verify import Verdict, VerifyPlan
from training.data import Contract, jaccard, words


@dataclass(frozen=True)
class Judged:
    """One contract's verify run: its plan and the LLM's verdicts."""

    contract: Contract
    fold: int
    plan: VerifyPlan
    verdicts: dict[str, Verdict]


def matches(contract: Contract, category: str, text: str) -> bool:
    span = words(text)
    return any(jaccard(span, gold) >= 0.5 for gold in contract.gold_words.get(category, []))


def rows(judged: Judged) -> tuple[list[Evidence], list[bool]]:
    """The evidence and label of every candidate of the run the LLM judged or named."""
    plan, contract = judged.plan, judged.contract
    evidence: list[Evidence] = []
    labels: list[bool] = []
    for request in plan.requests:
        for name, proposals in request.proposals.items():
            verdict = judged.verdicts.get(name)
            if verdict is None:
                continue
            presence = plan.presence[name]
            proposed = {p.unit for p in proposals}
            for p in proposals:
                if p.key in verdict.yes:
                    evidence.append(
                        Evidence(p.probability, presence, True, verdict.yes[p.key], verdict.p_yes.get(p.key))
                    )
                    labels.append(matches(contract, name, plan.text[p.scored.start : p.scored.end]))
            embedded = dict(zip((s.start for s in plan.scored[name]), plan.probabilities[name], strict=True))
            for index in verdict.more:
                if index in proposed:
                    continue
                unit = plan.units[index]
                evidence.append(Evidence(embedded.get(unit.start, 0.0), presence, more=True))
                labels.append(matches(contract, name, plan.text[unit.start : unit.end]))
    return evidence, labels


def fit_on(runs: Sequence[Judged], fitted_on: str) -> Fusion:
    evidence: list[Evidence] = []
    labels: list[bool] = []
    for run in runs:
        e, y = rows(run)
        evidence.extend(e)
        labels.extend(y)
    if not evidence or all(labels) or not any(labels):
        return Fusion.identity()  # nothing to learn from: the embedded probability as it is
    return fit(evidence, labels, fitted_on=fitted_on)


def cross_fit(runs: Sequence[Judged], describe: Callable[[int], str]) -> dict[int, Fusion]:
    """For each fold of the runs, a calibrator fitted on the runs of the other folds only."""
    folds = sorted({r.fold for r in runs})
    return {f: fit_on([r for r in runs if r.fold != f], describe(f)) for f in folds}


def _auc(scores: list[float], labels: list[bool]) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not positives or not negatives:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def judge_report(runs: Sequence[Judged]) -> str:
    """How informative the LLM's verdicts were: its yes rate, and how well its P(yes) and the embedded
    probability rank the judged candidates that match a gold clause (AUC), and what `more` named."""
    judged: list[tuple[Evidence, bool]] = []
    named: list[bool] = []
    for run in runs:
        for evidence, label in zip(*rows(run), strict=True):
            if evidence.judged:
                judged.append((evidence, label))
            elif evidence.more:
                named.append(label)
    if not judged:
        return "no candidate judged"
    labels = [y for _, y in judged]
    p_yes = [e.p_yes if e.p_yes is not None else float(e.yes) for e, _ in judged]
    return (
        f"{len(judged)} candidates judged ({sum(labels)} match a gold clause), yes for"
        f" {sum(e.yes for e, _ in judged) / len(judged):.0%}, P(yes) from log-probabilities for"
        f" {sum(e.p_yes is not None for e, _ in judged)}; AUC of P(yes) {_auc(p_yes, labels):.2f}, of the"
        f" embedded probability {_auc([e.embedded for e, _ in judged], labels):.2f}; `more` named"
        f" {len(named)} other units, {sum(named)} of them a gold clause on their own"
    )
