"""keras_vit.layers.attention: Locality Self-Attention against a numpy reference; head-major attention against
Keras' own."""

import keras
import numpy as np
import pytest

from keras_vit.layers import HeadMajorAttention, LocalitySelfAttention, TransformerBlock

from .layer_checks import assert_round_trip, cases_for, check_case


@pytest.mark.parametrize("case", cases_for(LocalitySelfAttention) + cases_for(HeadMajorAttention), ids=str)
def test_shared_layer_checks(case, tmp_path):
    check_case(case, tmp_path)


def test_locality_self_attention():
    """No token attends to itself, a learned temperature, the rest Keras' attention (numpy reference)."""
    tokens = np.random.default_rng(6).normal(size=(2, 5, 16)).astype("float32")
    block = TransformerBlock(num_heads=2, projection_dim=16, mlp_dim=32, locality_attention=True)
    out = keras.ops.convert_to_numpy(block(tokens))
    out2, scores = block(tokens, return_attention_scores=True)  # the explicit-softmax path
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out2), out, atol=1e-5)
    scores = keras.ops.convert_to_numpy(scores)
    attention = block.attention
    assert isinstance(attention, LocalitySelfAttention)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(attention.log_temperature), -0.5 * np.log(8), rtol=1e-6
    )
    assert "log_temperature" in [w.path.rsplit("/", 1)[-1] for w in block.trainable_weights]
    attention.log_temperature.assign(0.3)  # the scores must follow the weight, not Keras' 1/sqrt(8)
    scores = keras.ops.convert_to_numpy(block(tokens, return_attention_scores=True)[1])
    x = keras.ops.convert_to_numpy(block.attention_norm(tokens))
    q = (
        np.einsum("btd,dnh->btnh", x, attention.query_dense.kernel.numpy())
        + attention.query_dense.bias.numpy()
    )
    k = np.einsum("btd,dnh->btnh", x, attention.key_dense.kernel.numpy()) + attention.key_dense.bias.numpy()
    logits = np.einsum("btnh,bsnh->bnts", q, k) * np.exp(0.3)
    logits[:, :, np.arange(5), np.arange(5)] = -np.inf
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(scores, expected / expected.sum(-1, keepdims=True), atol=1e-5)
    assert np.diagonal(scores, axis1=2, axis2=3).max() < 1e-8
    assert block.get_config()["locality_attention"] is True
    assert_round_trip(block, tokens)
    config = TransformerBlock(2, 16, 32).get_config()
    del config["locality_attention"]  # files saved before the option existed
    assert TransformerBlock.from_config(config).locality_attention is False


def test_head_major_attention_is_keras_attention():
    """Keras' MultiHeadAttention with the same weights: outputs, attention scores and gradients agree."""
    rng = np.random.default_rng(3)
    query = rng.normal(size=(3, 7, 12)).astype("float32")
    value = rng.normal(size=(3, 5, 12)).astype("float32")  # cross-attention too: other lengths
    ours, theirs = HeadMajorAttention(3, 4), keras.layers.MultiHeadAttention(3, 4)
    ours(query, value), theirs(query, value)
    assert [w.path.split("/", 1)[1] for w in ours.weights] == [
        w.path.split("/", 1)[1] for w in theirs.weights
    ]
    theirs.set_weights([rng.normal(size=w.shape).astype("float32") for w in theirs.weights])
    ours.set_weights(theirs.get_weights())
    for layer_out, keras_out in zip(
        ours(query, value, return_attention_scores=True), theirs(query, value, return_attention_scores=True)
    ):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer_out), keras.ops.convert_to_numpy(keras_out), atol=1e-5
        )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(query, value)),
        keras.ops.convert_to_numpy(theirs(query, value)),
        atol=1e-5,
    )
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gradients = []
        for layer in (ours, theirs):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(query, value) ** 2)
            gradients.append(tape.gradient(loss, layer.trainable_variables))
        for a, b in zip(*gradients):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


def test_head_major_attention_drops_weights_only_in_training():
    tokens = np.random.default_rng(4).normal(size=(2, 6, 8)).astype("float32")
    layer = HeadMajorAttention(2, 4, dropout=0.5, seed=1)
    _, kept = layer(tokens, tokens, return_attention_scores=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.sum(kept, -1)), 1.0, rtol=1e-5)
    trained = keras.ops.convert_to_numpy(layer(tokens, tokens, training=True))
    assert not np.allclose(trained, keras.ops.convert_to_numpy(layer(tokens, tokens)))


def test_transformer_blocks_attend_head_major():
    assert isinstance(TransformerBlock(2, 8, 16).attention, HeadMajorAttention)


_FLOAT16_ON_JAX = """
import jax
import numpy as np
from keras_vit.layers import HeadMajorAttention
rng = np.random.default_rng(5)
tokens = rng.normal(size=(2, 6, 8)).astype("float32")
exact, half = HeadMajorAttention(2, 4), HeadMajorAttention(2, 4, dtype="mixed_float16")
exact(tokens, tokens), half(tokens, tokens)
exact.set_weights([rng.normal(size=w.shape).astype("float32") for w in exact.weights])
half.set_weights(exact.get_weights())
jitted = [jax.jit(lambda t, layer=layer: layer(t, t))(tokens) for layer in (half, exact)]  # as fit and predict run
print("largest difference", float(np.max(np.abs(np.asarray(jitted[0], "float32") - np.asarray(jitted[1])))))
"""


def test_head_major_attention_runs_in_float16_on_jaxs_cpu():
    """Keras' attention on JAX asks XLA for a float16 product with a float32 result, which its CPU backend
    refuses (`ValueError: The precision 'F16_F16_F32' is not supported`): a ViT under `mixed_float16` failed
    there. It computes the products itself there, within float16's precision of float32."""
    from conftest import run_python

    result = run_python(_FLOAT16_ON_JAX, backend="jax")
    assert result.returncode == 0, result.stderr[-2000:]
    difference = float(result.stdout.strip().splitlines()[-1].split()[-1])
    assert 0 < difference < 0.05
