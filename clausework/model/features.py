"""Sparse text features shared by training and inference: the same code on both sides, so no skew.

A unit is represented by TF-IDF weighted word unigrams and bigrams of its own text, plus the words of
the section heading it sits under (prefixed, so "law" in a heading differs from "law" in the body).
Rows are returned in CSR form as plain numpy arrays; inference multiplies them with a dense weight
matrix without scipy.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_TOKEN = re.compile(r"[a-z]+|\d+")
_DIGIT = re.compile(r"\d")
HEADING_PREFIX = "h:"
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def label_words(text: str) -> set[str]:
    """The CUAD scorer's bag of words (lowercase, ASCII punctuation dropped, no articles)."""
    return {w for w in text.lower().translate(_PUNCTUATION).split() if w not in ("a", "an", "the")}


def tokens(text: str) -> list[str]:
    """Lowercase word tokens; digits become '0' so '30 days' and '60 days' share a feature."""
    return [_DIGIT.sub("0", t[:6]) if t[0].isdigit() else t for t in _TOKEN.findall(text.lower())]


def terms(text: str, heading: str = "") -> list[str]:
    """Unigrams and bigrams of the text, and heading unigrams."""
    toks = tokens(text)
    out = toks + [f"{a} {b}" for a, b in itertools.pairwise(toks)]
    out.extend(HEADING_PREFIX + t for t in tokens(heading))
    return out


@dataclass(frozen=True)
class CsrRows:
    """A CSR matrix as numpy arrays (float32 data, int32 indices, int64 indptr)."""

    data: npt.NDArray[np.float32]
    indices: npt.NDArray[np.int32]
    indptr: npt.NDArray[np.int64]
    n_cols: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def dot(self, weights: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Rows times a dense (n_cols, k) matrix, in numpy."""
        out = np.zeros((self.n_rows, weights.shape[1]), dtype=np.float32)
        if len(self.data) == 0:
            return out
        contributions = weights[self.indices] * self.data[:, None]
        lengths = np.diff(self.indptr)
        nonempty = lengths > 0
        sums = np.add.reduceat(contributions, self.indptr[:-1][nonempty], axis=0)
        out[nonempty] = sums
        return out


class Vectorizer:
    """Vocabulary + IDF: sublinear TF-IDF, L2-normalised rows."""

    def __init__(self, vocabulary: Sequence[str], idf: npt.NDArray[np.float32]) -> None:
        self.vocabulary = list(vocabulary)
        self.index = {term: i for i, term in enumerate(self.vocabulary)}
        self.idf = idf.astype(np.float32)

    @classmethod
    def fit(cls, documents: Iterable[list[str]], min_df: int, max_features: int) -> Vectorizer:
        """Keep the `max_features` most frequent terms seen in at least `min_df` documents."""
        df: dict[str, int] = {}
        n_docs = 0
        for terms_ in documents:
            n_docs += 1
            for term in set(terms_):
                df[term] = df.get(term, 0) + 1
        kept = sorted((t for t, n in df.items() if n >= min_df), key=lambda t: (-df[t], t))[:max_features]
        kept.sort()
        idf = np.array([np.log((1 + n_docs) / (1 + df[t])) + 1.0 for t in kept], dtype=np.float32)
        return cls(kept, idf)

    def transform(self, documents: Iterable[list[str]], binary: bool = False) -> CsrRows:
        """TF-IDF rows, or with `binary` plain 0/1 indicators (ranker features: presence, not weight)."""
        data: list[float] = []
        indices: list[int] = []
        indptr = [0]
        index, idf = self.index, self.idf
        for terms_ in documents:
            counts: dict[int, int] = {}
            for term in terms_:
                column = index.get(term)
                if column is not None:
                    counts[column] = counts.get(column, 0) + 1
            if counts and binary:
                columns_ = sorted(counts)
                indices.extend(columns_)
                data.extend([1.0] * len(columns_))
            elif counts:
                columns = np.fromiter(counts.keys(), dtype=np.int32, count=len(counts))
                values = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))) * idf[
                    columns
                ]
                values /= np.sqrt(float(values @ values))
                order = np.argsort(columns)
                indices.extend(columns[order].tolist())
                data.extend(values[order].tolist())
            indptr.append(len(indices))
        return CsrRows(
            np.asarray(data, dtype=np.float32),
            np.asarray(indices, dtype=np.int32),
            np.asarray(indptr, dtype=np.int64),
            len(self.vocabulary),
        )
