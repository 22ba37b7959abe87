"""What the OpenAI-compatible extractor sends: the requests for one document and their messages.

A short text goes whole in one request; a long one is either cut into overlapping chunks on section
boundaries (every category asked of every chunk), or — `retrieval` — split into passages that a
pluggable selector scores per category (in the service: the embedded model), so each request carries
only a few categories and their best passages (far fewer prompt tokens; see bench/tokens_report.py);
`auto`, the default, takes retrieval when it at least halves the prompt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from openai.types.chat import ChatCompletionMessageParam

from clausework.chunking import PassageSelector, Piece, chunk_text, passages, top_passages
from clausework.llm import prompts
from clausework.llm.prompts import Category

# Categories found in the opening of a contract: their first passages are always sent.
FRONT_MATTER = frozenset({"Document Name", "Parties", "Agreement Date", "Effective Date"})
FRONT_PASSAGES = 2

QuoteStrategy = Literal["auto", "retrieval", "chunks"]


@dataclass(frozen=True)
class PlannedRequest:
    """One chat completion to make: these categories, asked of these pieces of the text."""

    categories: tuple[Category, ...]
    pieces: tuple[Piece, ...]


def display_text(text: str) -> str:
    """What the model reads: the parser's non-breaking spaces as plain spaces (fewer tokens, same words)."""
    return text.replace("\xa0", " ")


class Planner:
    """Plans a document's requests; pure CPU work (a learned selector included), no network."""

    def __init__(
        self,
        categories: Sequence[Category],
        selector: PassageSelector,
        *,
        chunk_chars: int = 6000,
        overlap_chars: int = 600,
        strategy: QuoteStrategy = "auto",
        auto_max_ratio: float = 0.5,
        top_k: int = 4,
        max_categories_per_request: int = 41,
        schema_in_prompt: bool = False,
    ) -> None:
        if chunk_chars < 500 or top_k < 1 or max_categories_per_request < 1:
            raise ValueError("top_k, max_categories_per_request >= 1 and chunk_chars >= 500")
        self.categories = tuple(categories)
        self.selector = selector
        self.chunk_chars = chunk_chars
        self.overlap_chars = overlap_chars
        self.strategy: QuoteStrategy = strategy
        self.auto_max_ratio = auto_max_ratio
        self.top_k = top_k
        self.max_categories_per_request = max_categories_per_request
        self.schema_in_prompt = schema_in_prompt  # servers without structured output get the schema to read

    def plan(self, text: str, strategy: QuoteStrategy | None = None) -> list[PlannedRequest]:
        """The requests that extract() makes for `text` (also used to measure prompt sizes).

        `auto` plans both ways (milliseconds, no LLM call) and takes retrieval only when it cuts the
        prompt by enough to be worth its lower recall: on long contracts, not on short ones.
        """
        strategy = strategy or self.strategy
        if not text.strip():
            return []
        chunks = [
            PlannedRequest(self.categories, (chunk,))
            for chunk in chunk_text(text, self.chunk_chars, self.overlap_chars)
        ]
        if strategy == "chunks" or len(chunks) == 1:
            return chunks
        retrieval = self._plan_retrieval(text)
        if strategy == "retrieval":
            return retrieval
        if self.prompt_chars(text, retrieval) <= self.auto_max_ratio * self.prompt_chars(text, chunks):
            return retrieval
        return chunks

    def prompt_chars(self, text: str, plan: Sequence[PlannedRequest]) -> int:
        return sum(len(str(m.get("content") or "")) for r in plan for m in self.messages(text, r))

    def _plan_retrieval(self, text: str) -> list[PlannedRequest]:
        pieces = passages(text)
        if not pieces:
            return []
        names = [c.name for c in self.categories]
        scores = self.selector(text, pieces, names)
        wanted: list[tuple[Category, list[int]]] = []
        for category, row in zip(self.categories, scores, strict=True):
            forced: list[int] = list(range(FRONT_PASSAGES)) if category.name in FRONT_MATTER else []
            if category.name == "Parties":
                forced.append(len(pieces) - 1)  # the signature block
            chosen = top_passages(row, self.top_k, forced)
            wanted.extend((category, group) for group in self._split(chosen, pieces))
        # Pack categories into requests, each joining the request it shares the most passages with.
        batches: list[tuple[list[Category], set[int]]] = []
        for category, chosen in sorted(wanted, key=lambda w: (w[1][0], w[0].name)):
            best: tuple[int, int] | None = None
            for index, (members, used) in enumerate(batches):
                union = used | set(chosen)
                full = len(members) >= self.max_categories_per_request or category in members
                if full or self._chars(union, pieces) > self.chunk_chars:
                    continue
                added = self._chars(union, pieces) - self._chars(used, pieces)
                if best is None or added < best[0]:
                    best = (added, index)
            if best is None:
                batches.append(([category], set(chosen)))
            else:
                batches[best[1]][0].append(category)
                batches[best[1]][1].update(chosen)
        return [PlannedRequest(tuple(members), tuple(pieces[i] for i in sorted(used))) for members, used in batches]

    def _split(self, chosen: list[int], pieces: list[Piece]) -> list[list[int]]:
        """A category's passages in groups (in document order) that each fit one request."""
        groups: list[list[int]] = []
        for index in chosen:
            if groups and self._chars({*groups[-1], index}, pieces) <= self.chunk_chars:
                groups[-1].append(index)
            else:
                groups.append([index])
        return groups

    @staticmethod
    def _chars(indices: set[int], pieces: list[Piece]) -> int:
        return sum(pieces[i].end - pieces[i].start for i in indices)

    def messages(self, text: str, request: PlannedRequest) -> list[ChatCompletionMessageParam]:
        system = prompts.SYSTEM_PROMPT
        if self.schema_in_prompt:
            schema = prompts.json_schema([c.name for c in request.categories])
            system += "\nJSON schema of the reply:\n" + json.dumps(schema)
        return [
            {"role": "system", "content": system},
            {
                "role": "user",
                "content": prompts.user_prompt(
                    request.categories, [display_text(text[p.start : p.end]) for p in request.pieces]
                ),
            },
        ]
