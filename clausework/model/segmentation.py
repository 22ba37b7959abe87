"""Clause segmentation: cut contract text into sentence-like units with exact character offsets.

CUAD labels are mostly single sentences or short runs of sentences, so the model scores units and
then windows of consecutive units; a unit boundary the labels do not have cannot be undone by the
classifier, hence the care here. The parser's text wraps sentences with '\\n' and pads with
non-breaking spaces, so line breaks are only boundaries where the layout says so (enumerations,
headings), never by themselves.
"""

from __future__ import annotations

import itertools
import re
from typing import NamedTuple

# Tokens that end with a period without ending a sentence.
_ABBREVIATIONS = frozenset(
    [
        "inc",
        "ltd",
        "co",
        "corp",
        "no",
        "nos",
        "sec",
        "secs",
        "u.s",
        "e.g",
        "i.e",
        "etc",
        "mr",
        "mrs",
        "ms",
        "dr",
        "st",
        "vs",
        "jr",
        "sr",
        "art",
        "arts",
        "para",
        "s.a",
        "n.v",
        "b.v",
        "l.p",
        "llc",
        "plc",
        "p.c",
        "ft",
        "approx",
        "dept",
        "est",
        "fig",
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
        "v",
        "viz",
        "cf",
        "al",
        "u.s.a",
        "n.a",
        "ph.d",
        "s.p.a",
        "a.g",
        "g.m.b.h",
        "pty",
        "bhd",
        "ave",
        "blvd",
        "rd",
        "cal",
        "sub",
        "subs",
        "ch",
        "exh",
        "ex",
        "ref",
        "pp",
        "p",
        "min",
        "max",
        "mfg",
        "intl",
        "int'l",
        "assoc",
        "bros",
        "govt",
        "dist",
        "id",
        "op",
        "nat'l",
        "natl",
        "div",
        "pte",
        "k.k",
        "s.a.r.l",
        "l.l.c",
        "p.a",
        "sq",
        "tel",
        "apt",
        "bl",
        "ste",
    ]
)
_TERMINATOR = re.compile(r"[.!?](?:[\"'\u201d\u2019)\]]+)?(?=\s)")
_SEMICOLON = re.compile(r";(?=\s)")
_COLON_EOL = re.compile(r":[ \t\xa0]*\n")
_TOKEN_BEFORE = re.compile(r"([\w.'&-]+)$")
_NEXT_START = re.compile(r"\s*([\"'\u201c\u2018(\[\u2022\u00a7A-Z0-9])")
# Enumeration or article markers at the start of a line: "3.", "3.1", "(a)", "(iv)", "a)", "A.", "ARTICLE", "Section 4".
_ENUMERATION = re.compile(
    r"(?:\d{1,3}\.(?:\d{1,3}\.?)*|\((?:[a-zA-Z]|[ivxlcIVXLC]{1,5}|\d{1,2})\)|(?:[a-z]|\d{1,2})\)|[A-Z]\.(?=\s)"
    r"|ARTICLE\b|Article\s+[0-9IVXL]|SECTION\s+\d|Section\s+\d|[\u2022\u25cf\u25aa\u2023\uf0b7])"
)
_DOTTED = re.compile(r"(?:[a-z]\.)+[a-z]")
_CLOSERS = frozenset('.:;!?)"\u201d')
_SMALL_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "or",
        "of",
        "the",
        "to",
        "in",
        "for",
        "on",
        "by",
        "with",
        "at",
        "as",
        "from",
        "its",
        "their",
        "this",
        "that",
    ]
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'\u2019-]*")
_ALNUM = re.compile(r"[A-Za-z0-9]")
# Units longer than this many characters are cut at line breaks: tables and run-on exhibits.
MAX_UNIT_CHARS = 1500


class Unit(NamedTuple):
    """A segment of the text: `text[start:end]`, stripped of surrounding whitespace."""

    start: int
    end: int


def _is_abbreviation(text: str, period: int) -> bool:
    """True when the '.' at `period` closes an abbreviation, an initial or a bare section number."""
    match = _TOKEN_BEFORE.search(text, max(0, period - 40), period)
    if not match:
        return False
    token = match.group(1).lower().lstrip("(")
    if token in _ABBREVIATIONS or len(token) == 1 or _DOTTED.fullmatch(token):
        return True
    if re.fullmatch(r"[\d.]+|[ivxlc]+", token):
        # "3." or "IV." opening a line is a section number, not a sentence.
        line_start = text.rfind("\n", 0, match.start()) + 1
        return not text[line_start : match.start()].strip()
    return False


