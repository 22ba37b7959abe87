"""The verify strategy: the embedded model proposes, the LLM judges, a calibrator fuses.

Why: asked to quote, an LLM's spans are as long as its quote and its confidence is a coarse verbal
number, while CUAD labels are whole sentences and the embedded model already has most of them among
its top candidates. So the LLM is shown, per clause-like category, the model's best candidates as
numbered segmentation units (with their section heading) and answers true/false for each — one
boolean per candidate, forced by a schema built for the request — plus `more`: other shown units that
belong to the category (one the model missed, or the continuation of an accepted one). Spans are
always whole units or runs of units, so grounding cannot lose them.

Fusion (`fusion`): a judged candidate's confidence combines the embedded probability with the LLM's
P(true) — from the boolean token's log-probabilities where the server returns them, else the verbal
answer. The embedded model's own decision is the floor: what it keeps stays, at the fused confidence
(a rejected candidate sinks in the ranking but is not dropped); what the LLM adds, or names as a
clause's continuation, is taken only when its evidence raises the calibrated probability (above what
the calibrator gives the embedded evidence alone) and, for an addition, clears the category's
threshold. A calibrator that finds the LLM's answers uninformative therefore adds and extends
nothing, and leaves the embedded result as it was, re-ranked at most.

Categories with span pools (Parties, the dates, Document Name) are not asked: their candidates are
names and dates, not clauses, and the embedded rankers decide them.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from openai.types.chat import ChatCompletionMessageParam
from openai.types.chat.chat_completion import ChoiceLogprobs

from clausework.clauses import ClauseSpan
from clausework.llm.fusion import Evidence, Fusion
from clausework.llm.grounding import normalize_answer
from clausework.llm.planner import display_text
from clausework.llm.prompts import Category, InvalidReply, load_json
from clausework.model.embedded import POOLS, EmbeddedExtractor, Scored, keep_spans
from clausework.model.embedded import Evidence as ModelEvidence
from clausework.model.segmentation import Unit, headings, segment

VERIFY_VERSION = "verify-v1"
SCHEMA_NAME = "cuad_verdicts"
# Candidates judged per category, best calibrated probability first.
PER_CATEGORY = 3
# Categories the embedded model judges less likely present than this are not asked. 0.02 with model
# 1.0.0's presence; its stacked presence (2.0.0) runs higher on absent categories, and at 0.02 verify
# planned 3,065 prompt tokens per contract on make eval-llm's 20 contracts (0.301x the whole
# contract's), at 0.03 2,863 (0.281x): docs/llm-backends.md.
MIN_PRESENCE = 0.03
# A proposed unit is cut to this many words (the judgement needs the clause's opening, not all of it),
# a unit shown only as the possible continuation of one to fewer. With 80 and 80 words verify's prompt
# was 0.31x the whole contract's on the 20 contracts of `make eval-llm`; with 60 and 20, 0.29x.
MAX_UNIT_WORDS = 60
CONTEXT_UNIT_WORDS = 20
MORE = "more"
# Units a category's "more" may name (llama.cpp's grammar enforces it; a small model otherwise loops).
MAX_MORE = 3
ANSWER = "answer"

SYSTEM_PROMPT = """\
You are a meticulous contract analyst checking clause labels of the CUAD categories.
You receive numbered units (sentences) of ONE contract, and for each category the units a model \
proposes for it. For every proposed unit answer true if the unit is (part of) a clause of that \
category as defined, else false: judge what the unit says, not the words it shares with the \
definition. In "more", list the numbers of other shown units that are also (part of) a clause of the \
category, such as the sentence that continues a clause you accepted; usually there are none. Where a \
category asks for an answer, give the value read from the units you accepted (a date as m/d/yyyy, a \
state or country, a term like "successive 1 year", a period like "90 days"), else "". \
Reply with JSON only, matching the schema."""

REPAIR_PROMPT = """\
Your previous reply was rejected: {error}
Reply again with JSON only: one object per category name, true or false for each proposed unit, matching \
the schema."""


@dataclass(frozen=True)
class Proposal:
    """A candidate unit shown to the LLM for one category."""

    key: str  # "U12": the unit's number as the prompt shows it
    unit: int
    scored: Scored
    probability: float  # embedded, calibrated


@dataclass(frozen=True)
class VerifyRequest:
    categories: tuple[Category, ...]
    shown: tuple[int, ...]  # unit indices, in document order
    proposals: dict[str, tuple[Proposal, ...]]  # category name -> its candidates


@dataclass
class VerifyPlan:
    """Everything verify knows of one document before the LLM answers (pure CPU, no network)."""

    text: str
    units: list[Unit]
    headings: list[str]
    scored: dict[str, list[Scored]]
    probabilities: dict[str, list[float]]
    presence: dict[str, float]
    model_evidence: ModelEvidence | None = None  # for the embedded model's extents (`EmbeddedExtractor.extend`)
    requests: list[VerifyRequest] = field(default_factory=list)

    @cached_property
    def unit_of(self) -> dict[int, int]:
        """Unit index by start offset, built once per plan (every decided category looks units up)."""
        return {u.start: i for i, u in enumerate(self.units)}


@dataclass(frozen=True)
class Verdict:
    """The LLM's answer for one category."""

    yes: dict[str, bool]  # proposal key -> accepted
    p_yes: dict[str, float]  # proposal key -> P(true) from log-probabilities (absent without them)
    more: tuple[int, ...]  # unit indices named unasked
    answer: str = ""


