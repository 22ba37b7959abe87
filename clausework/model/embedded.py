"""The embedded default clause extractor: a CUAD-trained sparse model that runs in numpy, offline.

Pipeline (all learned parts are trained by `python -m training.train` on CUAD):
1. `segmentation` cuts the text into sentence-like units.
2. A TF-IDF (word uni/bigrams + section heading) logistic regression per category scores every unit.
3. For the short-span categories (Parties, Document Name, Agreement/Effective Date), candidate names,
   titles and dates (`model_spans`) are scored by a per-category logistic ranker (`model_ranker`).
4. A small per-category calibrator maps each candidate's score, its rank in the document and its
   length to the probability that it matches a CUAD clause.
5. The second stage (`second_stage`, gradient-boosted trees run in numpy) reranks unit candidates
   with every category's scores in view, and for each category's `DENSE_TOP` best units a dense
   score: a per-category logistic regression on the unit's sentence embedding (`encoder`, MiniLM in
   numpy); it decides presence from all categories' evidence at once; candidates of present
   categories above the threshold chosen by cross-validation are returned with that probability as
   confidence.
6. `answers` normalises typed answers (dates, governing law, parties, renewal and notice terms).

No pymupdf, no network, no scipy, no torch: weights are numpy arrays loaded once per process (the
encoder's tokenizer is Hugging Face's `tokenizers`).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clausework import answers
from clausework.chunking import Piece
from clausework.clauses import ClauseSpan
from clausework.model.encoder import TextEncoder, default_encoder
from clausework.model.extent import EXTENTS, Extent, choose, extent_rows, grow, possible
from clausework.model.features import Vectorizer, label_words, terms
from clausework.model.ranker import candidate_features
from clausework.model.second_stage import (
    NO_DENSE,
    DenseScore,
    SecondStage,
    blend,
    nearest_similarities,
    presence_rows,
    rerank_rows,
)
from clausework.model.segmentation import Unit, headings, segment
from clausework.model.spans import Candidate, date_candidates, party_candidates, title_candidates
from clausework.model.trees import Trees

MODEL_DIR = Path(__file__).resolve().parent / "cuad-sparse-lr"
# Candidates per category and document handed to the calibrator (by model score).
TOP_K = 12
# Span categories: which candidate generator proposes their spans.
POOLS = {"Parties": "party", "Document Name": "title", "Agreement Date": "date", "Effective Date": "date"}
CALIBRATION_FEATURES = 11
PRESENCE_FEATURES = 4
PROBABILITY_FLOOR = 1e-4
# Units per unit category (its best by first-stage score) given a dense score: the encoder's cost
# grows with them (58-82 distinct units on a 30-page contract at 3; `training.latency` counts them).
DENSE_TOP = 3


@dataclass(frozen=True)
class Scored:
    """A candidate span of one category with its raw model score (before calibration)."""

    category: str
    start: int
    end: int
    logit: float
    group: str  # "unit", or the span pool ("party", "title", "date")
    n_words: int
    near_duplicate: bool = False  # span: same words as a better candidate (Jaccard >= 0.5)
    doc_logit: float = 0.0  # whole-document score of the category (does this kind of contract have it?)


@dataclass(frozen=True)
class Evidence:
    """What the first stage's classifiers say of one text, before calibration."""

    scored: dict[str, list[Scored]]  # per category, its top candidates, best first
    unit_logits: npt.NDArray[np.float32]  # (n_units, n_unit_categories)
    unit_of: dict[int, int]  # a unit's start offset -> its index
    unit_bounds: list[tuple[int, int]]  # per unit, its (start, end) offsets
    # unit index -> sentence embedding, for the units some category ranks among its DENSE_TOP best
    embeddings: dict[int, npt.NDArray[np.float32]] = field(default_factory=dict)

    def dense_vectors(self, category: str) -> list[tuple[int, npt.NDArray[np.float32]]]:
        """(rank, embedding) of the category's DENSE_TOP best candidates that have one: what gets a
        dense score, the one definition training and run time share."""
        out = []
        for rank, s in enumerate(self.scored[category][:DENSE_TOP]):
            vector = self.embeddings.get(self.unit_of.get(s.start, -1))
            if vector is not None:
                out.append((rank, vector))
        return out