def _is_heading(line: str) -> bool:
    """A short title-like line without closing punctuation: 'GOVERNING LAW', 'Marketing and Sales'."""
    stripped = line.strip()
    if not stripped or len(stripped) > 80 or stripped[-1] in ",;-(&":
        return False
    words = _WORD.findall(stripped)
    if not words or len(words) > 10:
        return False
    content = [w for w in words if w.lower() not in _SMALL_WORDS]
    if not content:
        return False
    capitalised = sum(w[0].isupper() for w in content)
    return (capitalised == len(content) and stripped[-1] not in ".:") or stripped.isupper()


def _line_boundaries(text: str) -> set[int]:
    """Boundaries from layout: before enumerated lines, around (runs of) heading lines.

    A title-like line only counts as a heading when the line before it closed a sentence, is a
    heading itself or is blank; otherwise it is a wrapped sentence ("develop the / Co-Branded Pages").
    """
    cuts: set[int] = set()
    lines = text.split("\n")
    starts: list[int] = []
    position = 0
    for line in lines:
        starts.append(position)
        position += len(line) + 1
    heading = [False] * len(lines)
    previous = ""
    for index, line in enumerate(lines):
        body = line.strip()
        if not body:
            previous = ""
            continue
        first = starts[index] + len(line) - len(line.lstrip())
        enumerated = _ENUMERATION.match(body) is not None
        if enumerated:
            cuts.add(first)
        closed = not previous or previous[-1] in _CLOSERS or (index and heading[index - 1])
        if _is_heading(body) and (closed or enumerated or _ENUMERATION.fullmatch(previous) is not None):
            heading[index] = True
            if not (index and heading[index - 1]):
                cuts.add(first)
        elif index and heading[index - 1] and not (previous.isupper() and body.split()[0].isupper()):
            cuts.add(first)  # after a heading, unless an all-caps heading runs on into this line
        previous = body
    return cuts


def _sentence_boundaries(text: str) -> set[int]:
    """Boundaries after sentence-final punctuation followed by something that can start a sentence."""
    cuts: set[int] = set()
    for match in _TERMINATOR.finditer(text):
        if match.group(0)[0] == "." and _is_abbreviation(text, match.start()):
            continue
        if _NEXT_START.match(text, match.end()):
            cuts.add(match.end())
    cuts.update(m.end() for m in _SEMICOLON.finditer(text))
    cuts.update(m.start() + 1 for m in _COLON_EOL.finditer(text))
    return cuts


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split_long(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Cut an over-long piece at the line breaks nearest to MAX_UNIT_CHARS."""
    pieces: list[tuple[int, int]] = []
    while end - start > MAX_UNIT_CHARS:
        cut = text.rfind("\n", start + MAX_UNIT_CHARS // 2, start + MAX_UNIT_CHARS)
        if cut <= start:
            cut = start + MAX_UNIT_CHARS
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def segment(text: str) -> list[Unit]:
    """Units covering the text in order; every unit has at least one letter or digit."""
    cuts = sorted(_sentence_boundaries(text) | _line_boundaries(text) | {0, len(text)})
    units: list[Unit] = []
    for left, right in itertools.pairwise(cuts):
        for piece_start, piece_end in _split_long(text, left, right):
            start, end = _trim(text, piece_start, piece_end)
            if end > start and _ALNUM.search(text, start, end):
                units.append(Unit(start, end))
    return units


_LEADING_ENUMERATION = re.compile(r"^\s*(?:" + _ENUMERATION.pattern + r")\s*")


def is_heading_text(text: str) -> bool:
    """A unit that titles what follows: '8.2 Applicable Law.', 'ARTICLE VIII MISCELLANEOUS'."""
    body = _LEADING_ENUMERATION.sub("", " ".join(text.split()), count=1).rstrip(".: ")
    return bool(body) and _is_heading(body)


def headings(text: str, units: list[Unit]) -> list[str]:
    """For each unit, the text of the heading unit it falls under ('' before the first heading)."""
    current = ""
    out: list[str] = []
    for unit in units:
        piece = text[unit.start : unit.end]
        if is_heading_text(piece):
            current = " ".join(piece.split())
            out.append("")
        else:
            out.append(current)
    return out
