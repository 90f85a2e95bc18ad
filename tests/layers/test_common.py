"""keras_vit.layers.common: `positive_int`, `pair` and `dense_over_tokens`."""

import re

import keras
import numpy as np
import pytest

from keras_vit.layers import dense_over_tokens, pair
from keras_vit.layers.common import positive_int


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


@pytest.mark.parametrize(
    "bad",
    [
        32.0,
        2.5,
        (2.5, 3),
        (32, 32.0),
        np.float64(4),
        np.array([4.0, 4.0]),
        np.True_,
        None,
        "32",
        (4,),
        [],
        -1,
    ],
    ids=repr,
)
def test_pair_refuses_floats_and_other_non_sizes_with_a_value_error(bad):
    """A float is refused, not truncated (`(2.5, 3)` is no `(2, 3)`), even an integral one; the message names
    the argument and the value."""
    with pytest.raises(ValueError, match=r"^`size` must be a positive int or a pair of them, got .+\.$"):
        pair(bad, "size")


def test_positive_int():
    assert positive_int(4, "patch_size") == 4
    for value in (np.int64(4), np.uint8(4), np.array(4)):
        result = positive_int(value, "patch_size")
        assert result == 4 and type(result) is int
    for bad in (0, -2, 2.5, 4.0, True, np.True_, None, "4", (4,)):
        message = f"`patch_size` must be a positive int, got {bad!r}."
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            positive_int(bad, "patch_size")
