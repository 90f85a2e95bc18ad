"""Tests for keras_vit.training.optimizers."""

import keras
import pytest

from keras_vit.training.optimizers import make_optimizer


def test_optimizers():
    assert isinstance(make_optimizer("adamw", 1e-3), keras.optimizers.AdamW)
    assert isinstance(make_optimizer("adam", 1e-3), keras.optimizers.Adam)
    sgd = make_optimizer("sgd", 0.1, weight_decay=5e-4)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov
    with pytest.raises(ValueError, match="Unknown optimizer"):
        make_optimizer("lamb", 1e-3)
