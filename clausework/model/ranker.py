"""Features of a candidate short span for the learned ranker: its words, shape, context and position.

The ranker is a logistic regression per category over these binary features; it learns, e.g., that a
date right after "dated" or before '(the "Effective Date")' is the agreement date, or that a name
followed by ', a Delaware corporation' is a party. Feature names are strings, mapped to columns by
a vocabulary fitted at training time (see `features.Vectorizer`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from clausework.model.features import tokens
from clausework.model.spans import Candidate

_SUFFIX = re.compile(
    r"\b(?:inc|llc|l\.l\.c|ltd|limited|corp|corporation|co|company|n\.a|l\.p|lp|s\.a|sa|ag|gmbh|plc|b\.v|n\.v|"
    r"pte|llp|trust|bank|association|partnership|fund|holdings?|group|university|s\.p\.a)\.?$",
    re.IGNORECASE,
)
_QUOTES = "\"'\u201c\u201d\u2018\u2019"
CONTEXT_CHARS = 60


def _shape(piece: str) -> str:
    letters = [c for c in piece if c.isalpha()]
    if not letters:
        return "none"
    if all(c.isupper() for c in letters):
        return "upper"
    words = piece.split()
    if all(w[0].isupper() or not w[0].isalpha() for w in words):
        return "title"
    return "mixed"


def _last_visible(text: str, end: int) -> str:
    index = end - 1
    while index >= 0 and text[index].isspace():
        index -= 1
    return text[index] if index >= 0 else "^"


def _first_visible(text: str, start: int) -> str:
    index = start
    while index < len(text) and text[index].isspace():
        index += 1
    return text[index] if index < len(text) else "$"


def _char_class(ch: str) -> str:
    if ch in _QUOTES:
        return "quote"
    if ch.isalpha():
        return "alpha"
    if ch.isdigit():
        return "digit"
    return ch


def candidate_features(text: str, candidates: Sequence[Candidate]) -> list[list[str]]:
    """One feature list per candidate; counts and orders are computed within the document."""
    keys = [" ".join(tokens(text[c.start : c.end])) for c in candidates]
    occurrences = Counter(keys)
    order: Counter[str] = Counter()
    seen: dict[str, int] = {}
    out = []
    for candidate, key in zip(candidates, keys, strict=True):
        piece = text[candidate.start : candidate.end]
        toks = tokens(piece)
        kind = candidate.kind
        features = [f"k={kind}", f"shape={_shape(piece)}", f"n={min(len(toks), 12)}"]
        features.extend(f"c={t}" for t in toks[:12])
        if toks:
            features.extend((f"c0={toks[0]}", f"cL={toks[-1]}"))
        if _SUFFIX.search(piece.rstrip(".,")):
            features.append("suffix")
        if "_" in piece or "[" in piece:
            features.append("blank")
        left = tokens(text[max(0, candidate.start - CONTEXT_CHARS) : candidate.start])[-8:]
        right = tokens(text[candidate.end : candidate.end + CONTEXT_CHARS])[:8]
        for i, tok in enumerate(reversed(left[-3:])):
            features.append(f"l{i}={tok}")
        for i, tok in enumerate(right[:3]):
            features.append(f"r{i}={tok}")
        features.extend(f"L={t}" for t in left)
        features.extend(f"R={t}" for t in right)
        before, after = _last_visible(text, candidate.start), _first_visible(text, candidate.end)
        features.extend((f"lp={_char_class(before)}", f"rp={_char_class(after)}", f"lprp={_char_class(before)}|{kind}"))
        line_start = text.rfind("\n", 0, candidate.start) + 1
        line_end = text.find("\n", candidate.end)
        line_end = len(text) if line_end < 0 else line_end
        if not text[line_start : candidate.start].strip():
            features.append("line_start")
            if not text[candidate.end : line_end].strip():
                features.append("line_whole")
        features.append(f"pos={min(int(math.log2(1 + candidate.start / 200)), 12)}")
        features.append(f"tail={int(candidate.start > len(text) - 3000 and len(text) > 6000)}")
        rank = order[kind]
        order[kind] += 1
        features.append(f"ord={min(rank, 15)}|{kind}")
        if key in seen:
            features.append("repeat")
        else:
            seen[key] = rank
        features.append(f"occ={min(occurrences[key], 6)}")
        out.append(features)
    return out
