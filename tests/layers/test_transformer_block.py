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


@pytest.mark.parametrize("locality_attention", [False, True])
def test_symbolic_call_returns_what_the_eager_call_does(locality_attention):
    """Functional graphs get the eager call's structure, shapes and dtype: `(output, scores)`
    with `return_attention_scores`, `query_tokens` tokens with `query_tokens`."""
    tokens = np.random.default_rng(5).normal(size=(2, 7, 16)).astype("float32")
    block = TransformerBlock(4, 16, 32, locality_attention=locality_attention)
    inputs = keras.Input((7, 16))
    for kwargs, (out_shape, scores_shape) in [
        ({}, ((2, 7, 16), (2, 4, 7, 7))),
        ({"query_tokens": 2}, ((2, 2, 16), (2, 4, 2, 7))),
        ({"query_tokens": 9}, ((2, 7, 16), (2, 4, 7, 7))),  # sliced as Python slices: all 7
    ]:
        eager_out, eager_scores = block(tokens, return_attention_scores=True, **kwargs)
        assert (tuple(eager_out.shape), tuple(eager_scores.shape)) == (out_shape, scores_shape)
        out, scores = block(inputs, return_attention_scores=True, **kwargs)
        assert tuple(out.shape) == (None,) + out_shape[1:]
        assert tuple(scores.shape) == (None,) + scores_shape[1:]
        assert tuple(block(inputs, **kwargs).shape) == (None,) + out_shape[1:]
        model = keras.Model(inputs, [out, scores])
        assert model.output_shape == [(None,) + out_shape[1:], (None,) + scores_shape[1:]]
        model_out, model_scores = model(tokens)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(model_out), keras.ops.convert_to_numpy(eager_out), atol=1e-5
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(model_scores), keras.ops.convert_to_numpy(eager_scores), atol=1e-6
        )


def test_symbolic_dtype_under_mixed_precision():
    block = TransformerBlock(2, 8, 16, dtype="mixed_bfloat16")
    eager_out, eager_scores = block(np.zeros((1, 5, 8), "float32"), return_attention_scores=True)
    out, scores = block(keras.Input((5, 8)), return_attention_scores=True)
    assert keras.backend.standardize_dtype(eager_out.dtype) == out.dtype == "bfloat16"
    assert keras.backend.standardize_dtype(eager_scores.dtype) == scores.dtype == "bfloat16"


def test_build_builds_every_sublayer_and_quantizes():
    """`Model.quantize` refuses unbuilt sublayers, weightless `DropPath` included; a call would build
    them, so the model is quantized before any."""

    def block_model():
        inputs = keras.Input((5, 16))
        return keras.Model(inputs, TransformerBlock(2, 16, 32, drop_path=0.1, name="block")(inputs))

    model, reference = block_model(), block_model()
    block = model.get_layer("block")
    assert all(layer.built for layer in block._flatten_layers())
    reference.set_weights(model.get_weights())
    model.quantize("int8")
    assert block.mlp_hidden.quantization_mode == "int8"
    tokens = np.random.default_rng(6).normal(size=(3, 5, 16)).astype("float32")
    out = keras.ops.convert_to_numpy(model(tokens))
    assert out.shape == (3, 5, 16) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(reference(tokens)), atol=0.1)


def test_vit_quantizes_to_int8():
    from keras_vit import build_vit

    model, reference = build_vit("vit_micro"), build_vit("vit_micro")
    head = reference.get_layer("head")  # zero-initialized: random weights make the logits differ
    head.kernel.assign(np.random.default_rng(7).normal(size=head.kernel.shape).astype("float32"))
    model.set_weights(reference.get_weights())
    model.quantize("int8")  # before any call, which would build the sublayers
    images = np.random.default_rng(8).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    logits = keras.ops.convert_to_numpy(model(images, training=False))
    expected = keras.ops.convert_to_numpy(reference(images, training=False))
    assert logits.shape == (2, 10) and np.all(np.isfinite(logits))
    np.testing.assert_allclose(logits, expected, atol=0.1 * np.abs(expected).max())