@dataclass(frozen=True)
class Assessment:
    """The model's view of one text: calibrated candidates and which categories it reports."""

    scored: dict[str, list[Scored]]
    probabilities: dict[str, list[float]]  # per candidate of `scored`
    presence: dict[str, float]  # probability that the contract has the category
    present: dict[str, bool]  # the decision: is the category reported at all


def calibration_features(scored: list[Scored]) -> npt.NDArray[np.float64]:
    """Calibrator inputs for one category's candidates in one document, sorted by descending logit.

    The rank and the gap to the document's best candidate carry what a lone score cannot: the second
    "Governing Law" sentence of a contract is much less likely to be a label than the first.
    """
    out = np.zeros((len(scored), CALIBRATION_FEATURES), dtype=np.float64)
    if not scored:
        return out
    top: dict[str, float] = {}
    for s in scored:
        top[s.group] = max(top.get(s.group, s.logit), s.logit)
    ranks: dict[str, int] = {}
    for i, s in enumerate(scored):
        rank = ranks.get(s.group, 0)
        ranks[s.group] = rank + 1
        out[i] = (
            s.logit,
            s.logit - top[s.group],
            rank == 0,
            rank == 1,
            math.log1p(rank),
            s.group == "unit",
            math.log1p(s.n_words),
            s.n_words < 6,
            s.near_duplicate,
            s.doc_logit,
            1.0,
        )
    return out


def presence_features(scored: list[Scored], probabilities: list[float]) -> npt.NDArray[np.float64]:
    """Inputs of the per-category presence model: log-odds of the two most probable candidates and
    the whole-document score."""
    best = sorted(probabilities, reverse=True)[:2] + [PROBABILITY_FLOOR] * 2
    first, second = (min(max(p, PROBABILITY_FLOOR), 1 - PROBABILITY_FLOOR) for p in best[:2])
    doc_logit = scored[0].doc_logit if scored else 0.0
    return np.array([math.log(first / (1 - first)), math.log(second / (1 - second)), doc_logit, 1.0])


@dataclass
class _Linear:
    """Vectorizer + weight matrix (n_features, n_categories) + bias."""

    vectorizer: Vectorizer
    weights: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32]
    categories: list[str]

    def logits(self, rows: list[list[str]], binary: bool) -> npt.NDArray[np.float32]:
        return self.vectorizer.transform(rows, binary=binary).dot(self.weights) + self.bias


def _vocabulary(blob: npt.NDArray[np.uint8]) -> list[str]:
    return bytes(blob.tobytes()).decode("utf-8").split("\n") if blob.size else []


def _dequantize(arrays: dict[str, npt.NDArray[Any]], name: str) -> npt.NDArray[np.float32]:
    weights = arrays[name]
    if weights.dtype == np.int8:
        return (weights.astype(np.float32) * arrays[name + "_scale"].astype(np.float32)[None, :]).astype(np.float32)
    return weights.astype(np.float32)


