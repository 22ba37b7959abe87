"""Candidate short spans (names, dates, titles) for the categories whose CUAD labels are not sentences.

"Parties", "Document Name", "Agreement Date" and "Effective Date" are labelled as a few words
("ACCURAY INCORPORATED", "June 8, 2010"); a whole sentence never reaches word Jaccard 0.5 against
them. These generators propose every plausible span (high recall, low precision); a learned ranker
(`model_ranker`) then decides which candidates are the answer from their words, their context and
their position. Nothing here decides on its own.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
]
_MONTH = r"(?:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")"
_BLANK = r"(?:_+|\[[^\]\n]{0,5}\]|\*+)"
_DAY = r"(?:\d{1,2}[ \t\xa0]*(?:st|nd|rd|th|t[ \t]h|d)?|" + _BLANK + r")"
_SP = r"[ \t\xa0\n]+"
_OSP = r"[ \t\xa0\n]*"
_YEAR = r"(?:(?:19|20)\d{2}|" + _BLANK + r")"
DATE = re.compile(
    "|".join(
        [
            # June 21, 1999 / June 21st, 1999 / June __, 2005 / Sept. 1 2004 / March 2003
            _MONTH + r"\.?" + _SP + r"(?:" + _DAY + r"\b" + _OSP + r",?" + _OSP + r")?" + r",?" + _OSP + _YEAR,
            # 21st day of March, 2000 / 1st of March 2003 / [ ] day of [ ], 2020 / 22 Dec. 2017
            _DAY + _SP + r"(?:day" + _SP + r"of" + _SP + r"|of" + _SP + r")?(?:" + _MONTH + r"\.?|" + _BLANK + r")"
            r"(?:" + _OSP + r",?" + _OSP + _YEAR + r")?",
            # 6/21/1999, 06-21-99, 1999-06-21, 21.06.1999
            r"\b\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})\b",
            r"\b(?:19|20)\d{2}-\d{2}-\d{2}\b",
            # ____________, 1996 / ___________ __, 2000
            r"_{2,}(?:" + _OSP + r"_+)?" + _OSP + r"," + _OSP + r"(?:19|20)\d{2}",
        ]
    ),
    re.IGNORECASE,
)
_SUFFIX = (
    r"(?:Inc|INC|LLC|L\.L\.C|Ltd|LTD|Limited|LIMITED|Corp|CORP|Co|CO|N\.A|L\.P|LP|S\.A|SA|AG|GmbH|plc|PLC"
    r"|B\.V|N\.V|S\.A\.R\.L|Pte|PTE|LLP|S\.p\.A|KK|K\.K)\b"
)
_NAME_TOKEN = r"(?:[A-Z0-9][\w.&'\u2019\-/]*|\([A-Z][\w.&]*\))"
NAME = re.compile(
    _NAME_TOKEN
    + r"(?:(?:[ \t\xa0\n]+|,[ \t\xa0\n]*(?="
    + _SUFFIX
    + r"))(?:(?:of|and|de|du|la|der|for|the|&)[ \t\xa0\n]+)?"
    + _NAME_TOKEN
    + r")*"
)
QUOTED = re.compile(r"[\"\u201c\u201d]([^\"\u201c\u201d\n]{1,80}?)[\"\u201c\u201d]")
PARENTHETICAL = re.compile(r"\(([^()]{8,300})\)")
_LINE = re.compile(r"[^\n]+")
_PARTY_TERM = re.compile(r"[\"\u201c]Part(?:y|ies)\b")
# Where party names and titles are looked for: the preamble, and the signature block at the end.
HEAD_CHARS = 10_000
TAIL_CHARS = 3_000
TITLE_CHARS = 3_000


class Candidate(NamedTuple):
    """A proposed span `text[start:end]` and the generator that proposed it."""

    start: int
    end: int
    kind: str


# connectors and enumerations a name match can start with: "and SAS", "5.1 The Company", "B. Bioamber"
_LEADING_CONNECTOR = re.compile(r"(?:(?:and|of|&|AND)|\d+(?:\.\d+)*\.?|[A-Z]\.|\(?[a-z0-9]{1,3}\))[ \t\xa0\n]+")


def _trimmed(text: str, start: int, end: int, kind: str) -> Candidate | None:
    while start < end and (text[start].isspace() or text[start] in ",;:"):
        start += 1
    if kind.startswith("name"):
        connector = _LEADING_CONNECTOR.match(text, start, end)
        while connector:
            start = connector.end()
            connector = _LEADING_CONNECTOR.match(text, start, end)
    while end > start and (text[end - 1].isspace() or text[end - 1] in ",;:("):
        end -= 1
    return Candidate(start, end, kind) if end > start else None


def _regions(text: str, head: int, tail: int) -> list[tuple[int, int]]:
    if len(text) <= head + tail:
        return [(0, len(text))]
    return [(0, head), (len(text) - tail, len(text))]


def date_candidates(text: str) -> list[Candidate]:
    """Every date-like expression in the document, blanks included ('this ___ day of ____, 2004')."""
    out = []
    for match in DATE.finditer(text):
        piece = match.group(0)
        if not re.search(r"\d|_|\[", piece):
            continue
        candidate = _trimmed(text, match.start(), match.end(), "date")
        if candidate:
            out.append(candidate)
    return out


_SENTENCE_PERIOD = re.compile(r"(?<![A-Z])(?<!\b[A-Za-z]\.[A-Za-z])\.(?=[ \t\xa0\n]+\S)")
_NEWLINE = re.compile(r"[ \t\xa0]*\n\s*")


def _name_pieces(text: str, start: int, end: int) -> list[tuple[int, int, str]]:
    """A name match, cut where it runs into the next sentence ('Company. The Company') and, as
    alternatives, at line breaks ('SAS / By', 'INC. / LIFE TECHNOLOGIES CORPORATION')."""
    pieces = []
    cursor = start
    for period in _SENTENCE_PERIOD.finditer(text, start, end):
        token = text[text.rfind(" ", cursor, period.start()) + 1 : period.start()]
        if len(token.strip(".")) <= 1:  # initials: "M. D. Anderson"
            continue
        pieces.append((cursor, period.end()))
        cursor = period.end()
    pieces.append((cursor, end))
    out = [(a, b, "name") for a, b in pieces]
    for a, b in pieces:
        breaks = list(_NEWLINE.finditer(text, a, b))
        if breaks:
            left = a
            for line_break in breaks:
                out.append((left, line_break.start(), "name-line"))
                left = line_break.end()
            out.append((left, b, "name-line"))
    return out


def party_candidates(text: str) -> list[Candidate]:
    """Capitalised name sequences, quoted defined terms and parentheticals in the preamble and signatures."""
    out = []
    for left, right in _regions(text, HEAD_CHARS, TAIL_CHARS):
        for match in NAME.finditer(text, left, right):
            for piece_start, piece_end, kind in _name_pieces(text, match.start(), match.end()):
                candidate = _trimmed(text, piece_start, piece_end, kind)
                if not candidate:
                    continue
                out.append(candidate)
                # "The Company" / "THE BANK OF X": the label usually omits the article
                first = text[candidate.start : candidate.end].split(maxsplit=1)
                if len(first) == 2 and first[0].lower() == "the":
                    stripped = _trimmed(text, candidate.start + 4, candidate.end, kind + "-the")
                    if stripped:
                        out.append(stripped)
        for match in QUOTED.finditer(text, left, right):
            candidate = _trimmed(text, match.start(1), match.end(1), "quoted")
            if candidate:
                out.append(candidate)
        for match in PARENTHETICAL.finditer(text, left, min(right, left + HEAD_CHARS // 2)):
            candidate = _trimmed(text, match.start(1), match.end(1), "paren")
            if candidate:
                out.append(candidate)
    # 'A and B are referred to herein individually as a "Party" and collectively as the "Parties".'
    for match in _PARTY_TERM.finditer(text, 0, min(len(text), HEAD_CHARS)):
        begin = max(text.rfind(". ", 0, match.start()) + 2, text.rfind(";", 0, match.start()) + 1, match.start() - 300)
        stop = len(text)
        for mark in (".", ";", "\n\n"):
            found = text.find(mark, match.end())
            if 0 <= found < stop:
                stop = found + (mark == ".")
        candidate = _trimmed(text, begin, min(stop, match.end() + 300), "party-clause")
        if candidate:
            out.append(candidate)
    return out


_TITLE_WORD = re.compile(
    r"\b(?:agreement|contract|amendment|addendum|license|licence|lease|plan|memorandum|terms|deed|note|"
    r"arrangement|understanding|letter|warrant|policy|guaranty|guarantee|charter|protocol|schedule|exhibit|"
    r"undertaking|consent|certificate|statement|order|appointment)s?\b",
    re.IGNORECASE,
)


def title_candidates(text: str) -> list[Candidate]:
    """Short lines near the top and capitalised phrases ending in a document-type word."""
    out = []
    limit = min(len(text), TITLE_CHARS)
    for match in _LINE.finditer(text, 0, limit):
        line = match.group(0)
        if len(line.split()) <= 15 and _TITLE_WORD.search(line):
            candidate = _trimmed(text, match.start(), match.end(), "line")
            if candidate:
                out.append(candidate)
    for match in NAME.finditer(text, 0, min(len(text), HEAD_CHARS)):
        piece = match.group(0)
        last = None
        for word in _TITLE_WORD.finditer(piece):
            last = word
        if last is not None:
            candidate = _trimmed(text, match.start(), match.start() + last.end(), "phrase")
            if candidate:
                out.append(candidate)
                first = piece.split(maxsplit=1)
                if len(first) == 2 and first[0].lower() == "this":
                    stripped = _trimmed(text, candidate.start + 5, candidate.end, "phrase-this")
                    if stripped:
                        out.append(stripped)
    return out
