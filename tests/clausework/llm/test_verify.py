"""The verify strategy's pure parts with the shipped embedded model: plan, schema, reply, log-probabilities,
fusion and decoding (the HTTP side is in test_extractor.py)."""

from __future__ import annotations

import json
import math
from functools import cache

import pytest
from openai.types.chat.chat_completion import ChoiceLogprobs
from openai.types.chat.chat_completion_token_logprob import ChatCompletionTokenLogprob, TopLogprob

from clausework.llm import verify
from clausework.llm.fusion import FEATURES, Evidence, Fusion, fit
from clausework.llm.prompts import InvalidReply, load_categories
from clausework.model.embedded import POOLS, EmbeddedExtractor

NBSP = "\xa0"
GOVERNING = "This Agreement shall be governed by the laws of the State of New York."
AUDIT = "Licensee shall keep accurate books and records and Licensor may audit them once per year."
AUDIT_MORE = "Any such audit shall be conducted at Licensor's expense during normal business hours."
TEXT = (
    "SOFTWARE LICENSE AGREEMENT\n"
    "This Software License Agreement is entered into on March 3, 2021 by Acme Corp. and Beta LLC.\n"
    "1. LICENSE. Acme hereby grants Beta a non-exclusive, non-transferable license to use the Software.\n"
    f"2. AUDIT. {AUDIT} {AUDIT_MORE}\n"
    "3. ASSIGNMENT. Neither party may assign this Agreement without the prior written consent of the other.\n"
    f"4. LAW. {GOVERNING}\n"
).replace(" ", NBSP)


@cache
def model() -> EmbeddedExtractor:
    return EmbeddedExtractor.load()


def planner() -> verify.VerifyPlanner:
    return verify.VerifyPlanner(model(), load_categories())


def plan_and_request() -> tuple[verify.VerifyPlan, verify.VerifyRequest]:
    plan = planner().plan(TEXT)
    assert len(plan.requests) == 1
    return plan, plan.requests[0]


def test_proposals_are_whole_units_of_clause_categories() -> None:
    plan, request = plan_and_request()
    names = {c.name for c in request.categories}
    assert names and not names & set(POOLS), "names and dates are not asked"
    assert {"Governing Law", "Audit Rights", "Anti-Assignment"} <= names
    units = {(u.start, u.end) for u in plan.units}
    for proposals in request.proposals.values():
        assert 1 <= len(proposals) <= verify.PER_CATEGORY
        for p in proposals:
            assert (p.scored.start, p.scored.end) in units
            assert p.unit in request.shown and p.key == f"U{p.unit + 1}"
    prompt = verify.user_prompt(plan, request)
    assert NBSP not in prompt
    for index in request.shown:
        assert f"[U{index + 1}]" in prompt


def test_schema_requires_a_boolean_per_proposal() -> None:
    _, request = plan_and_request()
    schema = verify.json_schema(request)
    assert set(schema["required"]) == {c.name for c in request.categories}
    law = schema["properties"]["Governing Law"]
    keys = [p.key for p in request.proposals["Governing Law"]]
    assert all(law["properties"][k] == {"type": "boolean"} for k in keys)
    assert set(law["required"]) == {*keys, verify.MORE, verify.ANSWER}  # Governing Law's answer is typed
    audit = schema["properties"]["Audit Rights"]
    assert verify.ANSWER not in audit["properties"], "Yes/No categories have no answer to give"


def reply_for(request: verify.VerifyRequest, accept: dict[str, list[str]], more: dict[str, list[int]]) -> str:
    body: dict[str, dict[str, object]] = {}
    for category in request.categories:
        entry: dict[str, object] = {
            p.key: p.key in accept.get(category.name, []) for p in request.proposals[category.name]
        }
        entry[verify.MORE] = more.get(category.name, [])
        if category.typed:
            entry[verify.ANSWER] = ""
        body[category.name] = entry
    return json.dumps(body)


