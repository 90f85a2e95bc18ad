"""Attention weights, attention rollout and attention maps of a ViT.

`attention_weights` re-runs a ViT layer by layer in inference mode, walking
its checked chain of layers as `keras_vit.models.class_token_forward` does
(normalize -> patches -> patch_encoder -> blocks -> norm and pool -> head,
either head-norm layout), and collects each block's softmax attention. It
uses the model's own layers and `keras.ops` only, so it works on every
backend and for "token", "gap" and "seqpool" heads.

Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in
Transformers") follows attention through the residual connections: each
layer's head-fused attention `A` becomes `(A + I)` with rows renormalised,
and the layers are multiplied, `R = A_L ... A_2 A_1`. Row `i` of `R` says how
much token `i` of the last layer draws on each input token.

The maps of a model (`cls_attention_map`, `rollout_map`) read the rows its
head reads, chosen by its pooling mode: the class token's row for
`"token"`, the mean of the patch tokens' rows for `"gap"` and their mean
weighted by the head's learned weights for `"seqpool"`, whatever prefix
tokens (class, distillation, registers) the sequence holds.

```python
from keras_vit import attention_maps, plots

maps = attention_maps.rollout_map(model, images)          # (batch, rows, cols)
plots.plot_attention(images, maps, "attention.png")  # keras_vit.plots draws them
```
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_vit.layers import PatchEncoder, SequencePooling, TransformerBlock
from keras_vit.models.vit import vit_layers

HEAD_FUSIONS = ("mean", "max", "min")


# --------------------------------------------------------------------------
# Running the model.


def _vit_layers(model):
    """`model`'s layers in graph order, checked to be a ViT's chain (`keras_vit.models.vit.vit_layers`)."""
    layers = vit_layers(model)
    if layers is None:
        raise ValueError(
            f"Model {model.name!r} is not a ViT's chain of layers (normalize, patches, patch_encoder, "
            "transformer blocks, pool, head); attention maps need a keras_vit ViT."
        )
    return layers


def _layer_of(layers, kind):
    """The one layer of type `kind` in a checked ViT chain."""
    return next(layer for layer in layers if isinstance(layer, kind))


def _check_images(model, images):
    images = np.asarray(images, dtype="float32")
    expected = tuple(model.input_shape[1:])
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"Expected images of shape (batch, {', '.join(map(str, expected))}) with values in "
            f"0..255, got shape {images.shape}."
        )
    return images


def forward_with_attention(model, images, batch_size: int = 64):
    """Runs a ViT layer by layer, returning its logits and attention weights.

    Every layer runs with `training=False` (no dropout, no stochastic
    depth), so the logits equal `model.predict(images)`.

    Args:
        model: a `ViT` made by `keras_vit.build_vit` (or loaded from its
            `.keras` file, legacy functional ones included).
        images: float array `(batch, height, width, channels)`, values
            0..255, the model's input convention.
        batch_size: images per forward pass (bounds the memory used).

    Returns:
        Tuple `(logits, weights)` of numpy float32 arrays: logits
        `(batch, num_classes)` and weights `(depth, batch, num_heads,
        sequence, sequence)`. `sequence` is the number of patches plus the
        prefix tokens that come first (`PatchEncoder.num_prefix_tokens`: the
        class token at index 0, a distillation token at index 1, then the
        registers). Each row of the weights sums to 1.

    Raises:
        ValueError: `model` is not a ViT, or `images` do not fit it.
    """
    logits, weights, _ = _forward(model, images, batch_size)
    return logits, weights


def _forward(model, images, batch_size=64):
    """`forward_with_attention`'s logits and weights, and the `"seqpool"` head's weights over the patches.

    The third value is `(batch, patches)` float32 for a `pooling="seqpool"`
    model and None for the others.
    """
    layers = _vit_layers(model)
    images = _check_images(model, images)
    batch_size = max(1, int(batch_size))
    all_logits, all_weights, all_pooling = [], [], []
    for start in range(0, len(images), batch_size):
        x = ops.convert_to_tensor(images[start : start + batch_size])
        weights = []
        for layer in layers[1:]:  # the chain of `class_token_forward`, the input layer left out
            if isinstance(layer, TransformerBlock):
                x, w = layer(x, training=False, return_attention_scores=True)
                weights.append(ops.convert_to_numpy(ops.cast(w, "float32")))
                continue
            if isinstance(layer, SequencePooling) and layer.mode == "seqpool":
                pooling = layer.pooling_weights(layer.patch_tokens(x))
                all_pooling.append(ops.convert_to_numpy(pooling))
            x = layer(x, training=False)
        all_logits.append(ops.convert_to_numpy(ops.cast(x, "float32")))
        all_weights.append(np.stack(weights))
    if not all_logits:
        raise ValueError("No images given.")
    pooling = np.concatenate(all_pooling) if all_pooling else None
    return np.concatenate(all_logits), np.concatenate(all_weights, axis=1), pooling


def attention_weights(model, images, batch_size: int = 64) -> np.ndarray:
    """The attention weights of every block of a ViT.

    Args:
        model: a `ViT` (see `forward_with_attention`).
        images: float array `(batch, height, width, channels)`, 0..255.
        batch_size: images per forward pass.

    Returns:
        float32 array `(depth, batch, num_heads, sequence, sequence)`; see
        `forward_with_attention`.
    """
    return forward_with_attention(model, images, batch_size)[1]


def has_class_token(model) -> bool:
    """Whether the ViT's token sequence starts with a class token (which its head need not read)."""
    return bool(_layer_of(_vit_layers(model), PatchEncoder).class_token)


