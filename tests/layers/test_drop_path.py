"""keras_vit.layers.drop_path: whole samples dropped, the rest rescaled, in training only."""

import keras
import numpy as np
import pytest

from keras_vit.layers import DropPath

from .layer_checks import assert_round_trip, cases_for, check_case


@pytest.mark.parametrize("case", cases_for(DropPath), ids=str)
def test_shared_layer_checks(case, tmp_path):
    check_case(case, tmp_path)


def test_drop_path():
    x = np.ones((400, 3), "float32")
    layer = DropPath(0.25, seed=1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    values = np.unique(out)
    np.testing.assert_allclose(values, [0.0, 1 / 0.75], rtol=1e-6)  # dropped or rescaled
    assert np.all(out.min(axis=1) == out.max(axis=1))  # whole samples, never parts
    assert 0.15 < np.mean(out[:, 0] == 0) < 0.35
    assert_round_trip(layer, x)
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_drop_path_is_built_at_construction():
    """Weightless, so built at once like `keras.layers.Dropout` (`Model.quantize` needs built layers)."""
    for rate in (0.0, 0.25):
        layer = DropPath(rate)
        assert layer.built and layer.weights == []
