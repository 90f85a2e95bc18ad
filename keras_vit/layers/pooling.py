"""`SequencePooling`: the token sequence reduced to one vector (class token, mean or learned weights)."""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.layers.common import PACKAGE, dense_over_tokens


@keras.saving.register_keras_serializable(package=PACKAGE)
class SequencePooling(keras.layers.Layer):
    """Reduces a token sequence to one vector per image.

    Args:
        mode: `"token"` reads the class token at index 0 (the paper's head);
            `"gap"` averages the patch tokens (skipping a class token if
            `has_class_token`); `"seqpool"` is a learned weighted mean of the
            patch tokens (Hassani et al. 2021, "Escaping the Big Data Paradigm
            with Compact Transformers"): one linear score per token, a softmax
            over the tokens, and the tokens summed with those weights. Without
            a class token the sequence stays at an even 64 tokens for 4x4
            patches of a 32x32 image, a length fused (cuDNN) attention takes.
        has_class_token: bool, whether index 0 is a class token.
        num_registers: int, register tokens after the class token, which
            `"gap"` and `"seqpool"` skip too.
        distillation_token: bool, whether index 1 is a distillation token
            (DeiT): `"token"` then returns the class and distillation tokens
            side by side, `(batch, 2 * dim)`, so that one `Dense` head holds
            DeiT's two heads (the mean of their logits); `"gap"` and
            `"seqpool"` skip it.
        **kwargs: base `Layer` arguments.

    Call arguments:
        tokens: tensor of shape `(batch, sequence, dim)`.

    Returns:
        Tensor of shape `(batch, dim)`, or `(batch, 2 * dim)` for `"token"`
        with a distillation token.
    """

    MODES = ("token", "gap", "seqpool")

    def __init__(
        self, mode="token", has_class_token=True, num_registers=0, distillation_token=False, **kwargs
    ):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"pooling must be one of {self.MODES}, got {mode!r}.")
        if mode == "token" and not has_class_token:
            raise ValueError("pooling='token' needs a class token.")
        self.mode = mode
        self.has_class_token = bool(has_class_token)
        self.num_registers = int(num_registers)
        self.distillation_token = bool(distillation_token)
        if self.distillation_token and not self.has_class_token:
            raise ValueError("distillation_token=True needs a class token.")

    def build(self, input_shape):
        if self.mode == "seqpool":
            self.score = keras.layers.Dense(1, name="score", dtype=self.dtype_policy)
            self.score.build((None, input_shape[-1]))

    def patch_tokens(self, tokens):
        """The patch tokens of `(batch, sequence, dim)`: the class, distillation and register tokens left out."""
        return tokens[:, int(self.has_class_token) + int(self.distillation_token) + self.num_registers :]

    def call(self, tokens):
        if self.mode == "token":
            if self.distillation_token:
                return ops.concatenate([tokens[:, 0], tokens[:, 1]], axis=-1)
            return tokens[:, 0]
        patches = self.patch_tokens(tokens)
        if self.mode == "gap":
            return ops.mean(patches, axis=1)
        weights = self.pooling_weights(patches)
        return ops.sum(ops.cast(weights[..., None], patches.dtype) * patches, axis=1)

    def pooling_weights(self, patches):
        """The `"seqpool"` weights, `(batch, patches)` in float32, summing to 1 per image.

        Args:
            patches: the patch tokens `(batch, patches, dim)`, without the
                class and register tokens.
        """
        scores = dense_over_tokens(self.score, patches)[..., 0]
        # The softmax in float32: under bfloat16 the weights of 64 tokens would keep 3 significant digits.
        return ops.softmax(ops.cast(scores, "float32"), axis=-1)

    def compute_output_shape(self, input_shape):
        width = input_shape[-1]
        if self.mode == "token" and self.distillation_token and width is not None:
            width = 2 * width
        return (input_shape[0], width)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "has_class_token": self.has_class_token,
                "num_registers": self.num_registers,
                "distillation_token": self.distillation_token,
            }
        )
        return config