def unit_key(index: int) -> str:
    return f"U{index + 1}"


class VerifyPlanner:
    def __init__(
        self,
        model: EmbeddedExtractor,
        categories: Sequence[Category],
        *,
        per_category: int = PER_CATEGORY,
        min_presence: float = MIN_PRESENCE,
        max_categories_per_request: int = 41,
        schema_in_prompt: bool = False,
    ) -> None:
        if per_category < 1 or max_categories_per_request < 1:
            raise ValueError("per_category and max_categories_per_request >= 1")
        self.model = model
        self.categories = tuple(c for c in categories if c.name not in POOLS and c.name in model.categories)
        self.per_category = per_category
        self.min_presence = min_presence
        self.max_categories_per_request = max_categories_per_request
        self.schema_in_prompt = schema_in_prompt

    def plan(self, text: str) -> VerifyPlan:
        units = segment(text)
        # the embedded model's whole decision (second stage included): verify's floor
        evidence = self.model.evidence(text)
        assessment = self.model.assess(evidence)
        scored, probabilities, presence = assessment.scored, assessment.probabilities, assessment.presence
        plan = VerifyPlan(text, units, headings(text, units), scored, probabilities, presence, evidence)
        unit_of = plan.unit_of
        asked: list[tuple[Category, tuple[Proposal, ...]]] = []
        for category in self.categories:
            if presence.get(category.name, 0.0) < self.min_presence:
                continue
            ranked = sorted(
                (
                    (s, p)
                    for s, p in zip(scored[category.name], probabilities[category.name], strict=True)
                    if s.group == "unit" and s.start in unit_of
                ),
                key=lambda sp: -sp[1],
            )[: self.per_category]
            proposals = tuple(Proposal(unit_key(unit_of[s.start]), unit_of[s.start], s, p) for s, p in ranked)
            if proposals:
                asked.append((category, proposals))
        for start in range(0, len(asked), self.max_categories_per_request):
            batch = asked[start : start + self.max_categories_per_request]
            shown: set[int] = set()
            for _, proposals in batch:
                shown.update(p.unit for p in proposals)
                # the unit after the best candidate, so a clause running on can be extended
                following = proposals[0].unit + 1
                if following < len(units):
                    shown.add(following)
            plan.requests.append(
                VerifyRequest(tuple(c for c, _ in batch), tuple(sorted(shown)), {c.name: p for c, p in batch})
            )
        return plan

    def messages(self, plan: VerifyPlan, request: VerifyRequest) -> list[ChatCompletionMessageParam]:
        system = SYSTEM_PROMPT
        if self.schema_in_prompt:
            system += "\nJSON schema of the reply:\n" + json.dumps(json_schema(request))
        return [{"role": "system", "content": system}, {"role": "user", "content": user_prompt(plan, request)}]