class EmbeddedExtractor:
    """Loaded once per process; `extract` is pure CPU and thread-safe (no mutable state)."""

    model_name: str

    def __init__(
        self, arrays: dict[str, npt.NDArray[Any]], metadata: dict[str, Any], encoder: TextEncoder | None = None
    ) -> None:
        """`encoder`: what embeds the dense units (training passes a cached one); by default the
        committed encoder when the artefact has dense weights, else none (no dense scores)."""
        self.metadata = metadata
        self.model_name = f"embedded/cuad-sparse-lr@{metadata['version']}"
        self.categories: list[str] = list(metadata["categories"])
        self.answer_formats: dict[str, str] = dict(metadata.get("answer_formats", {}))
        self._units = _Linear(
            Vectorizer(_vocabulary(arrays["unit_vocab"]), arrays["unit_idf"]),
            _dequantize(arrays, "unit_w"),
            arrays["unit_b"].astype(np.float32),
            list(metadata["unit_categories"]),
        )
        ranker_vocab = _vocabulary(arrays["rank_vocab"])
        self._ranker = _Linear(
            Vectorizer(ranker_vocab, np.ones(len(ranker_vocab), dtype=np.float32)),
            _dequantize(arrays, "rank_w"),
            arrays["rank_b"].astype(np.float32),
            list(metadata["span_categories"]),
        )
        document_weights = np.zeros((len(self._units.vectorizer.vocabulary), len(self.categories)), np.float32)
        pointers = arrays["doc_ptr"]
        for column in range(len(self.categories)):
            rows = arrays["doc_idx"][pointers[column] : pointers[column + 1]]
            document_weights[rows, column] = arrays["doc_val"][pointers[column] : pointers[column + 1]]
        # whole-document classifier: same vocabulary as the units, sparse (L1) weights
        self._document = _Linear(
            self._units.vectorizer, document_weights, arrays["doc_b"].astype(np.float32), self.categories
        )
        calibration: dict[str, list[float]] = metadata["calibration"]
        self._calibration = {c: np.asarray(w, dtype=np.float64) for c, w in calibration.items()}
        self._thresholds: dict[str, float] = dict(metadata["thresholds"])
        presence: dict[str, list[float]] = metadata["presence"]
        self._presence = {c: np.asarray(w, dtype=np.float64) for c, w in presence.items()}
        self._detect: dict[str, float] = dict(metadata["detect"])
        self._max_spans: dict[str, int] = dict(metadata["max_spans"])
        second: dict[str, Any] | None = metadata.get("second_stage")
        self.second_stage = (
            SecondStage(
                Trees.from_arrays(arrays, "rerank"),
                Trees.from_arrays(arrays, "stack"),
                float(second["detect"]),
                float(second["blend"]),
                {c: float(t) for c, t in second["thresholds"].items()},
            )
            if second
            else None
        )
        dense: dict[str, Any] | None = metadata.get("dense")
        if dense and "bank_categories" not in dense:  # its reranker's rows lack the bank's columns
            raise ValueError(f"{self.model_name}: written by an older training (no label bank); retrain it: make train")
        self.dense = (
            Dense(
                _dequantize(arrays, "dense_w"),
                arrays["dense_b"].astype(np.float32),
                list(dense["categories"]),
                _dequantize(arrays, "dense_bank"),
                arrays["dense_bank_ptr"].astype(np.int64),
                list(dense["bank_categories"]),
            )
            if dense
            else None
        )
        self.encoder = encoder if encoder is not None else (default_encoder() if dense else None)
        extent: dict[str, Any] | None = metadata.get("extent")
        self.extent = (
            Extent(Trees.from_arrays(arrays, "extent"), float(extent["margin"]), dict(extent["typical_words"]))
            if extent
            else None
        )

    @property
    def unit_categories(self) -> list[str]:
        """The categories scored per unit, in the order of `Evidence.unit_logits`' columns."""
        return self._units.categories

    @classmethod
    def load(cls, model_dir: Path | None = None, encoder: TextEncoder | None = None) -> EmbeddedExtractor:
        """Read the artefact (default: the one committed with the package)."""
        directory = Path(model_dir) if model_dir else MODEL_DIR
        metadata = json.loads((directory / "metadata.json").read_text(encoding="utf-8"))
        with np.load(directory / "model.npz", allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        return cls(arrays, metadata, encoder)

    # -- scoring -------------------------------------------------------------------------------

    def score(self, text: str, features: DocumentFeatures | None = None) -> dict[str, list[Scored]]:
        """Every category's top candidates with raw scores, best first (training calibrates these)."""
        return self.evidence(text, features).scored

    def evidence(self, text: str, features: DocumentFeatures | None = None) -> Evidence:
        """The candidates with raw scores, and every unit's score for every unit category."""
        doc = features if features is not None else featurize(text)
        out: dict[str, list[Scored]] = {c: [] for c in self.categories}
        unit_logits = np.zeros((len(doc.units), len(self._units.categories)), dtype=np.float32)
        if doc.units:
            unit_logits = self._units.logits(doc.unit_rows, binary=False)
            for column, category in enumerate(self._units.categories):
                out[category].extend(_unit_candidates(category, doc, unit_logits[:, column]))
        for pool, (candidates, rows, keys) in doc.pools.items():
            categories = [c for c, p in POOLS.items() if p == pool and c in self._ranker.categories]
            if not categories or not candidates:
                continue
            logits = self._ranker.logits(rows, binary=True)
            for category in categories:
                column = self._ranker.categories.index(category)
                best_of: dict[str, Scored] = {}
                for candidate, key, logit in zip(candidates, keys, logits[:, column].tolist(), strict=True):
                    # one span per distinct wording: a second "Company" can only be a false positive
                    if key and (key not in best_of or logit > best_of[key].logit):
                        n_words = len(text[candidate.start : candidate.end].split())
                        best_of[key] = Scored(category, candidate.start, candidate.end, logit, pool, n_words)
                out[category].extend(_mark_near_duplicates(text, sorted(best_of.values(), key=lambda s: -s.logit)))
        doc_rows = [[t for row in doc.unit_rows for t in row]]
        doc_logits = self._document.logits(doc_rows, binary=False)[0].tolist()
        for category, column in zip(self._document.categories, doc_logits, strict=True):
            out[category] = sorted(
                (replace(s, doc_logit=column) for s in out[category]), key=lambda s: (-s.logit, s.start)
            )
        bounds = [(u.start, u.end) for u in doc.units]
        unit_of = {u.start: i for i, u in enumerate(doc.units)}
        embeddings: dict[int, npt.NDArray[np.float32]] = {}
        if self.encoder is not None:
            dense_units = sorted(
                {unit_of[s.start] for c in self.reranked_categories for s in out[c][:DENSE_TOP] if s.group == "unit"}
            )
            vectors = self.encoder.encode([text[bounds[i][0] : bounds[i][1]] for i in dense_units])
            embeddings = dict(zip(dense_units, vectors, strict=True))
        return Evidence(out, unit_logits, unit_of, bounds, embeddings)

    @property
    def reranked_categories(self) -> list[str]:
        """The categories the second stage reranks (and scores densely): unit categories but dates."""
        return [c for c in self._units.categories if c not in POOLS]

    def dense_scores(self, evidence: Evidence) -> dict[str, list[DenseScore]]:
        """Per reranked category, each candidate's dense scores: nothing (NO_DENSE) but for its
        DENSE_TOP best (as in training, also where a later candidate's unit was embedded for another
        category)."""
        model = self.dense
        out: dict[str, list[DenseScore]] = {}
        if model is None:
            return out
        columns = {c: i for i, c in enumerate(model.categories)}
        banks = {c: i for i, c in enumerate(model.bank_categories)}
        for category in self.reranked_categories:
            column, bank = columns.get(category), banks.get(category)
            row = [DenseScore()] * len(evidence.scored[category])
            for rank, vector in evidence.dense_vectors(category):
                logit = NO_DENSE if column is None else float(vector @ model.weights[:, column] + model.bias[column])
                nearest = (NO_DENSE, NO_DENSE) if bank is None else nearest_similarities(vector, model.labels(bank))
                row[rank] = DenseScore(logit, *nearest)
            out[category] = row
        return out

    # -- decoding ------------------------------------------------------------------------------

    def threshold(self, category: str) -> float:
        """Probability (`Assessment.probabilities`) a second (third...) span of a present category must reach."""
        return self.second_stage.thresholds[category] if self.second_stage else self._thresholds[category]

    def detect(self, category: str) -> float:
        """Presence probability (`Assessment.presence`) from which the category is reported at all."""
        return self.second_stage.detect if self.second_stage else self._detect[category]

    def max_spans(self, category: str) -> int:
        return self._max_spans[category]

    def calibrated(self, category: str, scored: list[Scored]) -> npt.NDArray[np.float64]:
        """Probability that each candidate (sorted best first) matches a CUAD label of `category`."""
        if not scored:
            return np.zeros(0)
        z = calibration_features(scored) @ self._calibration[category]
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)

    def presence(self, category: str, scored: list[Scored], probabilities: list[float]) -> float:
        """Probability that the contract has a clause of `category` at all (drives detection)."""
        z = float(presence_features(scored, probabilities) @ self._presence[category])
        return 1.0 / (1.0 + math.exp(-z))

    def first_stage(self, evidence: Evidence) -> tuple[dict[str, list[float]], dict[str, float]]:
        """Each category's calibrated probabilities and presence, from its own evidence alone."""
        probabilities = {c: self.calibrated(c, s).tolist() for c, s in evidence.scored.items()}
        presence = {c: self.presence(c, s, probabilities[c]) for c, s in evidence.scored.items()}
        return probabilities, presence

    def rerank_inputs(
        self,
        evidence: Evidence,
        probabilities: dict[str, list[float]],
        presence: dict[str, float],
        dense: dict[str, list[DenseScore]] | None = None,
    ) -> dict[str, npt.NDArray[np.float64]]:
        """The second-stage reranker's rows per reranked category (the unit categories but dates).

        `dense`: the candidates' dense scores (`dense_scores`; training passes cross-fitted ones);
        rows carry them when the artefact has a dense model or `dense` is given."""
        if dense is None and self.dense is not None:
            dense = self.dense_scores(evidence)
        return {
            category: rerank_rows(
                self.categories.index(category),
                column,
                evidence.scored[category],
                probabilities[category],
                presence[category],
                self._thresholds[category],
                evidence.unit_logits,
                evidence.unit_of,
                None if dense is None else dense[category],
            )
            for column, category in enumerate(self._units.categories)
            if category not in POOLS
        }

    def presence_inputs(
        self,
        evidence: Evidence,
        probabilities: dict[str, list[float]],
        presence: dict[str, float],
        reranked: dict[str, list[float]],
    ) -> npt.NDArray[np.float64]:
        """The stacked presence model's rows, one per category; `reranked`: the reranker's own output."""
        scored = evidence.scored
        return presence_rows(
            [presence[c] for c in self.categories],
            [probabilities[c] for c in self.categories],
            [reranked.get(c, []) for c in self.categories],
            [scored[c][0].doc_logit if scored[c] else 0.0 for c in self.categories],
            [self._detect[c] for c in self.categories],
        )

    def assess(self, evidence: Evidence) -> Assessment:
        """Calibrate, rerank and decide presence (the second stage, when the artefact has one)."""
        probabilities, presence = self.first_stage(evidence)
        second = self.second_stage
        if second is None:
            present = {c: presence[c] >= self._detect[c] for c in self.categories}
            return Assessment(evidence.scored, probabilities, presence, present)
        rows = self.rerank_inputs(evidence, probabilities, presence)
        reranked = {c: second.reranker.probability(x).tolist() for c, x in rows.items() if len(x)}
        stacked = second.presence.probability(self.presence_inputs(evidence, probabilities, presence, reranked))
        blended = {c: blend(second.blend, q, probabilities[c]) for c, q in reranked.items()}
        stacked_presence = dict(zip(self.categories, stacked.tolist(), strict=True))
        present = {c: stacked_presence[c] >= second.detect for c in self.categories}
        return Assessment(evidence.scored, {**probabilities, **blended}, stacked_presence, present)

    def decide(self, assessment: Assessment) -> list[tuple[Scored, float]]:
        """Threshold and cap each reported category's candidates and drop overlaps."""
        out: list[tuple[Scored, float]] = []
        for category, candidates in assessment.scored.items():
            if assessment.present[category]:
                probabilities = assessment.probabilities[category]
                out.extend(keep_spans(candidates, probabilities, self.threshold(category), self._max_spans[category]))
        return out

    def extend(self, text: str, evidence: Evidence, decided: list[tuple[Scored, float]]) -> list[tuple[Scored, float]]:
        """Grow each decided single-unit candidate into its neighbouring units where the extent model
        says the longer span is the label (`extent`); a growth onto another kept span of the same
        category is not made. Confidences stay: the extent changes where a clause ends, not whether."""
        model = self.extent
        growing = growable(evidence, decided)
        if model is None or not growing:
            return decided
        units = evidence.unit_bounds
        columns = {c: i for i, c in enumerate(self.unit_categories)}
        rows = [
            extent_rows(
                text,
                self.categories.index(decided[position][0].category),
                columns[decided[position][0].category],
                index,
                decided[position][1],
                model.typical_words.get(decided[position][0].category, 1.0),
                units,
                evidence.unit_logits,
            )
            for position, index in growing.items()
        ]
        probabilities = model.trees.probability(np.vstack(rows)).reshape(len(rows), -1)
        choices = {
            position: (index, EXTENTS[choose(row, possible(index, len(units)), model.margin)])
            for (position, index), row in zip(growing.items(), probabilities, strict=True)
        }
        return grow(text, decided, choices, units)

    def extract(self, text: str) -> list[ClauseSpan]:
        """Clauses of the text, sorted by char_start; `text[char_start:char_end]` is each clause verbatim."""
        evidence = self.evidence(text)
        return self.finish(text, self.extend(text, evidence, self.decide(self.assess(evidence))))

    def finish(self, text: str, decided: list[tuple[Scored, float]]) -> list[ClauseSpan]:
        """Decided spans as clauses with normalised answers (also the LLM verify strategy's last step)."""
        start_date = ""
        for category in ("Agreement Date", "Effective Date"):  # the effective date wins when both exist
            dated = [(s, p) for s, p in decided if s.category == category]
            if dated:
                best = max(dated, key=lambda sp: sp[1])[0]
                start_date = answers.normalize_date(text[best.start : best.end]) or start_date
        spans = []
        for s, p in decided:
            answer_format = self.answer_formats.get(s.category, "")
            answer = answers.answer_for(s.category, text, s.start, s.end, answer_format, start_date)
            spans.append(ClauseSpan(s.category, s.start, s.end, round(min(1.0, max(0.0, p)), 4), answer))
        aliases = answers.party_aliases([s.answer for s in spans if s.category == "Parties"])
        for index, span in enumerate(spans):
            alias = answers.clean(text[span.char_start : span.char_end]).lower()
            if span.category == "Parties" and alias in aliases:
                spans[index] = replace(span, answer=aliases[alias])
        spans.sort(key=lambda s: (s.char_start, s.char_end, s.category))
        return spans


