"""Embedded models that never saw a given contract: the cross-validation fold models, cached on disk.

Anything that uses the embedded model on CUAD contracts and is then scored on them (cross-validation,
the OpenAI backend's retrieval selector in `scripts.eval_llm`, `tokens_report`'s retrieval recall)
must use the model of the contract's fold, trained on the other folds, or it is scored on its own
training data. Training one fold takes a few minutes, so each is kept under
~/.cache/clausework/folds/, keyed by the prepared data, the code and the parameters that make it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.llm.embedded import EmbeddedExtractor
from training.data import CACHE, DEFAULT_CUAD, corpus_sha256, folds
from training.model import Params, Prepared, fit, quantize
from training.prepare import answer_formats, load_prepared

log = logging.getLogger("training")
ROOT = Path(__file__).resolve().parent.parent
_SOURCES = ["training/model.py", "services/llm/embedded.py"]  # the code that shapes the weights


@dataclass
class FoldModels:
    """The k fold models of the CUAD dev split, trained on first use."""

    cuad_dir: Path = DEFAULT_CUAD
    k: int = 5
    params: Params = field(default_factory=Params)
    docs: list[Prepared] = field(init=False)
    categories: list[str] = field(init=False)
    assignment: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.docs, self.categories = load_prepared(self.cuad_dir, self.params)
        contracts = [d.contract for d in self.docs]
        self.assignment = dict(zip((c.id for c in contracts), folds(contracts, self.k), strict=True))
        digest = hashlib.sha256(corpus_sha256(contracts).encode())
        digest.update(repr((self.k, self.params)).encode())
        for source in _SOURCES:
            digest.update((ROOT / source).read_bytes())
        self._cache = CACHE.parent / "folds" / digest.hexdigest()[:16]

    def fold_of(self, contract_id: str) -> int:
        return self.assignment[contract_id]

    def model(self, fold: int) -> EmbeddedExtractor:
        """The model trained on every fold but `fold` (quantised, as shipped)."""
        directory = self._cache / f"fold-{fold}"
        if (directory / "metadata.json").exists():
            return EmbeddedExtractor.load(directory)
        started = time.monotonic()
        train = [d for d in self.docs if self.assignment[d.contract.id] != fold]
        arrays, metadata = fit(train, self.categories, answer_formats(self.cuad_dir), self.params)
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
        return EmbeddedExtractor(packed, metadata)

    def model_for(self, contract_id: str) -> EmbeddedExtractor:
        """A model that never saw `contract_id` (nor its filer's other contracts)."""
        return self.model(self.fold_of(contract_id))