def _shown_text(plan: VerifyPlan, index: int, limit: int) -> str:
    unit = plan.units[index]
    words = display_text(plan.text[unit.start : unit.end]).split()
    body = " ".join(words[:limit]) + (" ..." if len(words) > limit else "")
    heading = plan.headings[index]
    return f"[{unit_key(index)}] " + (f"(section: {heading}) " if heading else "") + body


def user_prompt(plan: VerifyPlan, request: VerifyRequest) -> str:
    proposed = {p.unit for proposals in request.proposals.values() for p in proposals}
    units = "\n".join(
        _shown_text(plan, i, MAX_UNIT_WORDS if i in proposed else CONTEXT_UNIT_WORDS) for i in request.shown
    )
    lines = []
    for category in request.categories:
        keys = ", ".join(p.key for p in request.proposals[category.name])
        answer = f" Answer: {category.answer_hint}." if category.typed else ""
        lines.append(f"- {category.name}: {category.description}{answer} Proposed: {keys}.")
    return (
        f"CONTRACT UNITS:\n{units}\n\nCATEGORIES AND PROPOSED UNITS:\n" + "\n".join(lines) + "\n\n"
        "For each category answer true or false for each proposed unit; list other unit numbers in "
        '"more" only when they clearly belong to the category.'
    )


def json_schema(request: VerifyRequest) -> dict[str, Any]:
    """One object per category, one required boolean per proposed unit: the grammar makes the model
    judge every candidate, and the boolean's token carries its probability."""
    properties: dict[str, Any] = {}
    for category in request.categories:
        keys = [p.key for p in request.proposals[category.name]]
        entry: dict[str, Any] = {k: {"type": "boolean"} for k in keys}
        entry[MORE] = {"type": "array", "items": {"type": "integer"}, "maxItems": MAX_MORE}
        required = [*keys, MORE]
        if category.typed:
            entry[ANSWER] = {"type": "string"}
            required.append(ANSWER)
        properties[category.name] = {
            "type": "object",
            "properties": entry,
            "required": required,
            "additionalProperties": False,
        }
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def response_format(request: VerifyRequest) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": json_schema(request)}}


_BOOLEAN_WORDS = {"true": True, "yes": True, "false": False, "no": False}