@dataclass(frozen=True)
class Dense:
    """Per reranked category, a logistic regression on the unit's sentence embedding, and the
    embeddings of the category's training labels (how close a unit comes to a labelled clause)."""

    weights: npt.NDArray[np.float32]  # (embedding dimension, n categories)
    bias: npt.NDArray[np.float32]
    categories: list[str]
    bank: npt.NDArray[np.float32]  # (n labels, embedding dimension), grouped by bank category
    bank_ptr: npt.NDArray[np.int64]  # bank category i's labels: bank[bank_ptr[i] : bank_ptr[i + 1]]
    bank_categories: list[str]

    def labels(self, index: int) -> npt.NDArray[np.float32]:
        """The embeddings of bank category `index`'s training labels."""
        return self.bank[self.bank_ptr[index] : self.bank_ptr[index + 1]]


def growable(evidence: Evidence, decided: Sequence[tuple[Scored, float]]) -> dict[int, int]:
    """Position in `decided` -> unit index, for the candidates an extent may grow: whole single units
    of the unit categories (not names, dates or titles, nor spans the LLM already extended)."""
    out = {}
    for position, (s, _) in enumerate(decided):
        index = evidence.unit_of.get(s.start)
        if (
            s.group == "unit"
            and s.category not in POOLS
            and index is not None
            and evidence.unit_bounds[index][1] == s.end
        ):
            out[position] = index
    return out


