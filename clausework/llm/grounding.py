"""Ground LLM quotes in the document: find each quote's exact character offsets, or reject it.

An LLM paraphrases, re-spaces, fixes hyphenation and changes case even when told to copy verbatim, and
the parser's text has non-breaking spaces between words and line-break hyphens. A quote is therefore
looked up at increasingly tolerant levels, each mapping its match back to offsets of the ORIGINAL text:

1. exact (after a length-preserving swap of non-breaking spaces for spaces);
2. normalised: NFKC, case-folded, typographic quotes and dashes unified, whitespace runs collapsed,
   hyphen + line break between letters removed;
3. letters and digits only (for quotes long enough that a coincidental match is implausible).

A quote with an ellipsis ("... ") is grounded piece by piece, in order, within a bounded gap. Whatever
cannot be found returns None: the caller drops it and counts it, so the service never returns text
the contract does not contain.
"""

from __future__ import annotations

import bisect
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from clausework.clauses import ClauseSpan
from clausework.llm.prompts import Category

# Confidence used when the model reports none (or a non-number): the prior that a returned clause is right.
PRIOR_CONFIDENCE = 0.5
# A grounded quote needs this many letters/digits to be a clause rather than a stray word.
MIN_QUOTE_ALNUM = 3
# Level 3 (letters and digits only) needs this many of them in the quote to be trusted.
MIN_ALNUM_CHARS = 16
# An ellipsis may stand for at most this many characters of the document between two pieces.
MAX_ELLIPSIS_GAP = 3000
# Ellipsis pieces shorter than this (in letters/digits) are ignored: "... and" says nothing about where.
MIN_PIECE_ALNUM = 8

_NBSP_TABLE = str.maketrans({"\xa0": " ", "\u2007": " ", "\u202f": " "})
_CHAR_MAP = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2033": '"',
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u2015": "-",
    "\u2212": "-",
    "\u00ad": "",  # soft hyphen
    "\u200b": "",  # zero-width space
    "\ufeff": "",
}
_ELLIPSIS = re.compile(r"\s*(?:\.\s?\.\s?\.|\u2026|\[\s*\.\.\.\s*\])\s*")
_WRAPPING_QUOTES = "\"'\u201c\u201d\u2018\u2019`"


class Located(NamedTuple):
    start: int
    end: int
    level: int  # 1 exact, 2 normalised, 3 letters/digits only


def _fold(char: str) -> str:
    """A character's normalised form (possibly several characters, possibly none)."""
    mapped = _CHAR_MAP.get(char)
    if mapped is not None:
        return mapped
    if char.isspace():
        return " "
    if char.isascii():
        return char.lower()
    return unicodedata.normalize("NFKC", char).casefold()


@dataclass
class _Projection:
    """A derived string plus, for each of its characters, the index of the original character."""

    text: str
    origin: list[int]

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        return self.origin[start], self.origin[end - 1] + 1

    def from_original(self, start: int, end: int) -> tuple[int, int]:
        """The projected range covering original [start, end)."""
        return bisect.bisect_left(self.origin, start), bisect.bisect_left(self.origin, end)


def _normalise(text: str) -> _Projection:
    """Level-2 projection: folded characters, single spaces, line-break hyphenation removed."""
    chars: list[str] = []
    origin: list[int] = []
    length = len(text)
    i = 0
    while i < length:
        char = text[i]
        if char in "-\u2010\u2011\u00ad" and chars and chars[-1].isalpha():
            # "termi-\nnation" -> "termination": a hyphen, whitespace holding a line break, a letter.
            j = i + 1
            while j < length and text[j].isspace():
                j += 1
            gap = text[i + 1 : j]
            if "\n" in gap and j < length and text[j].isalpha():
                i = j
                continue
        for folded in _fold(char):
            if folded == " " and (not chars or chars[-1] == " "):
                continue
            chars.append(folded)
            origin.append(i)
        i += 1
    return _Projection("".join(chars), origin)


def _alnum(text: str) -> _Projection:
    """Level-3 projection: only letters and digits, folded."""
    chars: list[str] = []
    origin: list[int] = []
    for i, char in enumerate(text):
        for folded in _fold(char):
            if folded.isalnum():
                chars.append(folded)
                origin.append(i)
    return _Projection("".join(chars), origin)


def clean_quote(quote: str) -> str:
    """The quote without surrounding whitespace and wrapping quotation marks the model may add."""
    quote = quote.strip()
    while len(quote) >= 2 and quote[0] in _WRAPPING_QUOTES and quote[-1] in _WRAPPING_QUOTES:
        quote = quote[1:-1].strip()
    return quote


