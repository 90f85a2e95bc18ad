"""Tests for keras_vit.training.optimizers."""

import keras
import numpy as np
import pytest

from keras_vit.training.optimizers import make_optimizer


def test_optimizers():
    assert isinstance(make_optimizer("adamw", 1e-3), keras.optimizers.AdamW)
    assert isinstance(make_optimizer("adam", 1e-3), keras.optimizers.Adam)
    sgd = make_optimizer("sgd", 0.1, weight_decay=5e-4)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov
    with pytest.raises(ValueError, match="Unknown optimizer"):
        make_optimizer("lamb", 1e-3)


def test_adamw_decays_kernels_only():
    """One AdamW step with zero gradients changes weights by the decay alone: kernels shrink by
    `1 - learning_rate * weight_decay`; biases, norm gammas and betas, the class token and the
    position embedding stay as they are."""
    from keras_vit.layers import LayerNorm, PatchEncoder

    inputs = keras.Input((4, 6))
    tokens = PatchEncoder(4, 8, grid_size=(2, 2), name="encoder")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(LayerNorm(name="norm")(tokens)))
    for i, w in enumerate(model.trainable_variables):
        w.assign(np.full(w.shape, 1.0 + i, "float32"))
    before = {w.path: np.array(w) for w in model.trainable_variables}
    optimizer = make_optimizer("adamw", 0.1, weight_decay=0.5)
    optimizer.apply_gradients([(keras.ops.zeros_like(w), w) for w in model.trainable_variables])
    after = {w.path: np.array(w) for w in model.trainable_variables}
    kept = ("bias", "gamma", "beta", "class_token", "position_embedding")
    names = {path.rsplit("/", 1)[-1] for path in before}
    assert names == {"kernel", *kept}, names
    for path in before:
        factor = 1.0 if path.rsplit("/", 1)[-1] in kept else 1.0 - 0.1 * 0.5
        np.testing.assert_allclose(after[path], before[path] * factor, rtol=1e-6, err_msg=path)
