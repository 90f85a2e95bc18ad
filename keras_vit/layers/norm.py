"""`LayerNorm`: Keras' layer normalization written without a NEG op (int8 TFLite has none)."""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.layers.common import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class LayerNorm(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` over the last axis, without a NEG op.

    The same weights, config and float32 results, bit for bit on TensorFlow
    and JAX: Keras computes `x * inv + (-mean * inv + beta)` and this layer
    `x * inv + (beta - mean * inv)`, which IEEE arithmetic rounds the same
    way. On PyTorch it is Keras' layer, torch's fused kernel: the files are
    exported under TensorFlow, and training runs faster on it.
    Why: LiteRT has no int8 kernel for NEG, so every Keras LayerNormalization
    left a float island (DEQUANTIZE, NEG, QUANTIZE) in an int8 TFLite file;
    SUB has one, and with this layer `--strict-int8` files are integer from
    end to end. Like Keras' layer it computes in float32 under mixed
    precision.

    Args:
        epsilon: float, added to the variance.
        **kwargs: the other `keras.layers.LayerNormalization` arguments;
            `axis` must be the last one, with `center` and `scale` and no
            `rms_scaling`.
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(epsilon=epsilon, **kwargs)
        if not (self.center and self.scale) or self.rms_scaling:
            raise ValueError(
                "LayerNorm needs center and scale and no rms_scaling; got "
                f"center={self.center}, scale={self.scale}, rms_scaling={self.rms_scaling}."
            )

    def build(self, input_shape):
        axes = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        if [axis % len(input_shape) for axis in axes] != [len(input_shape) - 1]:
            raise ValueError(
                f"LayerNorm normalizes the last axis only; got axis={self.axis} for shape {input_shape}."
            )
        super().build(input_shape)

    def call(self, inputs):
        # PyTorch: its fused kernel (Keras' path); files export under TensorFlow, which runs the formula below.
        if keras.backend.backend() == "torch":
            return super().call(inputs)
        # At least float32, as Keras' layer_normalization: stable in half-precision training.
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = ops.moments(x, axes=[-1], keepdims=True)
        inv = ops.rsqrt(variance + self.epsilon) * ops.cast(self.gamma, x.dtype)
        outputs = x * inv + (ops.cast(self.beta, x.dtype) - mean * inv)
        return ops.cast(outputs, self.compute_dtype)
