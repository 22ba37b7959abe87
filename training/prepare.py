"""Prepared (featurised + labelled) corpus, cached on disk keyed by the code that produces it.

Featurising 419 contracts takes about a minute; the cache makes repeated runs start in seconds and
is invalidated whenever segmentation, candidate generation or feature code changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import time
from pathlib import Path

from training.data import CACHE, DEFAULT_CUAD, Contract, categories, corpus_sha256, load_corpus
from training.model import Params, Prepared, prepare

log = logging.getLogger("training")
ROOT = Path(__file__).resolve().parent.parent
_SOURCES = [
    "services/llm/segmentation.py",
    "services/llm/model_features.py",
    "services/llm/model_spans.py",
    "services/llm/model_ranker.py",
    "services/llm/embedded.py",
    "training/model.py",
]


def answer_formats(cuad_dir: Path) -> dict[str, str]:
    data = json.loads((cuad_dir / "categories.json").read_text(encoding="utf-8"))
    return {c["name"]: c["answer_format"] for c in data}


def load_prepared(cuad_dir: Path = DEFAULT_CUAD, params: Params | None = None) -> tuple[list[Prepared], list[str]]:
    """All contracts, featurised and labelled (from the cache when the code and data are unchanged)."""
    params = params or Params()
    contracts: list[Contract] = load_corpus(cuad_dir)
    cats = categories(cuad_dir)
    digest = hashlib.sha256(corpus_sha256(contracts).encode())
    for source in _SOURCES:
        digest.update((ROOT / source).read_bytes())
    digest.update(repr((params.fragment_containment, params.fragment_min_words)).encode())
    cached = CACHE.parent / f"prepared-{digest.hexdigest()[:16]}.pkl"
    if cached.exists():
        with cached.open("rb") as handle:
            docs: list[Prepared] = pickle.load(handle)
        return docs, cats
    started = time.monotonic()
    docs = [prepare(c, cats, params) for c in contracts]
    log.info("featurised %d contracts in %.0f s", len(docs), time.monotonic() - started)
    for old in CACHE.parent.glob("prepared-*.pkl"):
        old.unlink()
    with cached.open("wb") as handle:
        pickle.dump(docs, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return docs, cats