def keep_spans(
    candidates: list[Scored], probabilities: list[float], threshold: float, max_spans: int
) -> list[tuple[Scored, float]]:
    """For a category judged present: its most probable candidate, plus the next non-overlapping ones
    above `threshold`, at most `max_spans` in all."""
    ranked = sorted(zip(candidates, probabilities, strict=True), key=lambda sp: -sp[1])
    kept: list[tuple[Scored, float]] = []
    for s, p in ranked:
        if len(kept) >= max_spans or (kept and p < threshold):
            break
        if not any(s.start < k.end and k.start < s.end for k, _ in kept):
            kept.append((s, p))
    return kept


def _unit_candidates(category: str, doc: DocumentFeatures, logits: npt.NDArray[np.float32]) -> list[Scored]:
    """The best-scoring units of a category."""
    k = min(TOP_K, len(doc.units))
    best = np.argpartition(-logits, k - 1)[:k]
    return [
        Scored(category, doc.units[i].start, doc.units[i].end, float(logits[i]), "unit", doc.n_words[i])
        for i in best.tolist()
    ]


def _mark_near_duplicates(text: str, ranked: list[Scored]) -> list[Scored]:
    """Flag span candidates whose words mostly repeat a better candidate's ('Company' / 'The Company')."""
    out: list[Scored] = []
    kept_words: list[set[str]] = []
    for s in ranked[: TOP_K * 2]:
        ws = label_words(text[s.start : s.end])
        duplicate = any(len(ws & w) / len(ws | w) >= 0.5 for w in kept_words if ws | w)
        kept_words.append(ws)
        out.append(replace(s, near_duplicate=duplicate))
    return out


