"""The numpy MiniLM encoder against sentence-transformers' own embeddings of the same model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clausework.model.encoder import MAX_TOKENS, default_encoder, quantize

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"


def test_embeddings_match_sentence_transformers() -> None:
    """Reference: sentence-transformers with torch on the float weights, cut at 64 tokens like ours
    (see the file's "source"); ours uses int8 weights and the tanh GELU."""
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    assert MAX_TOKENS == 64  # the reference was computed with this cut
    ours = default_encoder().encode(reference["texts"])
    theirs = np.asarray(reference["embeddings"], dtype=np.float32)
    cosine = (ours * theirs).sum(axis=1)
    assert cosine.min() > 0.999, cosine
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_a_text_embeds_the_same_alone_or_batched_with_longer_ones() -> None:
    """Padding must not leak into the pooled vector or the attention."""
    encoder = default_encoder()
    short = "Either party may terminate this Agreement upon thirty days notice."
    longer = [short, "The Supplier shall indemnify the Customer against all losses " * 8, "Notices."]
    alone = encoder.encode([short])[0]
    batched = encoder.encode(longer)[0]
    np.testing.assert_allclose(alone, batched, atol=1e-5)
    assert encoder.encode([]).shape == (0, encoder.dimension)


def test_texts_are_cut_at_max_tokens() -> None:
    encoder = default_encoder()
    head = " ".join(["indemnify"] * 200)
    assert len(encoder.token_ids([head])[0]) == MAX_TOKENS
    np.testing.assert_allclose(encoder.encode([head])[0], encoder.encode([head + " governing law"])[0], atol=1e-6)


def test_quantize_keeps_one_scale_per_output_column() -> None:
    weights = np.array([[1.0, -0.01], [-0.5, 0.02]], dtype=np.float32)
    q, scale = quantize(weights, axis=1)
    assert q.dtype == np.int8 and scale.shape == (1, 2)
    np.testing.assert_allclose(q * scale, weights, rtol=0.01)