# --------------------------------------------------------------------------
# Rollout and maps (numpy).


def _fuse_heads(weights, head_fusion):
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}.")
    return getattr(np, head_fusion)(weights, axis=-3)


def attention_rollout(weights, discard_ratio: float = 0.0, head_fusion: str = "mean") -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) through all layers.

    For each layer, the heads are fused (mean, max or min), optionally the
    weakest `discard_ratio` of the fused weights are zeroed (per image and
    layer, over the whole matrix; Gildenblat's noise-removal trick), the
    identity is added for the residual connection and the rows are
    renormalised to sum to 1. The layers are then multiplied in order:
    `R = A_L @ ... @ A_1`.

    Args:
        weights: array `(depth, batch, heads, sequence, sequence)` as
            returned by `attention_weights`.
        discard_ratio: float in `[0, 1)`, the fraction of smallest weights
            to drop in each layer.
        head_fusion: `"mean"`, `"max"` or `"min"` over the heads.

    Returns:
        float32 array `(batch, sequence, sequence)` whose rows sum to 1.
    """
    weights = np.asarray(weights, dtype="float64")
    if weights.ndim != 5 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"weights must have shape (depth, batch, heads, seq, seq), got {weights.shape}.")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}.")
    fused = _fuse_heads(weights, head_fusion)  # (depth, batch, seq, seq)
    _, batch, seq, _ = fused.shape
    eye = np.eye(seq)
    rollout = np.broadcast_to(eye, (batch, seq, seq)).copy()
    for layer in fused:
        layer = layer.copy()
        drop = int(seq * seq * discard_ratio)
        if drop:
            flat = layer.reshape(batch, -1)
            weakest = np.argsort(flat, axis=-1, kind="stable")[:, :drop]
            np.put_along_axis(flat, weakest, 0.0, axis=-1)
        layer = layer + eye
        layer = layer / layer.sum(axis=-1, keepdims=True)
        rollout = layer @ rollout
    return rollout.astype("float32")


def attention_map(
    matrix, grid_size, pooling: str = "token", num_prefix_tokens: int | None = None, row_weights=None
) -> np.ndarray:
    """Turns token-to-token attention into one map over the patch grid: the rows the head reads.

    Args:
        matrix: array `(batch, sequence, sequence)` (one layer's fused
            attention, or a rollout).
        grid_size: `(rows, cols)` of the patch grid.
        pooling: what the model's head reads (`SequencePooling.mode`):
            `"token"` takes the class token's row (token 0; a DeiT head
            also reads the distillation token, token 1, whose row the map
            leaves out); `"gap"` the mean of the patch tokens' rows (the
            attention each patch receives on average); `"seqpool"` that mean
            weighted by `row_weights`.
        num_prefix_tokens: tokens before the first patch token, left out of
            the map (`PatchEncoder.num_prefix_tokens`: class and
            distillation tokens, registers). None: 1 for `"token"` (a class
            token alone), else 0.
        row_weights: array `(batch, patches)` whose rows sum to 1, the
            `"seqpool"` head's weights (how much of each patch token the
            classifier reads); needed for `"seqpool"` only.

    Returns:
        float32 array `(batch, rows, cols)`.

    Raises:
        ValueError: an unknown `pooling`, or shapes that do not fit.
    """
    if pooling not in SequencePooling.MODES:
        raise ValueError(f"pooling must be one of {SequencePooling.MODES}, got {pooling!r}.")
    matrix = np.asarray(matrix, dtype="float32")
    rows, cols = (int(v) for v in grid_size)
    prefix = int(pooling == "token") if num_prefix_tokens is None else int(num_prefix_tokens)
    if pooling == "token" and prefix < 1:
        raise ValueError("pooling='token' reads a class token: num_prefix_tokens must be at least 1.")
    expected = rows * cols + prefix
    if matrix.ndim != 3 or matrix.shape[1:] != (expected, expected):
        raise ValueError(
            f"Expected attention of shape (batch, {expected}, {expected}) for a {rows}x{cols} grid and "
            f"{prefix} prefix tokens, got {matrix.shape}."
        )
    if (row_weights is not None) != (pooling == "seqpool"):
        raise ValueError(
            f"row_weights is needed for pooling='seqpool' and only for it, got pooling={pooling!r}."
        )
    if pooling == "token":
        values = matrix[:, 0, prefix:]
    elif pooling == "gap":
        values = matrix[:, prefix:, prefix:].mean(axis=1)
    else:
        row_weights = np.asarray(row_weights, dtype="float32")
        if row_weights.shape != (matrix.shape[0], rows * cols):
            raise ValueError(
                f"row_weights must have shape {(matrix.shape[0], rows * cols)}, got {row_weights.shape}."
            )
        values = np.einsum("bp,bpq->bq", row_weights, matrix[:, prefix:, prefix:])
    return values.reshape(-1, rows, cols)


def _head_map(model, matrix, pooling_weights):
    """`attention_map` of `matrix` with the rows `model`'s head reads (its pooling mode and prefix tokens)."""
    layers = _vit_layers(model)
    encoder = _layer_of(layers, PatchEncoder)
    pool = _layer_of(layers, SequencePooling)
    return attention_map(matrix, encoder.grid_size, pool.mode, encoder.num_prefix_tokens, pooling_weights)


