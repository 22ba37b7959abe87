"""Train the embedded model on the whole CUAD dev split and write the committed artefact.

    python -m training.train [--cuad-dir ../shared/cuad] [--model-dir clausework/model/cuad-sparse-lr]

Writes model.npz (int8-quantised weights, vocabularies) and metadata.json (version, categories,
calibration, thresholds, sha256 of labels.jsonl and of the parsed training texts, and the
cross-validated metrics from crossval.json when it was computed on the same labels). liblinear and the
fold assignment are seeded, but a rebuilt feature cache has given slightly different weights from the
same data (docs/quality.md, Reproduce).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from clausework.model.embedded import MODEL_DIR, EmbeddedExtractor
from training.data import DEFAULT_CUAD, corpus_sha256, labels_sha256
from training.model import Params, fit, quantize
from training.prepare import answer_formats, load_prepared

log = logging.getLogger("training")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuad-dir", type=Path, default=DEFAULT_CUAD)
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    params = Params()
    docs, cats = load_prepared(args.cuad_dir, params)
    arrays, metadata = fit(docs, cats, answer_formats(args.cuad_dir), params)
    packed = quantize(arrays)
    args.model_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.model_dir / "model.npz"
    np.savez_compressed(model_path, allow_pickle=False, **packed)
    metadata["training"] = {
        "command": "python -m training.train",
        "contracts": len(docs),
        "labels_sha256": labels_sha256(args.cuad_dir),
        "texts_sha256": corpus_sha256([d.contract for d in docs]),
        "parser": "pymupdf-blocks/1",
        "seconds": round(time.monotonic() - started),
    }
    metadata["model_npz_sha256"] = hashlib.sha256(model_path.read_bytes()).hexdigest()
    crossval = args.model_dir / "crossval.json"
    if crossval.exists():
        record = json.loads(crossval.read_text(encoding="utf-8"))
        if record.get("labels_sha256") == metadata["training"]["labels_sha256"]:
            metadata["metrics"] = {k: record[k] for k in ("command", "folds", "detection", "spans")}
    (args.model_dir / "metadata.json").write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    EmbeddedExtractor.load(args.model_dir)  # the artefact must load as shipped
    log.info("wrote %s (%d bytes) in %.0f s", model_path, model_path.stat().st_size, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