@dataclass(frozen=True)
class DocumentFeatures:
    """Everything the model reads from a text, before any weights: units and span candidates."""

    units: list[Unit]
    unit_rows: list[list[str]]
    n_words: list[int]
    pools: dict[str, tuple[list[Candidate], list[list[str]], list[str]]]


def featurize(text: str) -> DocumentFeatures:
    """Segment, generate candidates and compute feature strings (weights-free, cached by training)."""
    units = segment(text)
    pieces = [text[u.start : u.end] for u in units]
    rows = [terms(piece, heading) for piece, heading in zip(pieces, headings(text, units), strict=True)]
    pools: dict[str, tuple[list[Candidate], list[list[str]], list[str]]] = {}
    generators = {"party": party_candidates, "title": title_candidates, "date": date_candidates}
    for pool, generate in generators.items():
        candidates = _unique(generate(text))
        # the scorer's words: "The Company" and "Company." are one candidate, kept once
        keys = [" ".join(sorted(label_words(text[c.start : c.end]))) for c in candidates]
        pools[pool] = (candidates, candidate_features(text, candidates), keys)
    return DocumentFeatures(units, rows, [len(p.split()) for p in pieces], pools)


def _unique(candidates: list[Candidate]) -> list[Candidate]:
    seen: set[tuple[int, int]] = set()
    out = []
    for candidate in sorted(candidates, key=lambda c: (c.start, c.end)):
        if (candidate.start, candidate.end) not in seen:
            seen.add((candidate.start, candidate.end))
            out.append(candidate)
    return out


