"""keras_vit.layers.transformer_block: shapes, attention scores, exact GELU, dropout in training only."""

import keras
import numpy as np
import pytest

from keras_vit.layers import TransformerBlock

from .layer_checks import assert_round_trip, cases_for, check_case


@pytest.mark.parametrize("case", cases_for(TransformerBlock), ids=str)
def test_shared_layer_checks(case, tmp_path):
    check_case(case, tmp_path)


def test_transformer_block_and_attention_scores():
    tokens = np.random.default_rng(2).normal(size=(3, 5, 16)).astype("float32")
    block = TransformerBlock(num_heads=4, projection_dim=16, mlp_dim=32)
    out = keras.ops.convert_to_numpy(block(tokens))
    assert out.shape == tokens.shape
    out2, scores = block(tokens, return_attention_scores=True)
    scores = keras.ops.convert_to_numpy(scores)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out2), out, atol=1e-6)
    assert scores.shape == (3, 4, 5, 5)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    assert_round_trip(block, tokens)


def test_transformer_block_uses_exact_gelu_and_checks_heads():
    block = TransformerBlock(num_heads=2, projection_dim=8, mlp_dim=16)
    x = np.linspace(-3, 3, 16, dtype="float32")
    exact = keras.ops.convert_to_numpy(keras.activations.gelu(x, approximate=False))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block.mlp_hidden.activation(x)), exact, atol=1e-6)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        TransformerBlock(num_heads=3, projection_dim=8, mlp_dim=16)


def test_transformer_block_dropout_only_in_training():
    tokens = np.random.default_rng(3).normal(size=(8, 5, 16)).astype("float32")
    block = TransformerBlock(4, 16, 32, dropout=0.5, drop_path=0.5)
    a = keras.ops.convert_to_numpy(block(tokens, training=False))
    np.testing.assert_allclose(a, keras.ops.convert_to_numpy(block(tokens, training=False)))
    assert not np.allclose(a, keras.ops.convert_to_numpy(block(tokens, training=True)))


def test_query_tokens_computes_only_the_first_tokens():
    """`query_tokens=k` returns the full block's first k tokens (each attended over every token), and their
    attention weights."""
    tokens = np.random.default_rng(4).normal(size=(3, 7, 16)).astype("float32")
    block = TransformerBlock(num_heads=4, projection_dim=16, mlp_dim=32)
    full, full_scores = block(tokens, return_attention_scores=True)
    for kept in (1, 2):
        out, scores = block(tokens, query_tokens=kept, return_attention_scores=True)
        assert tuple(out.shape) == (3, kept, 16) and tuple(scores.shape) == (3, 4, kept, 7)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(full)[:, :kept], atol=1e-5
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(scores),
            keras.ops.convert_to_numpy(full_scores)[:, :, :kept],
            atol=1e-6,
        )
