"""The Vision Transformer's building blocks as serializable Keras 3 layers.

Every layer here uses `keras.ops` only, so the same code runs on the
TensorFlow, JAX and PyTorch backends and converts to TFLite/ONNX with builtin
operators. Each layer creates its sublayers in `__init__`/`build` with explicit
names (so weight paths are stable across versions) and its `get_config()`
holds exactly its constructor arguments.

The four parts of a ViT map onto these layers:

1. `Patches`: image -> sequence of flattened patches.
2. `PatchEncoder`: linear projection, class token, position embedding.
3. `TransformerBlock` (x depth): pre-norm self-attention + MLP.
4. `SequencePooling` + a `Dense` head: the class token (or the mean of the
   patch tokens) -> logits.

Two helpers shape the exported graphs: `LayerNorm` (Keras' layer norm
without a NEG op, which int8 TFLite lacks) and `dense_over_tokens` (token-wise
Dense layers without run-time shape arithmetic).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

PACKAGE = "keras_vit"


def _pair(value, name):
    """Returns `value` as a `(height, width)` tuple of positive ints."""
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) <= 0:
        raise ValueError(f"`{name}` must be a positive int or a pair of them, got {value}.")
    return value


def dense_over_tokens(dense, tokens):
    """`dense(tokens)` for `(batch, tokens, features)`, computed as one 2-D matrix product.

    The same weights and result as calling the `Dense` layer on the 3-D
    tensor. Why: under TensorFlow, `Dense` on a 3-D input lowers to
    `tensordot`, which computes its reshape at run time (SHAPE, GATHER,
    REDUCE_PROD, PACK); TFLite keeps those int32 ops, XNNPACK (and other
    delegates) cannot take them, and each splits the delegated graph in two.
    Reshaping to `(-1, features)` and back with the static token count
    lowers to constant-shape RESHAPEs around one FULLY_CONNECTED, and trained
    as fast as `Dense` within noise on the TensorFlow CPU backend
    (`keras.layers.EinsumDense` also avoids the split, but trained about 17%
    slower there).

    Args:
        dense: a `keras.layers.Dense`.
        tokens: tensor `(batch, tokens, features)`.

    Returns:
        Tensor `(batch, tokens, dense.units)`.
    """
    num_tokens, features = tokens.shape[1], tokens.shape[2]
    if num_tokens is None or features is None:  # no static shape to reshape with
        return dense(tokens)
    flat = dense(ops.reshape(tokens, (-1, features)))
    return ops.reshape(flat, (-1, num_tokens, dense.units))


@keras.saving.register_keras_serializable(package=PACKAGE)
class Patches(keras.layers.Layer):
    """Cuts images into non-overlapping square patches, flattened row-major.

    Patch `k` of the output is the patch at grid row `k // grid_width`,
    column `k % grid_width`; its vector holds the patch's pixels in
    (row, column, channel) order, the same order as
    `tf.image.extract_patches` but built from reshape/transpose only (no
    Flex op in TFLite, no 6-D tensors).

    With `shifted=True` it is Lee et al. 2021's Shifted Patch Tokenization
    ("Vision Transformer for Small-Size Datasets"): the image is stacked,
    along the channels, with four copies of itself shifted by half a patch
    diagonally (left-up, right-up, left-down, right-down; zeros shifted in),
    before it is cut. Every patch vector then also sees the pixels around
    its patch, a little of the locality a convolution has, for the cost of
    a 5x wider projection input. The shifts are pads and slices: builtin
    TFLite ops.

    Args:
        patch_size: int, side of the square patches in pixels. The image
            height and width must both be divisible by it.
        shifted: bool, Shifted Patch Tokenization (default False).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        images: tensor of shape `(batch, height, width, channels)`.

    Returns:
        Tensor of shape `(batch, num_patches, patch_size * patch_size *
        channels * (5 if shifted else 1))` with `num_patches = (height //
        patch_size) * (width // patch_size)`.
    """

    def __init__(self, patch_size, shifted=False, **kwargs):
        super().__init__(**kwargs)
        if int(patch_size) <= 0:
            raise ValueError(f"`patch_size` must be positive, got {patch_size}.")
        self.patch_size = int(patch_size)
        self.shifted = bool(shifted)
        if self.shifted and self.patch_size < 2:
            raise ValueError("shifted=True needs patch_size >= 2 (the shift is half a patch).")

    def _grid(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"Patches expects images of shape (batch, height, width, channels), "
                f"got shape {tuple(input_shape)}."
            )
        _, height, width, channels = input_shape
        if height is None or width is None or channels is None:
            raise ValueError(
                f"Patches needs a known height, width and channel count, got shape {tuple(input_shape)}."
            )
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(
                f"Image size {height}x{width} is not divisible by patch_size={p}: "
                f"choose a patch size that divides both, or resize the images."
            )
        return height // p, width // p, channels

    def build(self, input_shape):
        self._grid(input_shape)
        self.built = True

    def _with_shifted_copies(self, images):
        """`images` and its four diagonal half-patch shifts, stacked on the channel axis."""
        _, height, width, _ = images.shape
        s = self.patch_size // 2
        padded = ops.pad(images, ((0, 0), (s, s), (s, s), (0, 0)))
        # The window at (top, left) of the padded image: top 0 moves the
        # content down (the pixels above shift in), top 2s moves it up.
        copies = [images] + [
            padded[:, top:top + height, left:left + width, :]
            for top, left in ((0, 0), (0, 2 * s), (2 * s, 0), (2 * s, 2 * s))
        ]
        return ops.concatenate(copies, axis=-1)

    def call(self, images):
        if self.shifted:
            images = self._with_shifted_copies(images)
        rows, cols, channels = self._grid(images.shape)
        p = self.patch_size
        # (B, H, W, C) -> (B*rows, p, cols, p*C): a pure reshape of the memory.
        x = ops.reshape(images, (-1, p, cols, p * channels))
        # Bring the patch column ahead of the pixel row inside the patch.
        x = ops.transpose(x, (0, 2, 1, 3))
        return ops.reshape(x, (-1, rows * cols, p * p * channels))

    def compute_output_shape(self, input_shape):
        rows, cols, channels = self._grid(input_shape)
        copies = 5 if self.shifted else 1
        return (input_shape[0], rows * cols, self.patch_size**2 * channels * copies)

    def get_config(self):
        config = super().get_config()
        config.update({"patch_size": self.patch_size, "shifted": self.shifted})
        return config


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
    y, x = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64), indexing="ij")
    omega = 1.0 / temperature ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))
    y = y.reshape(-1)[:, None] * omega[None]
    x = x.reshape(-1)[:, None] * omega[None]
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
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        patches: tensor of shape `(batch, num_patches, patch_dim)`.

    Returns:
        Tensor of shape `(batch, class_token + num_registers + num_patches,
        projection_dim)`: the class token (when present) at index 0, then the
        registers, then the patch tokens in row-major grid order.
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
        self.grid_size = _pair(grid_size, "grid_size")
        if self.grid_size[0] * self.grid_size[1] != self.num_patches:
            raise ValueError(f"grid_size={self.grid_size} does not hold num_patches={self.num_patches}.")
        if position_embedding not in ("learned", "sincos"):
            raise ValueError(f"position_embedding must be 'learned' or 'sincos', got {position_embedding!r}.")
        self.class_token = bool(class_token)
        self.position_embedding_type = position_embedding
        self.patch_norm = bool(patch_norm)
        if self.patch_norm:
            self.patch_norm_layer = LayerNorm(epsilon=1e-6, name="patch_norm", dtype=self.dtype_policy)
        self.projection = keras.layers.Dense(projection_dim, name="projection", dtype=self.dtype_policy)

    @property
    def num_prefix_tokens(self):
        """Tokens before the first patch token: the class token and the registers."""
        return int(self.class_token) + self.num_registers

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
        if self.num_registers:
            self.registers = self.add_weight(
                name="registers",
                shape=(1, self.num_registers, self.projection_dim),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            )
        # One position vector per patch, and one for the class token.
        positions = self.num_patches + int(self.class_token)
        if self.position_embedding_type == "learned":
            self.position = self.add_weight(
                name="position_embedding",
                shape=(1, positions, self.projection_dim),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            )
        else:
            table = sincos_position_embedding(self.grid_size, self.projection_dim)
            if self.class_token:  # the class token gets a zero position vector
                table = np.concatenate([np.zeros((1, self.projection_dim), "float32"), table])
            self.position = self.add_weight(
                name="position_embedding",
                shape=(1, positions, self.projection_dim),
                initializer=keras.initializers.Constant(table[None]),
                trainable=False,
            )
        self.built = True

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
            tokens = ops.concatenate([self._per_image(self.cls, patches, tokens.dtype), tokens], axis=1)
        tokens = tokens + ops.cast(self.position, tokens.dtype)
        if self.num_registers:
            # After the class token, and after the position embedding: registers have none.
            registers = self._per_image(self.registers, patches, tokens.dtype)
            head = int(self.class_token)
            tokens = ops.concatenate([tokens[:, :head], registers, tokens[:, head:]], axis=1)
        return tokens

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tokens, self.projection_dim)

    def resampled_position_embedding(self, grid_size):
        """The position embedding for another patch grid, as a numpy array.

        Learned embeddings are resized bilinearly over the 2-D grid (as timm
        does for new resolutions); the class token's vector is kept as it is.
        Sine-cosine embeddings are recomputed for the new grid.

        Args:
            grid_size: `(rows, cols)` of the new grid.

        Returns:
            float32 array of shape `(1, rows * cols + class_token, dim)`.
        """
        rows, cols = _pair(grid_size, "grid_size")
        table = ops.convert_to_numpy(self.position).astype("float32")[0]
        head = table[:1] if self.class_token else table[:0]
        if self.position_embedding_type == "sincos":
            grid = sincos_position_embedding((rows, cols), self.projection_dim)
        elif (rows, cols) == self.grid_size:
            grid = table[len(head):]
        else:
            grid = table[len(head):].reshape(1, *self.grid_size, self.projection_dim)
            grid = ops.image.resize(grid, (rows, cols), interpolation="bilinear", antialias=True)
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
            }
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class LayerNorm(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` over the last axis, without a NEG op.

    The same weights, config and float32 results, bit for bit on TensorFlow
    and JAX: Keras computes `x * inv + (-mean * inv + beta)` and this layer
    `x * inv + (beta - mean * inv)`, which IEEE arithmetic rounds the same
    way (on PyTorch Keras calls torch's fused kernel instead: within 1e-6).
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
            raise ValueError("LayerNorm needs center and scale and no rms_scaling; got "
                             f"center={self.center}, scale={self.scale}, rms_scaling={self.rms_scaling}.")

    def build(self, input_shape):
        axes = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        if [axis % len(input_shape) for axis in axes] != [len(input_shape) - 1]:
            raise ValueError(f"LayerNorm normalizes the last axis only; got axis={self.axis} for shape {input_shape}.")
        super().build(input_shape)

    def call(self, inputs):
        # At least float32, as Keras' layer_normalization: stable in half-precision training.
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = ops.moments(x, axes=[-1], keepdims=True)
        inv = ops.rsqrt(variance + self.epsilon) * ops.cast(self.gamma, x.dtype)
        outputs = x * inv + (ops.cast(self.beta, x.dtype) - mean * inv)
        return ops.cast(outputs, self.compute_dtype)


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


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocalitySelfAttention(keras.layers.MultiHeadAttention):
    """Keras' multi-head attention with Lee et al. 2021's Locality Self-Attention.

    Two changes to the attention scores ("Vision Transformer for Small-Size
    Datasets"): a token does not attend to itself (diagonal masking), so
    attention has to look at the other patches; and the softmax temperature
    is learned (one scalar per layer, kept as its logarithm and initialized
    to Keras' `1 / sqrt(key_dim)`), so attention can sharpen. The
    projections and their weights are `keras.layers.MultiHeadAttention`'s;
    this layer overrides `_compute_attention`, the hook Keras documents for
    custom attention.

    The diagonal is masked by giving each token's own score the lowest score
    of its row minus `SELF_MARGIN` (20): its weight is then below e^-20
    (2e-9) of the largest one, zero for any purpose, while the scores keep a
    range that int8 quantization can hold. The usual additive -1e9 (Keras'
    boolean masks) made int8 TFLite files lose 19 accuracy points on
    vit_micro: one int8 scale cannot cover -1e9 and the real scores.

    Args:
        **kwargs: `keras.layers.MultiHeadAttention` arguments.

    Call arguments and returns: as `keras.layers.MultiHeadAttention`,
    without `attention_mask` or `use_causal_mask` (a ViT needs neither). The
    sequences must have static lengths (the diagonal is a constant).
    """

    SELF_MARGIN = 20.0

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        self.log_temperature = self.add_weight(
            name="log_temperature", shape=(),
            initializer=keras.initializers.Constant(-0.5 * math.log(self.key_dim)),
        )

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, use_causal_mask=False):
        if attention_mask is not None or use_causal_mask:
            raise ValueError("LocalitySelfAttention takes no attention_mask and no causal mask.")
        query_length, key_length = query.shape[1], key.shape[1]
        if query_length is None or key_length is None:
            raise ValueError("LocalitySelfAttention needs static sequence lengths for its diagonal mask.")
        # query, key: (batch, tokens, heads, key_dim) -> scores (batch, heads, query, key).
        query = query * ops.cast(ops.exp(self.log_temperature), query.dtype)
        scores = ops.einsum("btnh,bsnh->bnts", query, key)
        own_score = ops.convert_to_tensor(np.eye(query_length, key_length, dtype=bool)[None, None])
        lowest = ops.min(scores, axis=-1, keepdims=True)
        scores = ops.where(own_score, lowest - self.SELF_MARGIN, scores)
        weights = ops.softmax(scores, axis=-1)
        dropped = self._dropout_layer(weights, training=training) if self.dropout else weights
        output = ops.einsum("bnts,bsnh->btnh", dropped, value)
        return output, (weights if return_attention_scores else None)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerBlock(keras.layers.Layer):
    """A pre-norm transformer encoder block (ViT paper, eq. 2-3).

    `x = x + DropPath(MHSA(LayerNorm(x)))`, then
    `x = x + DropPath(MLP(LayerNorm(x)))` with `MLP = Dense(mlp_dim, exact
    GELU) -> Dropout -> Dense(projection_dim) -> Dropout`.

    Args:
        num_heads: int, number of attention heads; must divide
            `projection_dim`.
        projection_dim: int, token width.
        mlp_dim: int, hidden width of the MLP.
        dropout: float, dropout after the attention output and in the MLP.
        attention_dropout: float, dropout on the attention weights.
        drop_path: float, stochastic-depth rate of both residual branches.
        layer_norm_epsilon: float, epsilon of the two LayerNormalizations.
        locality_attention: bool, use `LocalitySelfAttention` (no attention
            of a token to itself, learned temperature) instead of Keras'
            `MultiHeadAttention`; same weights plus one scalar.
        **kwargs: base `Layer` arguments.

    Call arguments:
        tokens: tensor of shape `(batch, sequence, projection_dim)`.
        training: bool, enables dropout and stochastic depth.
        return_attention_scores: bool; when True, also return the attention
            weights (used for attention maps and rollout).

    Returns:
        Tensor shaped like `tokens`; with `return_attention_scores=True` a
        tuple `(tokens, weights)` with weights of shape `(batch, num_heads,
        sequence, sequence)`.
    """

    def __init__(
        self,
        num_heads,
        projection_dim,
        mlp_dim,
        dropout=0.0,
        attention_dropout=0.0,
        drop_path=0.0,
        layer_norm_epsilon=1e-6,
        locality_attention=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if projection_dim % num_heads:
            raise ValueError(
                f"projection_dim={projection_dim} is not divisible by num_heads={num_heads}."
            )
        self.num_heads = int(num_heads)
        self.projection_dim = int(projection_dim)
        self.mlp_dim = int(mlp_dim)
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.drop_path = float(drop_path)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.locality_attention = bool(locality_attention)

        policy = self.dtype_policy
        self.attention_norm = LayerNorm(epsilon=layer_norm_epsilon, name="attention_norm", dtype=policy)
        attention_class = LocalitySelfAttention if self.locality_attention else keras.layers.MultiHeadAttention
        self.attention = attention_class(
            num_heads=num_heads,
            key_dim=projection_dim // num_heads,
            dropout=attention_dropout,
            name="attention",
            dtype=policy,
        )
        self.attention_dropout_layer = keras.layers.Dropout(dropout, name="attention_output_dropout", dtype=policy)
        self.mlp_norm = LayerNorm(epsilon=layer_norm_epsilon, name="mlp_norm", dtype=policy)
        # Exact (erf) GELU, as in the paper; export/ handles its lowering.
        self.mlp_hidden = keras.layers.Dense(mlp_dim, activation="gelu", name="mlp_hidden", dtype=policy)
        self.mlp_hidden_dropout = keras.layers.Dropout(dropout, name="mlp_hidden_dropout", dtype=policy)
        self.mlp_output = keras.layers.Dense(projection_dim, name="mlp_output", dtype=policy)
        self.mlp_output_dropout = keras.layers.Dropout(dropout, name="mlp_output_dropout", dtype=policy)
        self.drop_path_layer = DropPath(drop_path, name="drop_path", dtype=policy)

    def build(self, input_shape):
        if input_shape[-1] != self.projection_dim:
            raise ValueError(
                f"TransformerBlock expects tokens of width {self.projection_dim}, got shape {tuple(input_shape)}."
            )
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_hidden.build(input_shape)
        self.mlp_output.build(tuple(input_shape[:-1]) + (self.mlp_dim,))
        self.built = True

    def call(self, tokens, training=None, return_attention_scores=False):
        x = self.attention_norm(tokens)
        attended = self.attention(
            x, x, training=training, return_attention_scores=return_attention_scores
        )
        if return_attention_scores:
            attended, scores = attended
        attended = self.attention_dropout_layer(attended, training=training)
        tokens = tokens + self.drop_path_layer(attended, training=training)

        x = self.mlp_norm(tokens)
        x = dense_over_tokens(self.mlp_hidden, x)
        x = self.mlp_hidden_dropout(x, training=training)
        x = dense_over_tokens(self.mlp_output, x)
        x = self.mlp_output_dropout(x, training=training)
        tokens = tokens + self.drop_path_layer(x, training=training)
        if return_attention_scores:
            return tokens, scores
        return tokens

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "projection_dim": self.projection_dim,
                "mlp_dim": self.mlp_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "drop_path": self.drop_path,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "locality_attention": self.locality_attention,
            }
        )
        return config


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
    unmasked finish, as FLIP's unmasked tuning; `keras_vit.callbacks.
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
        if not training or not self.active or self.rate == 0.0 or self.kept_patches(num_patches) == num_patches:
            return tokens
        keep = self.kept_patches(num_patches)
        batch = ops.shape(tokens)[0]
        # A uniform random subset per image: the first `keep` of a random permutation.
        noise = keras.random.uniform((batch, num_patches), seed=self.seed_generator)
        chosen = ops.argsort(noise, axis=-1)[:, :keep]
        patches = ops.take_along_axis(tokens[:, self.num_prefix_tokens:], chosen[:, :, None], axis=1)
        return ops.concatenate([tokens[:, :self.num_prefix_tokens], patches], axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape  # what inference (and the exported graph) sees

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "num_prefix_tokens": self.num_prefix_tokens, "seed": self.seed})
        return config


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
        **kwargs: base `Layer` arguments.

    Call arguments:
        tokens: tensor of shape `(batch, sequence, dim)`.

    Returns:
        Tensor of shape `(batch, dim)`.
    """

    MODES = ("token", "gap", "seqpool")

    def __init__(self, mode="token", has_class_token=True, num_registers=0, **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"pooling must be one of {self.MODES}, got {mode!r}.")
        if mode == "token" and not has_class_token:
            raise ValueError("pooling='token' needs a class token.")
        self.mode = mode
        self.has_class_token = bool(has_class_token)
        self.num_registers = int(num_registers)

    def build(self, input_shape):
        if self.mode == "seqpool":
            self.score = keras.layers.Dense(1, name="score", dtype=self.dtype_policy)
            self.score.build((None, input_shape[-1]))
        self.built = True

    def patch_tokens(self, tokens):
        """The patch tokens of `(batch, sequence, dim)`: the class and register tokens left out."""
        return tokens[:, int(self.has_class_token) + self.num_registers:]

    def call(self, tokens):
        if self.mode == "token":
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
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "has_class_token": self.has_class_token,
                       "num_registers": self.num_registers})
        return config
