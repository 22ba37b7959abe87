"""Cross-validation groups: contracts that must not sit on both sides of a split.

Two contracts land in one group when

1. their **filer keys** are equal: the company part of `source_name` (before the filing date, or
   before " - " in the files named "Company, Inc. - Agreement.PDF"), upper-cased, with everything but
   letters and digits removed and trailing corporate suffixes (INC, CORP, LTD, LLC, ...) stripped,
   so that `ARMSTRONGFLOORING,INC_...` and `ArmstrongFlooringInc_...` are one filer; or
2. their **label texts overlap**: with S(c) the set of 8-word shingles (runs of 8 consecutive
   scorer words, `shingles`) of all of contract c's labelled contexts, the overlap of a and b is
   |S(a) & S(b)| / min(|S(a)|, |S(b)|), and a and b are joined when it is >= 0.5 and they share at
   least 20 shingles. This catches the same agreement (template) filed by two companies. The floor
   of 20 shared shingles (about 27 words) keeps one boilerplate sentence from joining unrelated
   contracts: on the 419 dev contracts, an amendment whose only label is "This Amendment shall be
   governed by and construed in accordance with the laws of the Commonwealth of Pennsylvania" (9
   shingles) has overlap 0.78 with an unrelated IP agreement; with the floor, the pairs joined across
   filers are all copies of one template (132-472 shared shingles).

Both relations are closed transitively (union-find), so a group is a connected component.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from training.data import Contract, folds

SHINGLE_WORDS = 8
MIN_OVERLAP = 0.5
MIN_SHARED = 20
# Trailing corporate-form words stripped from filer keys, longest first so that CORPORATION goes
# before CORP. "CO" and "SA"/"AG"/"NV" are forms too; a key is never stripped below 3 characters.
SUFFIXES = (
    "INCORPORATED",
    "CORPORATION",
    "COMPANY",
    "LIMITED",
    "CORP",
    "INC",
    "LTD",
    "LLC",
    "PLC",
    "LLP",
    "LP",
    "CO",
    "SA",
    "AG",
    "NV",
)
_MIN_KEY = 3
_COMPANY = re.compile(r"^(.*?)(?:_\d|\s+-\s)")
_PUNCT = str.maketrans("", "", string.punctuation)


def filer_key(source_name: str) -> str:
    """The normalised company part of a CUAD `source_name`."""
    match = _COMPANY.match(source_name)
    company = match.group(1) if match else source_name.rsplit(".", 1)[0]
    key = re.sub(r"[^A-Z0-9]", "", company.upper())
    stripped = True
    while stripped:
        stripped = False
        for suffix in SUFFIXES:
            if key.endswith(suffix) and len(key) - len(suffix) >= _MIN_KEY:
                key = key[: -len(suffix)]
                stripped = True
                break
    return key


def _tokens(text: str) -> list[str]:
    """The scorer's words (lower case, ASCII punctuation removed, articles dropped), in order."""
    return [w for w in text.lower().translate(_PUNCT).split() if w not in ("a", "an", "the")]


def shingles(contexts: Iterable[str], n: int = SHINGLE_WORDS) -> set[tuple[str, ...]]:
    """The n-word shingles of each context (a context shorter than n words contributes none)."""
    out: set[tuple[str, ...]] = set()
    for context in contexts:
        words = _tokens(context)
        out.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return out


def overlap(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    """|a & b| / min(|a|, |b|); 0 when either is empty."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def overlapping_pairs(
    label_texts: Sequence[Iterable[str]],
    threshold: float = MIN_OVERLAP,
    n: int = SHINGLE_WORDS,
    min_shared: int = MIN_SHARED,
) -> list[tuple[int, int, float]]:
    """(i, j, overlap) for each pair i < j whose label shingles overlap >= threshold, sharing >= min_shared."""
    sets = [shingles(texts, n) for texts in label_texts]
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        for shingle in s:
            index[shingle].append(i)
    common: dict[tuple[int, int], int] = defaultdict(int)
    for members in index.values():
        for x, i in enumerate(members):
            for j in members[x + 1 :]:
                common[(i, j)] += 1
    pairs = []
    for (i, j), shared in sorted(common.items()):
        value = shared / min(len(sets[i]), len(sets[j]))
        if value >= threshold and shared >= min_shared:
            pairs.append((i, j, value))
    return pairs


def group_indices(
    source_names: Sequence[str],
    label_texts: Sequence[Iterable[str]],
    threshold: float = MIN_OVERLAP,
    n: int = SHINGLE_WORDS,
    min_shared: int = MIN_SHARED,
) -> list[int]:
    """Group id per contract (the smallest index in its group): same filer key or overlapping labels."""
    if len(source_names) != len(label_texts):
        raise ValueError(f"{len(source_names)} source names for {len(label_texts)} label sets")
    uf = UnionFind(len(source_names))
    first: dict[str, int] = {}
    for i, name in enumerate(source_names):
        uf.union(first.setdefault(filer_key(name), i), i)
    for i, j, _value in overlapping_pairs(label_texts, threshold, n, min_shared):
        uf.union(i, j)
    return [uf.find(i) for i in range(len(source_names))]


def label_texts(gold: Mapping[str, Sequence[str]]) -> list[str]:
    return [text for contexts in gold.values() for text in contexts]


def cv_groups(contracts: Sequence[Contract], threshold: float = MIN_OVERLAP) -> list[str]:
    """A group key per contract for `training.data.folds`: the filer key of the group's first contract."""
    ids = group_indices([c.source_name for c in contracts], [label_texts(c.gold) for c in contracts], threshold)
    return [filer_key(contracts[g].source_name) for g in ids]


def cv_folds(contracts: Sequence[Contract], k: int) -> list[int]:
    """The outer cross-validation folds (`training.crossval`, `training.baseline`): whole groups per fold."""
    return folds(list(contracts), k, groups=cv_groups(contracts))
