"""The versioned prompt, JSON schema and reply validator of the OpenAI-compatible backend.

Any change to the wording, the schema or the answer conventions changes what the model returns, so it
bumps PROMPT_VERSION, which is part of the model name stored with every extraction: results of two
prompt versions are never mistaken for one another.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

PROMPT_VERSION = "clauses-v2"
SCHEMA_NAME = "cuad_clauses"
CATEGORIES_FILE = Path(__file__).resolve().parent / "categories.json"
YES_NO = "Yes/No"


@dataclass(frozen=True)
class Category:
    name: str
    description: str
    answer_format: str

    @property
    def typed(self) -> bool:
        """True when the answer is a value read from the clause (date, law, term...), not just "Yes"."""
        return not (self.answer_format.startswith(YES_NO) or self.answer_format.startswith("Answer Format"))

    @property
    def answer_hint(self) -> str:
        """What goes in `answer` for this category, as told to the model."""
        if not self.typed:
            return '"Yes"'
        if "mm/dd/yyyy" in self.answer_format:
            return "date as m/d/yyyy" + (', or "Perpetual"' if "Perpetual" in self.answer_format else "")
        return self.answer_format


def load_categories(path: Path = CATEGORIES_FILE) -> list[Category]:
    raw: list[dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
    return [Category(c["name"], " ".join(c["description"].split()), c["answer_format"]) for c in raw]


SYSTEM_PROMPT = """\
You are a meticulous contract analyst labelling clauses with the CUAD categories.
You receive category definitions and numbered passages from ONE contract.
For every category that the passages contain, return one item per distinct clause:
- "category": the exact category name from the list;
- "quote": the WHOLE sentence or sentences that make up the clause, copied VERBATIM and CONTIGUOUSLY \
from one passage (same words, same order; never paraphrase, summarise, translate or join text from \
different places; no passage labels). For Parties, Document Name and the dates, quote just the name, \
title or date, and give each party's name and each of its aliases ("Supplier", "the Company") as its \
own item;
- "answer": the value asked for by the category's answer format (e.g. a date as m/d/yyyy, the governing \
law's state or country, party names, a term like "successive 1 year", a period like "90 days"); \
write "Yes" for Yes/No categories;
- "confidence": your probability, from 0 to 1, that the quote really is such a clause.
Omit categories that are absent; an empty list is a valid answer. Reply with JSON only, matching the schema."""

REPAIR_PROMPT = """\
Your previous reply was rejected: {error}
Reply again with JSON only: an object {{"clauses": [...]}} matching the schema, quotes copied verbatim."""


def categories_block(categories: Sequence[Category]) -> str:
    return "\n".join(f"- {c.name}: {c.description} Answer: {c.answer_hint}." for c in categories)


def user_prompt(categories: Sequence[Category], passages: Sequence[str]) -> str:
    """The contract first, then the categories, then the rule small models most often break."""
    numbered = "\n\n".join(f"[P{i + 1}]\n{text}" for i, text in enumerate(passages))
    return (
        f"CONTRACT PASSAGES:\n{numbered}\n\nCATEGORIES:\n{categories_block(categories)}\n\n"
        "Quote only text that appears in the CONTRACT PASSAGES above, never the category definitions; "
        "skip every category the passages do not contain."
    )


def json_schema(category_names: Sequence[str]) -> dict[str, Any]:
    """Strict-mode compatible schema (every property required, no extras), categories as an enum.

    No numeric bounds: not every server enforces them; confidence is clamped on our side instead.
    """
    return {
        "type": "object",
        "properties": {
            "clauses": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "category": {"type": "string", "enum": list(category_names)},
                        "quote": {"type": "string"},
                        "answer": {"type": "string"},
                        "confidence": {"type": "number"},
                    },
                    "required": ["category", "quote", "answer", "confidence"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["clauses"],
        "additionalProperties": False,
    }


def response_format(category_names: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": json_schema(category_names)},
    }


class ClauseItem(BaseModel):
    """One returned clause; unknown categories are an error (fed back to the model), not silently kept."""

    model_config = ConfigDict(extra="ignore")

    category: str
    quote: str
    answer: str = ""
    confidence: float | None = None

    @field_validator("category")
    @classmethod
    def _known(cls, value: str, info: ValidationInfo) -> str:
        allowed = (info.context or {}).get("categories")
        if allowed is not None and value not in allowed:
            raise ValueError(f"unknown category {value!r}; use one of the listed names exactly")
        return value

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_text(cls, value: object) -> object:
        return "" if value is None else str(value) if isinstance(value, int | float) else value


class ClauseReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    clauses: list[ClauseItem]


class InvalidReply(ValueError):
    """The model's reply is not (repairable into) a schema-valid JSON object; the message says why."""


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def _json_candidates(content: str) -> list[str]:
    """The reply, the inside of its first code fence, and from its first '{' on, in that order."""
    out = [content.strip()]
    fence = _FENCE.search(content)
    if fence:
        out.append(fence.group(1).strip())
    brace = content.find("{")
    if brace > 0:
        out.append(content[brace:])
    return out


def _first_object(candidate: str) -> Any:
    """The first JSON value at the start of `candidate`, ignoring trailing text."""
    value, _ = json.JSONDecoder().raw_decode(candidate.lstrip())
    return value


def _salvage_truncated(candidate: str) -> Any:
    """A reply cut off by the token limit: keep the clauses that were complete, close the array."""
    for match in reversed(list(re.finditer(r"\}\s*,?", candidate))):
        try:
            return json.loads(candidate[: match.start() + 1] + "]}")
        except json.JSONDecodeError:
            continue
    raise InvalidReply("reply is not JSON")


def load_json(content: str) -> tuple[Any, bool]:
    """The JSON value of a reply and whether it needed repair (fences, trailing text, truncation).

    Raises InvalidReply with a message fit to be shown to the model.
    """
    if not content or not content.strip():
        raise InvalidReply("the reply was empty")
    for index, candidate in enumerate(_json_candidates(content)):
        try:
            return json.loads(candidate), index > 0
        except json.JSONDecodeError:
            pass
        try:
            return _first_object(candidate), True
        except json.JSONDecodeError:
            pass
    brace = content.find("{")
    if brace < 0:
        raise InvalidReply("the reply contains no JSON object")
    return _salvage_truncated(content[brace:]), True


def parse_reply(content: str, categories: Sequence[str]) -> tuple[ClauseReply, bool]:
    """The validated reply and whether it needed repair (fences, trailing text, truncation).

    Raises InvalidReply with a message fit to be shown to the model.
    """
    value, repaired = load_json(content)
    if isinstance(value, list):  # a bare list of clauses
        value, repaired = {"clauses": value}, True
    try:
        return ClauseReply.model_validate(value, context={"categories": set(categories)}), repaired
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}" for e in error.errors()[:5])
        raise InvalidReply(f"schema validation failed: {problems}") from error
