"""keras_vit.layers.common: `pair` and `dense_over_tokens`."""

import keras
import numpy as np
import pytest

from keras_vit.layers import dense_over_tokens, pair


def test_dense_over_tokens_is_the_dense_layer_on_3d_tokens():
    tokens = np.random.default_rng(0).normal(size=(3, 5, 8)).astype("float32")
    dense = keras.layers.Dense(6, activation="gelu")
    expected = keras.ops.convert_to_numpy(dense(tokens))  # the layer on the 3-D tensor
    out = keras.ops.convert_to_numpy(dense_over_tokens(dense, keras.ops.convert_to_tensor(tokens)))
    assert out.shape == (3, 5, 6)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # In a functional graph with a dynamic batch, the static token count carries through.
    inputs = keras.Input((5, 8))
    model = keras.Model(inputs, dense_over_tokens(dense, inputs))
    assert model.output_shape == (None, 5, 6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(tokens[:2])), expected[:2], rtol=1e-5, atol=1e-6
    )


def test_pair():
    assert pair(4, "size") == (4, 4)
    assert pair([3, 5], "size") == (3, 5) and isinstance(pair([3, 5], "size"), tuple)
    for bad in (0, (2, 0), (1, 2, 3), True, (True, 2)):
        with pytest.raises(ValueError, match="`size` must be a positive int"):
            pair(bad, "size")


def test_pair_takes_numpy_integers_and_returns_python_ints():
    for value, expected in [
        (np.int64(32), (32, 32)),
        (np.uint8(4), (4, 4)),
        ((np.int32(3), 5), (3, 5)),
        (np.array([6, 2]), (6, 2)),
    ]:
        result = pair(value, "size")
        assert result == expected and all(type(v) is int for v in result)
    with pytest.raises(ValueError, match="`size` must be a positive int"):
        pair(np.int64(0), "size")