class EmbeddedSelector:
    """The embedded model as the OpenAI backend's retrieval selector (a `chunking.PassageSelector`).

    A passage scores, for a category, the calibrated probability of the model's best candidate of that
    category inside it, so the LLM reads the passages the CUAD-trained model ranks highest. With
    `min_presence` > 0, a category the model judges absent from the whole contract (presence below it)
    scores 0 everywhere and is not asked at all: fewer tokens, at the cost of what the model misses.
    """

    def __init__(self, model: EmbeddedExtractor, min_presence: float = 0.0) -> None:
        self.model = model
        self.min_presence = min_presence

    def __call__(self, text: str, pieces: Sequence[Piece], categories: Sequence[str]) -> list[list[float]]:
        assessment = self.model.assess(self.model.evidence(text))
        starts = [p.start for p in pieces]
        rows: list[list[float]] = []
        for category in categories:
            row = [0.0] * len(pieces)
            candidates = assessment.scored.get(category, [])
            probabilities = assessment.probabilities.get(category, [])
            if candidates and assessment.presence[category] >= self.min_presence:
                for candidate, probability in zip(candidates, probabilities, strict=True):
                    # every passage the candidate touches (a clause may straddle a passage boundary)
                    first = max(0, bisect.bisect_right(starts, candidate.start) - 1)
                    for index in range(first, len(pieces)):
                        piece = pieces[index]
                        if piece.start >= candidate.end:
                            break
                        if piece.end > candidate.start:
                            row[index] = max(row[index], probability, PROBABILITY_FLOOR)
            rows.append(row)
        return rows
