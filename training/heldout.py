"""Embedded models that never saw a given contract: the cross-validation fold models, cached on disk.

Anything that uses the embedded model on CUAD contracts and is then scored on them (cross-validation,
the OpenAI backend's retrieval selector in `scripts.eval_llm`, `tokens_report`'s retrieval recall)
must use the model of the contract's fold, trained on the other folds, or it is scored on its own
training data. Training one fold takes a few minutes, so each is kept under
~/.cache/clausework/folds/, keyed by `fold_cache_key`: the feature cache's key (`features_key`: texts,
labels and every source that shapes features and weights), the parameters and the fold assignment.
Folds group contracts by `training.groups.cv_groups` (same filer, or shared label text).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clausework.model.embedded import EmbeddedExtractor
from training.data import CACHE, DEFAULT_CUAD, Contract
from training.dense import CachedEncoder
from training.groups import cv_folds, cv_groups
from training.model import Params, Prepared, fit, quantize
from training.prepare import ROOT, answer_formats, features_key, load_prepared

log = logging.getLogger("training")


def fold_cache_key(
    contracts: Sequence[Contract], k: int, params: Params, assignment: Sequence[int], root: Path = ROOT
) -> str:
    """What a fold model depends on: the features (and the code that shapes them), params, the folds."""
    digest = hashlib.sha256(features_key(contracts, params, root).encode())
    digest.update(repr((k, params)).encode())
    digest.update(json.dumps(list(assignment)).encode())
    return digest.hexdigest()[:16]


@dataclass
class FoldModels:
    """The k fold models of the CUAD dev split, trained on first use."""

    cuad_dir: Path = DEFAULT_CUAD
    k: int = 5
    params: Params = field(default_factory=Params)
    docs: list[Prepared] = field(init=False)
    categories: list[str] = field(init=False)
    groups: dict[str, str] = field(init=False)
    assignment: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.docs, self.categories = load_prepared(self.cuad_dir, self.params)
        contracts = [d.contract for d in self.docs]
        self.groups = dict(zip((c.id for c in contracts), cv_groups(contracts), strict=True))
        assigned = cv_folds(contracts, self.k)
        self.assignment = dict(zip((c.id for c in contracts), assigned, strict=True))
        self._cache = CACHE.parent / "folds" / fold_cache_key(contracts, self.k, self.params, assigned)
        self._encoder = CachedEncoder()  # a held-out contract's dense units, embedded once for all runs

    def fold_of(self, contract_id: str) -> int:
        return self.assignment[contract_id]

    def model(self, fold: int) -> EmbeddedExtractor:
        """The model trained on every fold but `fold` (quantised, as shipped)."""
        directory = self._cache / f"fold-{fold}"
        if (directory / "metadata.json").exists():
            return EmbeddedExtractor.load(directory, self._encoder)
        started = time.monotonic()
        train = [d for d in self.docs if self.assignment[d.contract.id] != fold]
        arrays, metadata = fit(
            train, self.categories, answer_formats(self.cuad_dir), self.params, encoder=self._encoder
        )
        packed = quantize(arrays)
        # written aside and renamed into place whole, so a concurrent run never reads half a model
        partial = directory.with_name(f".{directory.name}-{os.getpid()}")
        partial.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(partial / "model.npz", allow_pickle=False, **packed)
        (partial / "metadata.json").write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
        try:
            partial.rename(directory)
        except OSError:  # another run finished the same fold first: same data, same weights
            shutil.rmtree(partial, ignore_errors=True)
        log.info("trained fold %d/%d in %.0f s", fold + 1, self.k, time.monotonic() - started)
        return EmbeddedExtractor(packed, metadata, self._encoder)

    def model_for(self, contract_id: str) -> EmbeddedExtractor:
        """A model that never saw `contract_id` (nor the other contracts of its group)."""
        return self.model(self.fold_of(contract_id))
