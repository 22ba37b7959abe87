"""Prepared (featurised + labelled) corpus, cached on disk keyed by the code that produces it.

Featurising 419 contracts takes about a minute; the cache makes repeated runs start in seconds and
is invalidated whenever segmentation, candidate generation or feature code changes: `features_key`
hashes the parser texts and labels, every source in `FEATURE_SOURCES` and the labelling parameters.
`training.heldout` keys its fold models on the same `features_key`, so the two caches cannot disagree
about what shapes the features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import time
from collections.abc import Sequence
from pathlib import Path

from training.data import CACHE, DEFAULT_CUAD, Contract, categories, corpus_sha256, load_corpus
from training.model import Params, Prepared, prepare

log = logging.getLogger("training")
ROOT = Path(__file__).resolve().parent.parent
# The code that turns a parser text and its labels into features, labels and weights (globs are
# expanded, so a new clausework/model/*.py module is covered without editing this list).
FEATURE_SOURCES = (
    "clausework/model/*.py",  # segmentation, features, spans, ranker, embedded
    "training/model.py",
    "training/second_stage.py",
    "training/extent.py",
    "training/dense.py",
    "clausework/model/minilm-l6/encoder.npz",  # the sentence encoder's weights
    "clausework/model/minilm-l6/tokenizer.json",
    "training/data.py",  # words(), jaccard() and the inner-CV folds()
    "training/groups.py",  # the inner-CV groups
)


def feature_source_files(root: Path = ROOT) -> list[Path]:
    """FEATURE_SOURCES as files, globs expanded in sorted order."""
    files: list[Path] = []
    for pattern in FEATURE_SOURCES:
        matched = sorted(root.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"no feature source matches {pattern} under {root}")
        files.extend(matched)
    return files


def features_key(contracts: Sequence[Contract], params: Params, root: Path = ROOT) -> str:
    """Hex digest of everything that shapes the prepared features: texts, labels, code, parameters."""
    digest = hashlib.sha256(corpus_sha256(list(contracts)).encode())
    for path in feature_source_files(root):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    digest.update(repr((params.fragment_containment, params.fragment_min_words)).encode())
    return digest.hexdigest()


def answer_formats(cuad_dir: Path) -> dict[str, str]:
    data = json.loads((cuad_dir / "categories.json").read_text(encoding="utf-8"))
    return {c["name"]: c["answer_format"] for c in data}


def load_prepared(cuad_dir: Path = DEFAULT_CUAD, params: Params | None = None) -> tuple[list[Prepared], list[str]]:
    """All contracts, featurised and labelled (from the cache when the code and data are unchanged)."""
    params = params or Params()
    contracts: list[Contract] = load_corpus(cuad_dir)
    cats = categories(cuad_dir)
    cached = CACHE.parent / f"prepared-{features_key(contracts, params)[:16]}.pkl"
    if cached.exists():
        with cached.open("rb") as handle:
            docs: list[Prepared] = pickle.load(handle)
        return docs, cats
    started = time.monotonic()
    docs = [prepare(c, cats, params) for c in contracts]
    log.info("featurised %d contracts in %.0f s", len(docs), time.monotonic() - started)
    for old in CACHE.parent.glob("prepared-*.pkl"):
        old.unlink(missing_ok=True)
    partial = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    with partial.open("wb") as handle:
        pickle.dump(docs, handle, protocol=pickle.HIGHEST_PROTOCOL)
    partial.replace(cached)  # renamed into place whole: a concurrent run never unpickles half a file
    return docs, cats