class Grounder:
    """Locates quotes in one document; build once per document (the projections cost O(len(text)))."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._plain = text.translate(_NBSP_TABLE)
        self._norm: _Projection | None = None
        self._alnum: _Projection | None = None

    @property
    def norm(self) -> _Projection:
        if self._norm is None:
            self._norm = _normalise(self.text)
        return self._norm

    @property
    def alnum(self) -> _Projection:
        if self._alnum is None:
            self._alnum = _alnum(self.text)
        return self._alnum

    def locate(self, quote: str, within: list[tuple[int, int]] | None = None) -> Located | None:
        """Where `quote` is in the text, searching the `within` ranges first, then the whole text.

        The first match wins at the first level that matches anywhere: an exact match elsewhere beats
        a fuzzy one in the hinted range, since the fuzzy one is the likelier mistake.
        """
        quote = clean_quote(quote)
        if not quote:
            return None
        whole = [(0, len(self.text))]
        for level in (1, 2, 3):
            for start, end in [*(within or []), *whole]:
                found = self._find(quote, level, start, end)
                if found is not None:
                    return found
        return self._locate_elided(quote, within)

    def _find(self, quote: str, level: int, start: int, end: int) -> Located | None:
        if level == 1:
            at = self._plain.find(quote.translate(_NBSP_TABLE), start, end)
            return Located(at, at + len(quote), 1) if at >= 0 else None
        projection = self.norm if level == 2 else self.alnum
        needle = _normalise(quote).text.strip() if level == 2 else _alnum(quote).text
        if not needle or (level == 3 and len(needle) < MIN_ALNUM_CHARS):
            return None
        low, high = projection.from_original(start, end)
        at = projection.text.find(needle, low, high)
        if at < 0:
            return None
        found_start, found_end = projection.to_original(at, at + len(needle))
        return Located(found_start, found_end, level)

    def _locate_elided(self, quote: str, within: list[tuple[int, int]] | None) -> Located | None:
        """A quote with ellipses: every substantial piece found in order, gaps bounded."""
        pieces = [p for p in _ELLIPSIS.split(quote) if len(_alnum(p).text) >= MIN_PIECE_ALNUM]
        if len(pieces) < 2 or not _ELLIPSIS.search(quote):
            return None
        first = self.locate(pieces[0], within)
        if first is None:
            return None
        position, level = first.end, first.level
        for piece in pieces[1:]:
            window = [(position, min(len(self.text), position + MAX_ELLIPSIS_GAP + 4 * len(piece)))]
            found = None
            for lvl in (1, 2, 3):
                found = self._find(clean_quote(piece), lvl, *window[0])
                if found is not None:
                    break
            if found is None or found.start - position > MAX_ELLIPSIS_GAP:
                return None
            position, level = found.end, max(level, found.level)
        return Located(first.start, position, level)


_DATE_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_DATE_US = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def normalize_answer(category: Category, answer: str) -> str:
    """CUAD answer conventions: "Yes" for Yes/No categories, m/d/yyyy dates without leading zeros."""
    if not category.typed:
        return "Yes"
    answer = " ".join(answer.split())
    if "mm/dd/yyyy" in category.answer_format:
        iso = _DATE_ISO.fullmatch(answer)
        if iso:
            return f"{int(iso.group(2))}/{int(iso.group(3))}/{iso.group(1)}"
        us = _DATE_US.fullmatch(answer)
        if us:
            return f"{int(us.group(1))}/{int(us.group(2))}/{us.group(3)}"
    return answer


def normalize_confidence(value: float | None) -> float:
    """The model's confidence clamped to [0, 1]; missing or non-finite values get the prior."""
    if value is None or not math.isfinite(value):
        return PRIOR_CONFIDENCE
    return min(1.0, max(0.0, value))


def merge_spans(spans: Sequence[ClauseSpan]) -> list[ClauseSpan]:
    """One span per clause: spans of a category that overlap (two chunks saw it) become their union.

    The union is still verbatim text; the confidence is the highest, the answer that of the most
    confident span that has one.
    """
    merged: list[ClauseSpan] = []
    by_category: dict[str, list[ClauseSpan]] = {}
    for span in spans:
        by_category.setdefault(span.category, []).append(span)
    for category, group in by_category.items():
        group.sort(key=lambda s: (s.char_start, s.char_end))
        current = group[0]
        answers = [(current.confidence, current.answer)]
        for span in group[1:]:
            if span.char_start < current.char_end:
                answers.append((span.confidence, span.answer))
                current = ClauseSpan(
                    category,
                    current.char_start,
                    max(current.char_end, span.char_end),
                    max(current.confidence, span.confidence),
                    "",
                )
                continue
            merged.append(_with_best_answer(current, answers))
            current, answers = span, [(span.confidence, span.answer)]
        merged.append(_with_best_answer(current, answers))
    return sorted(merged, key=lambda s: (s.char_start, s.char_end, s.category))


def _with_best_answer(span: ClauseSpan, answers: list[tuple[float, str]]) -> ClauseSpan:
    given = [a for a in answers if a[1]]
    answer = max(given, key=lambda a: a[0])[1] if given else ""
    return ClauseSpan(span.category, span.char_start, span.char_end, span.confidence, answer)
