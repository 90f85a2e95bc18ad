"""keras_vit.layers.attention: Locality Self-Attention against a numpy reference."""

import keras
import numpy as np
import pytest

from keras_vit.layers import LocalitySelfAttention, TransformerBlock

from .layer_checks import assert_round_trip, cases_for, check_case


@pytest.mark.parametrize("case", cases_for(LocalitySelfAttention), ids=str)
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
