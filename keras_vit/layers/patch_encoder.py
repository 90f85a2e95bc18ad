"""`PatchEncoder`: patch projection, class token, registers and position embedding."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from keras_vit.layers.common import PACKAGE, dense_over_tokens, pair
from keras_vit.layers.norm import LayerNorm


def sincos_position_embedding(grid_size, dim, temperature=10000.0):
    """Fixed 2-D sine-cosine position embedding (MAE / "simple ViT" style).

    Args:
        grid_size: `(rows, cols)` of the patch grid.
        dim: embedding width; must be divisible by 4.
        temperature: the base of the frequency ladder.

    Returns:
        float32 numpy array of shape `(rows * cols, dim)`, row-major.
    """
    rows, cols = grid_size
    if dim % 4:
        raise ValueError(f"sine-cosine position embedding needs a width divisible by 4, got {dim}.")
    y, x = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    omega = 1.0 / temperature ** (np.arange(dim // 4) / (dim // 4))  # float64
    y = y.ravel()[:, None] * omega[None]
    x = x.ravel()[:, None] * omega[None]
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1).astype("float32")


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchEncoder(keras.layers.Layer):
    """Projects patches, prepends a class token and adds position embeddings.

    Optionally inserts `num_registers` learned register tokens after the
    class token (Darcet et al. 2024, "Vision Transformers Need Registers").
    They carry no position embedding and are read by no head; besides giving
    attention a place to park, one register makes the 65 tokens of a 32x32
    image in 4x4 patches plus a class token an even 66, a length cuDNN's
    fused attention accepts in training (see `benchmarks/attention_probe.py`).

    Args:
        num_patches: int, number of patches in the sequence.
        projection_dim: int, width of the token embeddings.
        grid_size: optional `(rows, cols)` of the patch grid; needed to
            resample position embeddings for non-square grids. Defaults to
            the square grid `sqrt(num_patches)` when that is an integer.
        class_token: bool, whether to prepend a learned class token (CLS).
        position_embedding: `"learned"` (trainable, the paper's choice) or
            `"sincos"` (fixed 2-D sine-cosine, not trained).
        num_registers: int, learned register tokens (default 0).
        patch_norm: bool, layer-normalize each patch vector before the
            projection, as Shifted Patch Tokenization does (its five
            stacked copies are otherwise on one scale only by chance).
        distillation_token: bool, a second learned token after the class
            token, with its own position vector (DeiT, Touvron et al. 2021);
            needs `class_token`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        patches: tensor of shape `(batch, num_patches, patch_dim)`.

    Returns:
        Tensor of shape `(batch, class_token + distillation_token +
        num_registers + num_patches, projection_dim)`: the class token (when
        present) at index 0, the distillation token (when present) at index
        1, then the registers, then the patch tokens in row-major grid order.
    """

    def __init__(
        self,
        num_patches,
        projection_dim,
        grid_size=None,
        class_token=True,
        position_embedding="learned",
        num_registers=0,
        patch_norm=False,
        distillation_token=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_patches = int(num_patches)
        if int(num_registers) < 0:
            raise ValueError(f"num_registers must be >= 0, got {num_registers}.")
        self.num_registers = int(num_registers)
        self.projection_dim = int(projection_dim)
        if grid_size is None:
            side = math.isqrt(self.num_patches)
            if side * side != self.num_patches:
                raise ValueError(
                    f"num_patches={self.num_patches} is not a square: pass grid_size=(rows, cols)."
                )
            grid_size = (side, side)
        self.grid_size = pair(grid_size, "grid_size")
        if self.grid_size[0] * self.grid_size[1] != self.num_patches:
            raise ValueError(f"grid_size={self.grid_size} does not hold num_patches={self.num_patches}.")
        if position_embedding not in ("learned", "sincos"):
            raise ValueError(f"position_embedding must be 'learned' or 'sincos', got {position_embedding!r}.")
        self.class_token = bool(class_token)
        self.position_embedding_type = position_embedding
        self.patch_norm = bool(patch_norm)
        self.distillation_token = bool(distillation_token)
        if self.distillation_token and not self.class_token:
            raise ValueError("distillation_token=True needs class_token=True.")
        if self.patch_norm:
            self.patch_norm_layer = LayerNorm(epsilon=1e-6, name="patch_norm", dtype=self.dtype_policy)
        self.projection = keras.layers.Dense(projection_dim, name="projection", dtype=self.dtype_policy)

    @property
    def num_prefix_tokens(self):
        """Tokens before the first patch token: the class and distillation tokens and the registers."""
        return self.num_positioned_prefix_tokens + self.num_registers

    @property
    def num_positioned_prefix_tokens(self):
        """The prefix tokens that have a position vector: the class and distillation tokens."""
        return int(self.class_token) + int(self.distillation_token)

    @property
    def num_tokens(self):
        return self.num_patches + self.num_prefix_tokens

    def build(self, input_shape):
        if input_shape[-2] is not None and input_shape[-2] != self.num_patches:
            raise ValueError(
                f"PatchEncoder was built for {self.num_patches} patches but got {input_shape[-2]} "
                f"(input shape {tuple(input_shape)})."
            )
        if self.patch_norm:
            self.patch_norm_layer.build(input_shape)
        self.projection.build(input_shape)
        if self.class_token:
            self.cls = self.add_weight(
                name="class_token",
                shape=(1, 1, self.projection_dim),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            )
        if self.distillation_token:
            self.dist = self.add_weight(
                name="distillation_token",
                shape=(1, 1, self.projection_dim),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            )
        if self.num_registers:
            self.registers = self.add_weight(
                name="registers",
                shape=(1, self.num_registers, self.projection_dim),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            )
        # One position vector per patch, and one each for the class and distillation tokens.
        positions = self.num_patches + self.num_positioned_prefix_tokens
        if self.position_embedding_type == "learned":
            self.position = self.add_weight(
                name="position_embedding",
                shape=(1, positions, self.projection_dim),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            )
        else:
            table = sincos_position_embedding(self.grid_size, self.projection_dim)
            if self.class_token:  # the class (and distillation) token gets a zero position vector
                zeros = np.zeros((self.num_positioned_prefix_tokens, self.projection_dim), "float32")
                table = np.concatenate([zeros, table])
            self.position = self.add_weight(
                name="position_embedding",
                shape=(1, positions, self.projection_dim),
                initializer=keras.initializers.Constant(table[None]),
                trainable=False,
            )

    def _per_image(self, weight, patches, dtype):
        """A learned `(1, n, dim)` block of tokens (class token, registers), copied for every image.

        The batch size is read at run time (`ops.shape` gives a tensor when it
        is dynamic), so exports keep a dynamic batch: TFLite SHAPE +
        BROADCAST_TO (both have int8 kernels, unlike the ZEROS_LIKE of `cls +
        zeros_like(...)`), ONNX Expand. The shape is read from `patches`: in
        int8 TFLite files it is an int8 tensor, while the tokens may be
        dequantized (export/tflite.py).
        """
        batch = ops.shape(patches)[0]
        return ops.broadcast_to(ops.cast(weight, dtype), (batch, weight.shape[1], self.projection_dim))

    def call(self, patches):
        projected = self.patch_norm_layer(patches) if self.patch_norm else patches
        tokens = dense_over_tokens(self.projection, projected)
        if self.class_token:
            prefix = [self._per_image(self.cls, patches, tokens.dtype)]
            if self.distillation_token:
                prefix.append(self._per_image(self.dist, patches, tokens.dtype))
            tokens = ops.concatenate([*prefix, tokens], axis=1)
        tokens = tokens + ops.cast(self.position, tokens.dtype)
        if self.num_registers:
            # After the class (and distillation) token, and after the position embedding: registers have none.
            registers = self._per_image(self.registers, patches, tokens.dtype)
            head = self.num_positioned_prefix_tokens
            # No empty slice without a class token: TFLite's XNNPack delegate cannot reshape what follows one.
            pieces = [tokens[:, :head], registers, tokens[:, head:]] if head else [registers, tokens]
            tokens = ops.concatenate(pieces, axis=1)
        return tokens

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tokens, self.projection_dim)

    def resampled_position_embedding(self, grid_size):
        """The position embedding for another patch grid, as a numpy array.

        Learned embeddings are resized bicubically over the 2-D grid,
        antialiased when the grid shrinks (timm's `resample_abs_pos_embed`,
        so a converted checkpoint at a new resolution starts where timm's
        does); the class and distillation tokens' vectors are kept as they
        are.
        Sine-cosine embeddings are recomputed for the new grid.

        Args:
            grid_size: `(rows, cols)` of the new grid.

        Returns:
            float32 array of shape `(1, rows * cols + class_token +
            distillation_token, dim)`.
        """
        rows, cols = pair(grid_size, "grid_size")
        table = ops.convert_to_numpy(self.position)[0]
        head = table[: self.num_positioned_prefix_tokens]
        if self.position_embedding_type == "sincos":
            grid = sincos_position_embedding((rows, cols), self.projection_dim)
        elif (rows, cols) == self.grid_size:
            grid = table[len(head) :]
        else:
            grid = table[len(head) :].reshape(*self.grid_size, self.projection_dim)
            grid = ops.image.resize(grid, (rows, cols), interpolation="bicubic", antialias=True)
            grid = ops.convert_to_numpy(grid).reshape(rows * cols, self.projection_dim)
        return np.concatenate([head, grid])[None].astype("float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_patches": self.num_patches,
                "projection_dim": self.projection_dim,
                "grid_size": self.grid_size,
                "class_token": self.class_token,
                "position_embedding": self.position_embedding_type,
                "num_registers": self.num_registers,
                "patch_norm": self.patch_norm,
                "distillation_token": self.distillation_token,
            }
        )
        return config
