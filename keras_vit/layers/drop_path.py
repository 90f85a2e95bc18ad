"""`DropPath`: stochastic depth, a residual branch dropped per sample."""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.layers.common import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops a whole residual branch per sample.

    Args:
        rate: float in `[0, 1)`, probability of dropping the branch.
        seed: optional int for the random generator.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: the residual branch, any shape with batch first.
        training: bool; the branch is only dropped in training.

    Returns:
        `inputs` (at inference), or `inputs` zeroed for dropped samples and
        scaled by `1 / (1 - rate)` for kept ones.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1), got {rate}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.rate > 0 else None
        # No weights to create: built now, as `keras.layers.Dropout` is.
        self._build_at_init()

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        mask = keras.random.uniform(shape, seed=self.seed_generator) < keep
        return ops.where(mask, inputs / ops.cast(keep, inputs.dtype), ops.zeros_like(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
