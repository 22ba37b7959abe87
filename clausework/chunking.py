"""Cut a contract into LLM-sized pieces on clause/section boundaries, and pick passages per category.

Two consumers:
- the `chunks` strategy sends the whole contract as overlapping chunks (every category asked of every
  chunk); a cut falls on the best boundary available near the size limit (section start > paragraph >
  sentence > word), and the overlap keeps a clause cut by one chunk whole in the next;
- the `retrieval` strategy splits the contract into passages (sections/paragraphs of bounded size),
  scores every passage against every category with a cheap selector and sends each category only its
  best passages. The selector is any `PassageSelector` callable: the llm service uses the embedded
  model's (`embedded.EmbeddedSelector`); `KeywordSelector` (BM25 over a query made of the category's
  name, description and hand-picked cue words) needs no weights and is the fallback.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import NamedTuple

# Boundary strengths: a cut prefers the strongest boundary within reach of the size limit.
SECTION, PARAGRAPH, SENTENCE, WORD = 3, 2, 1, 0

_SECTION_START = re.compile(
    r"(?m)^[ \t\xa0]*(?:"
    r"(?:ARTICLE|Article|SECTION|Section|Schedule|SCHEDULE|Exhibit|EXHIBIT)[ \t\xa0]+[\dIVXLC]+"
    r"|\d{1,3}(?:\.\d{1,3})*\.?[ \t\xa0]+\S"
    r"|[A-Z]\.[ \t\xa0]+[A-Z]"
    r"|\((?:[a-z]|[ivx]{1,4}|\d{1,2})\)[ \t\xa0]+\S"
    r")"
)
_PARAGRAPH = re.compile(r"\n[ \t\xa0]*\n|[.:;][ \t\xa0]*\n")
_SENTENCE = re.compile(r"[.;:!?][\"'\u201d\u2019)]?[ \t\xa0\n]+(?=[\"'\u201c\u2018(]?[A-Z0-9])")
_WORD_BREAK = re.compile(r"\s+")
_TOKEN = re.compile(r"[a-z0-9]+")

# A passage shorter than this is glued to the next one (a lone heading is no passage).
MIN_PASSAGE_CHARS = 300
# A passage longer than this is cut at its best boundaries.
MAX_PASSAGE_CHARS = 1500


class Piece(NamedTuple):
    """`text[start:end]`: a chunk or a passage."""

    start: int
    end: int


def boundaries(text: str) -> dict[int, int]:
    """Offsets where a piece may start, with their strength (SECTION > PARAGRAPH > SENTENCE > WORD)."""
    found: dict[int, int] = {}

    def add(offset: int, strength: int) -> None:
        if 0 < offset < len(text) and found.get(offset, -1) < strength:
            found[offset] = strength

    for match in _WORD_BREAK.finditer(text):
        add(match.end(), WORD)
    for match in _SENTENCE.finditer(text):
        add(match.end(), SENTENCE)
    for match in _PARAGRAPH.finditer(text):
        add(match.end(), PARAGRAPH)
    for match in _SECTION_START.finditer(text):
        start = match.start()
        while start < len(text) and text[start] in " \t\xa0":
            start += 1
        add(start, SECTION)
    return found


class _Cuts:
    """Boundary offsets sorted per strength, to find the best cut within a window quickly."""

    def __init__(self, text: str) -> None:
        found = boundaries(text)
        self.by_strength = {
            strength: sorted(o for o, s in found.items() if s >= strength)
            for strength in (SECTION, PARAGRAPH, SENTENCE, WORD)
        }

    def best(self, low: int, high: int, prefer_late: bool = True) -> int | None:
        """The strongest boundary in [low, high]; the latest (or earliest) among equals."""
        for strength in (SECTION, PARAGRAPH, SENTENCE, WORD):
            offsets = self.by_strength[strength]
            if prefer_late:
                index = bisect.bisect_right(offsets, high) - 1
                if index >= 0 and offsets[index] >= low:
                    return offsets[index]
            else:
                index = bisect.bisect_left(offsets, low)
                if index < len(offsets) and offsets[index] <= high:
                    return offsets[index]
        return None


def chunk_text(text: str, chunk_chars: int, overlap_chars: int) -> list[Piece]:
    """Overlapping chunks of at most `chunk_chars` covering the whole text, cut on the best boundaries.

    A chunk ends at the strongest boundary in its last 40%; the next starts at the strongest boundary
    at least `overlap_chars` (at most twice that) before the end, so the overlap begins on a clause.
    """
    if chunk_chars <= 0:
        raise ValueError("chunk_chars must be positive")
    overlap_chars = max(0, min(overlap_chars, chunk_chars // 3))
    if len(text) <= chunk_chars:
        return [Piece(0, len(text))] if text else []
    cuts = _Cuts(text)
    chunks: list[Piece] = []
    start = 0
    while True:
        limit = start + chunk_chars
        if limit >= len(text):
            chunks.append(Piece(start, len(text)))
            return chunks
        end = cuts.best(start + int(chunk_chars * 0.6), limit) or limit
        chunks.append(Piece(start, end))
        next_start = end
        if overlap_chars:
            found = cuts.best(max(start + 1, end - 2 * overlap_chars), end - overlap_chars)
            next_start = found if found is not None else end - overlap_chars
        start = max(next_start, start + 1)


def passages(text: str, min_chars: int = MIN_PASSAGE_CHARS, max_chars: int = MAX_PASSAGE_CHARS) -> list[Piece]:
    """Non-overlapping passages covering the text: sections/paragraphs, small ones merged, big ones cut."""
    if not text.strip():
        return []
    cuts = _Cuts(text)
    blocks = [0, *cuts.by_strength[PARAGRAPH], len(text)]
    pieces: list[Piece] = []
    for left, right in itertools.pairwise(blocks):
        start = left
        while right - start > max_chars:
            end = cuts.best(start + max_chars // 2, start + max_chars) or start + max_chars
            pieces.append(Piece(start, end))
            start = end
        if right > start:
            pieces.append(Piece(start, right))
    merged: list[Piece] = []
    for piece in pieces:
        small = merged and (merged[-1].end - merged[-1].start < min_chars or not text[piece.start : piece.end].strip())
        if small and piece.end - merged[-1].start <= max_chars:
            merged[-1] = Piece(merged[-1].start, piece.end)
            continue
        merged.append(piece)
    return [_trimmed(text, p) for p in merged if text[p.start : p.end].strip()]


def _trimmed(text: str, piece: Piece) -> Piece:
    start, end = piece
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Piece(start, end)


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


# (text, passages of it, category names) -> scores, one list per category (in the order given), one
# score per passage (in the order given); a score <= 0 means "not relevant".
PassageSelector = Callable[[str, Sequence[Piece], Sequence[str]], list[list[float]]]

# Cue words per category, beyond its name and description: the words contracts actually use.
CUES: dict[str, str] = {
    "Document Name": "agreement contract title this agreement",
    "Parties": "between by and among party parties inc llc corporation company hereinafter referred",
    "Agreement Date": "dated as of day made entered into executed date",
    "Effective Date": "effective date commence commencement effective as of",
    "Expiration Date": "term expire expiration initial term until years anniversary terminate",
    "Renewal Term": "renew renewal automatically successive extend extension additional term",
    "Notice Period to Terminate Renewal": "notice prior non-renewal renew days written notice before expiration",
    "Governing Law": "governed construed laws state governing law jurisdiction",
    "Most Favored Nation": "most favored favourable terms no less favorable than any other customer",
    "Non-Compete": "compete competing competitive business not engage non-competition",
    "Exclusivity": "exclusive exclusively sole only supplier distributor territory",
    "No-Solicit of Customers": "solicit customers clients induce divert business",
    "Competitive Restriction Exception": "notwithstanding except exception shall not prevent restrict permitted",
    "No-Solicit of Employees": "solicit hire employ employees personnel recruit",
    "Non-Disparagement": "disparage disparaging derogatory negative statements reputation",
    "Termination for Convenience": "terminate convenience any reason without cause upon days notice",
    "Rofr/Rofo/Rofn": "right of first refusal offer negotiation first option",
    "Change of Control": "change of control merger acquisition consolidation voting securities",
    "Anti-Assignment": "assign assignment transfer consent delegate successors",
    "Revenue/Profit Sharing": "revenue profit share royalty royalties percentage net sales commission fee paid",
    "Price Restrictions": "price increase decrease pricing not exceed adjust",
    "Minimum Commitment": "minimum purchase order quantity annual commitment at least fee guarantee not less than",
    "Volume Restriction": "volume limit maximum usage exceed units cap up to additional fees",
    "IP Ownership Assignment": "intellectual property assign assigns work product inventions owns sole property",
    "Joint IP Ownership": "jointly owned joint ownership co-owned both parties",
    "License Grant": "hereby grants grant license licence right to use licensed non-exclusive exclusive royalty-free",
    "Non-Transferable License": "non-transferable nontransferable not transferable non-sublicensable license",
    "Affiliate License-Licensor": "affiliates licensor license grant affiliates",
    "Affiliate License-Licensee": "affiliates licensee sublicense subsidiaries license",
    "Unlimited/All-You-Can-Eat-License": "unlimited enterprise all you can eat any number users copies",
    "Irrevocable or Perpetual License": "irrevocable perpetual fully paid license",
    "Source Code Escrow": "source code escrow agent deposit release",
    "Post-Termination Services": "upon after termination expiration survive transition wind down return destroy",
    "Audit Rights": "audit inspect books records examine accounting",
    "Uncapped Liability": "liability unlimited not limit gross negligence willful misconduct indemnification",
    "Cap on Liability": "liability shall not exceed aggregate limit consequential damages",
    "Liquidated Damages": "liquidated damages penalty",
    "Warranty Duration": "warranty warrants period months days defects",
    "Insurance": "insurance insured coverage policy liability insurance",
    "Covenant Not to Sue": "not to sue contest challenge validity claim",
    "Third Party Beneficiary": "third party beneficiary beneficiaries no third party rights",
}


class KeywordSelector:
    """BM25 of each passage against a per-category query (name, description, cue words).

    Cheap (pure Python, milliseconds per contract) and deterministic; its recall, not its precision,
    matters, since the LLM reads what it selects and decides.
    """

    def __init__(self, descriptions: dict[str, str], k1: float = 1.4, b: float = 0.6) -> None:
        self._queries = {
            name: Counter(tokenize(f"{name} {name} {description} {CUES.get(name, '')} {CUES.get(name, '')}"))
            for name, description in descriptions.items()
        }
        self._k1 = k1
        self._b = b

    def __call__(self, text: str, pieces: Sequence[Piece], categories: Sequence[str]) -> list[list[float]]:
        docs = [Counter(tokenize(text[p.start : p.end])) for p in pieces]
        if not docs:
            return [[] for _ in categories]
        average = sum(sum(d.values()) for d in docs) / len(docs) or 1.0
        frequency: Counter[str] = Counter()
        for doc in docs:
            frequency.update(doc.keys())
        n = len(docs)
        idf = {term: math.log(1 + (n - df + 0.5) / (df + 0.5)) for term, df in frequency.items()}
        scores: list[list[float]] = []
        for category in categories:
            query = self._queries.get(category) or Counter(tokenize(category))
            row = []
            for doc in docs:
                length = sum(doc.values())
                score = 0.0
                for term, weight in query.items():
                    tf = doc.get(term, 0)
                    if tf:
                        norm = tf * (self._k1 + 1) / (tf + self._k1 * (1 - self._b + self._b * length / average))
                        score += idf[term] * norm * (1 + math.log(weight))
                row.append(score)
            scores.append(row)
        return scores


def top_passages(scores: list[float], top_k: int, positions: Sequence[int] = ()) -> list[int]:
    """Indices (in order) of at most `top_k` best-scoring passages with a positive score, plus the forced
    `positions`: what one category's requests carry."""
    ranked = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: (-scores[i], i))[:top_k]
    return sorted({*ranked, *(p for p in positions if 0 <= p < len(scores))})
