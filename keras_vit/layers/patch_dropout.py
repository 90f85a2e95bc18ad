"""`PatchDropout`: a random subset of the patch tokens in training."""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.layers.common import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchDropout(keras.layers.Layer):
    """Trains on a random subset of the patch tokens (Liu et al. 2022, "PatchDropout").

    In training, each image keeps `round((1 - rate) * num_patches)` of its
    patch tokens, a different random subset per image, and all of its
    leading tokens (class token, registers). Attention and MLP costs fall
    with the token count, so a step is cheaper, and the model learns from
    partial views (a regularizer). The position embeddings are added before
    this layer, so each kept token still says where it came from; the order
    of the kept tokens does not matter to self-attention. Outside training
    it passes every token through, so an exported model has no trace of it.

    Setting `active = False` makes training see every token too (an
    unmasked finish, as FLIP's unmasked tuning; `keras_vit.training.callbacks.
    UnmaskedFinish`). It is a training switch, not configuration: it is not
    saved, and a compiled train step keeps the value it was traced with
    until the step is made again (`model.make_train_function(force=True)`).

    Args:
        rate: float in [0, 1), the share of patch tokens left out in training.
        num_prefix_tokens: int, leading tokens always kept (class token +
            registers).
        seed: int or None, seed of the draws.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        tokens: tensor `(batch, num_prefix_tokens + num_patches, dim)`.
        training: bool, whether to drop tokens.

    Returns:
        In training `(batch, num_prefix_tokens + kept, dim)`, else `tokens`.
    """

    def __init__(self, rate, num_prefix_tokens=1, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate}.")
        if int(num_prefix_tokens) < 0:
            raise ValueError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}.")
        self.rate = float(rate)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.active = True

    def kept_patches(self, num_patches):
        """Patch tokens kept in training out of `num_patches` (at least one)."""
        return max(1, int(round((1.0 - self.rate) * num_patches)))

    def kept_tokens(self, num_tokens):
        """Tokens a training image keeps out of `num_tokens` (leading tokens + patches)."""
        return self.num_prefix_tokens + self.kept_patches(num_tokens - self.num_prefix_tokens)

    def call(self, tokens, training=None):
        num_patches = tokens.shape[1] - self.num_prefix_tokens
        if not training or not self.active or self.rate == 0.0:
            return tokens
        keep = self.kept_patches(num_patches)
        if keep == num_patches:
            return tokens
        batch = ops.shape(tokens)[0]
        # A uniform random subset per image: the first `keep` of a random permutation.
        noise = keras.random.uniform((batch, num_patches), seed=self.seed_generator)
        chosen = ops.argsort(noise, axis=-1)[:, :keep]
        patches = ops.take_along_axis(tokens[:, self.num_prefix_tokens :], chosen[:, :, None], axis=1)
        return ops.concatenate([tokens[:, : self.num_prefix_tokens], patches], axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape  # what inference (and the exported graph) sees

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "num_prefix_tokens": self.num_prefix_tokens, "seed": self.seed})
        return config