def test_parse_verdicts_tolerates_words_and_drops_unknown_units() -> None:
    _, request = plan_and_request()
    key = request.proposals["Governing Law"][0].key
    content = json.dumps({"Governing Law": {key: "yes", "more": [999, request.shown[0] + 1], "answer": "New York"}})
    verdicts, repaired = verify.parse_verdicts("```json\n" + content + "\n```", request)
    assert repaired
    law = verdicts["Governing Law"]
    assert law.yes == {key: True} and law.answer == "New York" and law.more == (request.shown[0],)
    assert set(verdicts) == {"Governing Law"}, "categories left out are not judged"
    with pytest.raises(InvalidReply, match="no category judged"):
        verify.parse_verdicts(json.dumps({"clauses": []}), request)
    with pytest.raises(InvalidReply):
        verify.parse_verdicts("[1, 2]", request)


def token(text: str, logprob: float, alternatives: dict[str, float] | None = None) -> ChatCompletionTokenLogprob:
    top = [TopLogprob(token=t, logprob=lp, bytes=None) for t, lp in (alternatives or {text: logprob}).items()]
    return ChatCompletionTokenLogprob(token=text, logprob=logprob, bytes=None, top_logprobs=top)


def test_boolean_probabilities_renormalise_true_against_false() -> None:
    pieces = [
        token('{"Audit Rights": {', -0.1),
        token('"U3": ', -0.1),
        token("true", math.log(0.6), {"true": math.log(0.6), "false": math.log(0.2), "tr": math.log(0.1)}),
        token(', "U5": ', -0.1),
        token(" false", math.log(0.9), {" false": math.log(0.9), " true": math.log(0.05)}),
        token("}}", -0.1),
    ]
    content = "".join(t.token for t in pieces)
    got = verify.boolean_probabilities(content, ChoiceLogprobs(content=pieces), ["Audit Rights"])
    assert got[("Audit Rights", "U3")] == pytest.approx(0.7 / 0.9)
    assert got[("Audit Rights", "U5")] == pytest.approx(0.05 / 0.95)
    # llama-server strips a code fence from the content, not from the tokens
    fenced = [token("```json\n", -0.1), *pieces, token("\n```", -0.1)]
    assert verify.boolean_probabilities(content, ChoiceLogprobs(content=fenced), ["Audit Rights"]) == got
    assert verify.boolean_probabilities(content + "x", ChoiceLogprobs(content=pieces), ["Audit Rights"]) == {}
    assert verify.boolean_probabilities(content, None, ["Audit Rights"]) == {}


@pytest.mark.parametrize("judge", ["rejects everything", "accepts everything and names more"])
def test_a_calibrator_that_ignores_the_llm_keeps_the_embedded_result(judge: str) -> None:
    """Fitted to an uninformative LLM, the calibrator is the identity: whatever the LLM says, nothing is
    added, extended or re-scored (the guarantee that a weak LLM does not make things worse)."""
    plan, request = plan_and_request()
    if judge == "rejects everything":
        content = reply_for(request, {}, {})
    else:
        accept = {name: [p.key for p in proposals] for name, proposals in request.proposals.items()}
        more = {name: [i + 1 for i in request.shown][: verify.MAX_MORE] for name in request.proposals}
        content = reply_for(request, accept, more)
    verdicts, _ = verify.parse_verdicts(content, request)
    spans = verify.decide(model(), plan, verdicts, Fusion.identity(), categories=load_categories())
    assert spans == model().extract(TEXT)


