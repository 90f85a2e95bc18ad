"""keras_vit.layers.norm: LayerNorm is Keras' LayerNormalization without a NEG op."""

import importlib.util

import keras
import numpy as np
import pytest
from conftest import run_python

from keras_vit.layers import LayerNorm

from .layer_checks import cases_for, check_case


@pytest.mark.parametrize("case", cases_for(LayerNorm), ids=str)
def test_shared_layer_checks(case, tmp_path):
    check_case(case, tmp_path)


def test_layer_norm_is_keras_layer_normalization_bit_for_bit():
    rng = np.random.default_rng(0)
    tokens = (rng.normal(size=(3, 9, 16)) * 4 + 2).astype("float32")
    reference = keras.layers.LayerNormalization(epsilon=1e-6)
    reference.build(tokens.shape)
    reference.set_weights([rng.normal(size=16).astype("float32"), rng.normal(size=16).astype("float32")])
    layer = LayerNorm(epsilon=1e-6)
    layer.build(tokens.shape)
    layer.set_weights(reference.get_weights())
    ours, keras_result = (
        keras.ops.convert_to_numpy(layer(tokens)),
        keras.ops.convert_to_numpy(reference(tokens)),
    )
    np.testing.assert_array_equal(ours, keras_result)
    # Config round trip, and the same weights under the same names.
    copy = LayerNorm.from_config(layer.get_config())
    copy.build(tokens.shape)
    assert [w.path.split("/")[-1] for w in copy.weights] == ["gamma", "beta"]
    with pytest.raises(ValueError, match="last axis"):
        LayerNorm(axis=1).build((2, 3, 4))
    with pytest.raises(ValueError, match="center"):
        LayerNorm(center=False)


def test_layer_norm_computes_in_float32_under_mixed_precision():
    tokens = np.random.default_rng(0).normal(size=(2, 4, 8)).astype("float32")
    layer = LayerNorm(dtype="mixed_bfloat16")
    out = layer(tokens)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    reference = keras.layers.LayerNormalization(epsilon=1e-6, dtype="mixed_bfloat16")
    reference.build(tokens.shape)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")),
        keras.ops.convert_to_numpy(keras.ops.cast(reference(tokens), "float32")),
    )


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch (the dev extra)")
def test_layer_norm_runs_torchs_fused_kernel_on_the_torch_backend():
    """On PyTorch the layer is Keras' path, torch's `layer_norm` kernel (a fifth faster training step than the
    NEG-free formula, which only the TensorFlow export needs): one call per use, within 1e-6 of the formula."""
    code = """
import keras, numpy as np
import torch.nn.functional as F
from keras_vit.layers import LayerNorm
calls, fused = [], F.layer_norm
F.layer_norm = lambda *args, **kwargs: calls.append(1) or fused(*args, **kwargs)
rng = np.random.default_rng(0)
tokens = (rng.normal(size=(3, 9, 16)) * 4 + 2).astype("float32")
layer = LayerNorm(epsilon=1e-6)
layer.build(tokens.shape)
gamma, beta = rng.normal(size=16).astype("float32"), rng.normal(size=16).astype("float32")
layer.set_weights([gamma, beta])
out = keras.ops.convert_to_numpy(layer(tokens))
assert calls == [1], calls
mean, variance = tokens.mean(-1, keepdims=True), tokens.var(-1, keepdims=True)
np.testing.assert_allclose(out, (tokens - mean) / np.sqrt(variance + 1e-6) * gamma + beta, rtol=1e-5, atol=1e-5)
"""
    result = run_python(code, backend="torch")
    assert result.returncode == 0, result.stderr[-2000:]