def _boolean(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _BOOLEAN_WORDS.get(value.strip().lower())
    return None


def parse_verdicts(
    content: str, request: VerifyRequest, logprobs: ChoiceLogprobs | None = None
) -> tuple[dict[str, Verdict], bool]:
    """The verdict per category and whether the reply needed repair; InvalidReply says what is wrong.

    A category missing from an otherwise valid reply is treated as not judged (its candidates keep
    the embedded model's probability); a reply with no category at all is invalid.
    """
    value, repaired = load_json(content)
    if not isinstance(value, dict):
        raise InvalidReply("the reply must be a JSON object with one key per category")
    probabilities = boolean_probabilities(content, logprobs, [c.name for c in request.categories])
    shown = {unit_key(i): i for i in request.shown}
    out: dict[str, Verdict] = {}
    for category in request.categories:
        entry = value.get(category.name)
        if not isinstance(entry, dict):
            continue
        yes: dict[str, bool] = {}
        p_yes: dict[str, float] = {}
        for proposal in request.proposals[category.name]:
            answer = _boolean(entry.get(proposal.key))
            if answer is not None:
                yes[proposal.key] = answer
                if (category.name, proposal.key) in probabilities:
                    p_yes[proposal.key] = probabilities[(category.name, proposal.key)]
        more_raw = entry.get(MORE)
        more: list[int] = []
        for item in more_raw if isinstance(more_raw, list) else []:
            key = f"U{item}" if isinstance(item, int) else str(item).strip().upper()
            if key in shown and shown[key] not in more:
                more.append(shown[key])
        answer_raw = entry.get(ANSWER, "")
        out[category.name] = Verdict(yes, p_yes, tuple(sorted(more)), answer_raw if isinstance(answer_raw, str) else "")
    if not out:
        expected = ", ".join(c.name for c in request.categories[:5])
        raise InvalidReply(f"no category judged: the reply's keys must be the category names ({expected}, ...)")
    return out, repaired


_OPEN = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*\{')
_BOOL = re.compile(r'"(U\d+)"\s*:\s*(true|false)')


def boolean_probabilities(
    content: str, logprobs: ChoiceLogprobs | None, categories: Sequence[str]
) -> dict[tuple[str, str], float]:
    """P(true) of every (category, unit) boolean in the reply, from the token log-probabilities.

    The boolean's first token is found by character offset (llama-server strips a code fence from
    the content but not from the tokens, so the content is found inside the tokens' text); its top
    alternatives starting with "t" and "f" are renormalised against each other, a side missing from
    the alternatives counted at the least likely alternative's mass (an upper bound). Empty when the
    server sent no log-probabilities or the tokens do not spell the reply.
    """
    tokens = list(logprobs.content or []) if logprobs is not None else []
    spelled = "".join(t.token for t in tokens)
    shift = spelled.find(content) if content else -1
    if not tokens or shift < 0:
        return {}
    starts: list[int] = []
    offset = -shift
    for token in tokens:
        starts.append(offset)
        offset += len(token.token)
    names = set(categories)
    opens = [(m.start(), m.group(1)) for m in _OPEN.finditer(content) if m.group(1) in names]
    out: dict[tuple[str, str], float] = {}
    for match in _BOOL.finditer(content):
        before = [name for position, name in opens if position < match.start()]
        if not before:
            continue
        index = bisect.bisect_right(starts, match.start(2)) - 1
        token = tokens[index]
        mass = {True: 0.0, False: 0.0}
        alternatives = token.top_logprobs or []
        for alternative in alternatives:
            word = alternative.token.strip().lower()
            if word and ("true".startswith(word) or "false".startswith(word)):
                mass[word[0] == "t"] += math.exp(alternative.logprob)
        chosen = match.group(2) == "true"
        if mass[chosen] <= 0.0:
            mass[chosen] = math.exp(token.logprob)
        if mass[not chosen] <= 0.0:
            mass[not chosen] = min((math.exp(a.logprob) for a in alternatives), default=0.0)
        out[(before[-1], match.group(1))] = mass[True] / (mass[True] + mass[False])
    return out


def decide(
    model: EmbeddedExtractor,
    plan: VerifyPlan,
    verdicts: dict[str, Verdict],
    fusion: Fusion,
    *,
    extend: bool = True,
    categories: Sequence[Category] = (),
) -> list[ClauseSpan]:
    """The document's clauses: the embedded decision, re-scored, completed and extended by the verdicts."""
    by_name = {c.name: c for c in categories}
    asked = {name: proposals for r in plan.requests for name, proposals in r.proposals.items()}
    decided: list[tuple[Scored, float]] = []
    for name, candidates in plan.scored.items():
        probabilities = plan.probabilities[name]
        kept = (
            keep_spans(candidates, probabilities, model.threshold(name), model.max_spans(name))
            if plan.presence[name] >= model.detect(name)
            else []
        )
        verdict = verdicts.get(name)
        if name in asked and verdict is not None:
            kept = _fused(model, plan, name, kept, asked[name], verdict, fusion, extend)
        decided.extend(kept)
    if plan.model_evidence is not None:  # the embedded model's extents, for spans the LLM did not extend
        decided = model.extend(plan.text, plan.model_evidence, decided)
    answers = {
        name: normalize_answer(by_name[name], v.answer)
        for name, v in verdicts.items()
        if name in by_name and by_name[name].typed and v.answer.strip()
    }
    # the embedded normaliser's answer first; the LLM's where it has none
    return [
        replace(s, answer=answers[s.category]) if not s.answer and s.category in answers else s
        for s in model.finish(plan.text, decided)
    ]


def _fused(
    model: EmbeddedExtractor,
    plan: VerifyPlan,
    name: str,
    kept: list[tuple[Scored, float]],
    proposals: tuple[Proposal, ...],
    verdict: Verdict,
    fusion: Fusion,
    extend: bool,
) -> list[tuple[Scored, float]]:
    """One category: the kept spans re-scored; additions and extensions only where the LLM's evidence
    raises the calibrator's probability above what it gives the embedded evidence alone (`lift`), so
    a calibrator that found the LLM uninformative adds and extends nothing."""
    presence = plan.presence[name]
    by_start = {p.scored.start: p for p in proposals}
    embedded_of = {s.start: p for s, p in zip(plan.scored[name], plan.probabilities[name], strict=True)}

    def judged(scored: Scored, embedded: float) -> Evidence | None:
        proposal = by_start.get(scored.start)
        if proposal is None or proposal.key not in verdict.yes:
            return None  # not shown, or not judged
        yes, p_yes = verdict.yes[proposal.key], verdict.p_yes.get(proposal.key)
        return Evidence(embedded, presence, judged=True, yes=yes, p_yes=p_yes)

    def lift(evidence: Evidence) -> float:
        return fusion.probability(evidence) - fusion.probability(Evidence(evidence.embedded, evidence.presence))

    out: list[tuple[Scored, float]] = []
    for scored, embedded in kept:
        evidence = judged(scored, embedded)
        out.append((scored, fusion.probability(evidence) if evidence else embedded))
    unit_of = plan.unit_of
    last_units = {unit_of[s.start] + _length(plan, unit_of[s.start], s.end) - 1 for s, _ in out if s.start in unit_of}
    more = {i: Evidence(embedded_of.get(plan.units[i].start, 0.0), presence, more=True) for i in verdict.more}
    continuations = {i for i, e in more.items() if i - 1 in last_units and lift(e) > 0} if extend else set()
    additions: list[tuple[Scored, Evidence]] = []
    for proposal in proposals:
        evidence = judged(proposal.scored, proposal.probability)
        if evidence and evidence.yes and all(s.start != proposal.scored.start for s, _ in out):
            additions.append((proposal.scored, evidence))
    for index, evidence in more.items():
        if index not in continuations:
            unit = plan.units[index]
            n_words = len(plan.text[unit.start : unit.end].split())
            additions.append((Scored(name, unit.start, unit.end, 0.0, "unit", n_words), evidence))
    # A category the embedded model judged absent is only reported on evidence that decides presence
    # on its own: the fused probability reaching the presence threshold, as the model's own rule asks.
    threshold = (
        model.threshold(name) if presence >= model.detect(name) else max(model.threshold(name), model.detect(name))
    )
    cap = model.max_spans(name)
    for scored, evidence in sorted(additions, key=lambda se: -fusion.probability(se[1])):
        probability = fusion.probability(evidence)
        overlaps = any(scored.start < s.end and s.start < scored.end for s, _ in out)
        if probability >= threshold and lift(evidence) > 0 and len(out) < cap and not overlaps:
            out.append((scored, probability))
    if not continuations:
        return out
    grown: list[tuple[Scored, float]] = []
    for scored, probability in out:
        first = unit_of.get(scored.start)
        if first is not None and first + _length(plan, first, scored.end) in continuations:
            end = plan.units[first + _length(plan, first, scored.end)].end
            scored = replace(scored, end=end, n_words=len(plan.text[scored.start : end].split()))
        grown.append((scored, probability))
    return grown


def _length(plan: VerifyPlan, first: int, end: int) -> int:
    """How many units, from unit `first` on, a span ending at `end` covers."""
    count = 1
    while first + count < len(plan.units) and plan.units[first + count].end <= end:
        count += 1
    return count