def test_fusion_rescores_adds_and_extends() -> None:
    """A fusion that trusts the LLM: a rejected kept clause sinks but stays, an accepted proposal the
    model did not keep is added, and a `more` continuation extends its unit. Fails if the verdicts or
    the fusion are bypassed."""
    plan, request = plan_and_request()
    embedded = {(s.category, s.char_start): s for s in model().extract(TEXT)}
    trusting = Fusion(tuple({"yes": 8.0, "judged": -4.0, "more": 4.0}.get(f, 0.0) for f in FEATURES))
    law = request.proposals["Governing Law"]
    kept_law = [p for p in law if ("Governing Law", p.scored.start) in embedded]
    assert kept_law, "the embedded model keeps the governing law sentence"
    audit = request.proposals["Audit Rights"]
    audit_unit = next(p for p in audit if TEXT[p.scored.start : p.scored.end].replace(NBSP, " ") == AUDIT)
    continuation = audit_unit.unit + 1
    assert TEXT[plan.units[continuation].start : plan.units[continuation].end].replace(NBSP, " ") == AUDIT_MORE
    assignment = request.proposals["Anti-Assignment"]
    added = next(p for p in assignment if ("Anti-Assignment", p.scored.start) not in embedded)
    accept = {"Audit Rights": [audit_unit.key], "Anti-Assignment": [added.key]}
    verdicts, _ = verify.parse_verdicts(reply_for(request, accept, {"Audit Rights": [continuation + 1]}), request)
    spans = {
        (s.category, s.char_start): s
        for s in verify.decide(model(), plan, verdicts, trusting, categories=load_categories())
    }

    rejected = spans[("Governing Law", kept_law[0].scored.start)]
    assert rejected.confidence < 0.05 < embedded[("Governing Law", kept_law[0].scored.start)].confidence
    extended = spans[("Audit Rights", audit_unit.scored.start)]
    assert TEXT[extended.char_start : extended.char_end].replace(NBSP, " ") == f"{AUDIT} {AUDIT_MORE}"
    assert extended.confidence > 0.95
    # the added unit, perhaps grown by the embedded model's extent model (its heading taken in)
    [grown] = [
        s
        for (category, _), s in spans.items()
        if category == "Anti-Assignment" and s.char_start <= added.scored.start < added.scored.end <= s.char_end
    ]
    assert grown.confidence > 0.95


def test_fit_recovers_an_informative_judge_and_ignores_a_noisy_one() -> None:
    evidence, labels = [], []
    for i in range(400):
        truth = i % 3 == 0
        embedded = 0.6 if i % 2 else 0.3  # uninformative on its own here
        evidence.append(Evidence(embedded, 0.8, judged=True, yes=truth, p_yes=0.9 if truth else 0.1))
        labels.append(truth)
    informed = fit(evidence, labels)
    assert informed.probability(Evidence(0.3, 0.8, judged=True, yes=True, p_yes=0.9)) > 0.8
    assert informed.probability(Evidence(0.6, 0.8, judged=True, yes=False, p_yes=0.1)) < 0.2
    noisy = [Evidence(e.embedded, e.presence, judged=True, yes=i % 4 < 2, p_yes=0.5) for i, e in enumerate(evidence)]
    calibrated = [e.embedded > 0.5 for e in evidence]  # the labels follow the embedded model now
    ignored = fit(noisy, calibrated)
    yes = ignored.probability(Evidence(0.6, 0.8, judged=True, yes=True, p_yes=0.5))
    no = ignored.probability(Evidence(0.6, 0.8, judged=True, yes=False, p_yes=0.5))
    assert abs(yes - no) < 0.05, "a judge that says nothing moves nothing"


def test_verify_grows_spans_with_the_embedded_extent_model() -> None:
    """Verify's decision applies the embedded model's extents too, so it stays the embedded result when
    the LLM says nothing; fails if verify skipped `EmbeddedExtractor.extend`."""
    from tests.clausework.model.test_extent import one_split, with_extent

    growing = with_extent(model(), one_split("after"))
    plan = verify.VerifyPlanner(growing, load_categories()).plan(TEXT)
    spans = verify.decide(growing, plan, {}, Fusion.identity(), categories=load_categories())
    assert spans == growing.extract(TEXT)
    assert spans != verify.decide(model(), planner().plan(TEXT), {}, Fusion.identity(), categories=load_categories())