def cls_attention_map(model, images, layer: int = -1, head_fusion: str = "mean") -> np.ndarray:
    """The attention the head reads over the patches in one block.

    For a `"token"` head it is the class token's attention; for a `"gap"`
    head the mean attention the patches receive from all patch tokens; for
    a `"seqpool"` head that mean weighted by the head's pooling weights
    (see `attention_map`).

    Args:
        model: a `ViT` (see `forward_with_attention`).
        images: float array `(batch, height, width, channels)`, 0..255.
        layer: index of the block (negative counts from the last).
        head_fusion: `"mean"`, `"max"` or `"min"` over the heads.

    Returns:
        float32 array `(batch, grid_rows, grid_cols)`.
    """
    _, weights, pooling = _forward(model, images)
    return _head_map(model, _fuse_heads(weights[layer], head_fusion), pooling)


def rollout_map(model, images, discard_ratio: float = 0.0, head_fusion: str = "mean") -> np.ndarray:
    """Attention-rollout map of each image over the patch grid, read as the head reads (see `attention_map`).

    Args:
        model: a `ViT` (see `forward_with_attention`).
        images: float array `(batch, height, width, channels)`, 0..255.
        discard_ratio: see `attention_rollout`.
        head_fusion: see `attention_rollout`.

    Returns:
        float32 array `(batch, grid_rows, grid_cols)`.
    """
    _, weights, pooling = _forward(model, images)
    return _head_map(model, attention_rollout(weights, discard_ratio, head_fusion), pooling)


__all__ = [
    "forward_with_attention",
    "attention_weights",
    "has_class_token",
    "attention_rollout",
    "attention_map",
    "cls_attention_map",
    "rollout_map",
    "HEAD_FUSIONS",
]
