"""Attention weights, attention rollout and attention maps of a ViT.

`attention_weights` re-runs a `build_vit` model layer by layer (normalize ->
patches -> patch_encoder -> blocks) in inference mode and collects each
block's softmax attention; it uses the model's own layers and `keras.ops`
only, so it works on every backend and for "token", "gap" and "seqpool" heads.

Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in
Transformers") follows attention through the residual connections: each
layer's head-fused attention `A` becomes `(A + I)` with rows renormalised,
and the layers are multiplied, `R = A_L ... A_2 A_1`. Row `i` of `R` says how
much token `i` of the last layer draws on each input token.

```python
from keras_vit import attention, plots

maps = attention.rollout_map(model, images)          # (batch, rows, cols)
plots.plot_attention(images, maps, "attention.png")  # keras_vit.plots draws them
```
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_vit.layers import TransformerBlock

HEAD_FUSIONS = ("mean", "max", "min")


# --------------------------------------------------------------------------
# Running the model.


def _vit_layers(model):
    """The layers `forward_with_attention` runs, in order, by name."""
    names = ("normalize", "patches", "patch_encoder", "encoder_norm", "pool", "head")
    found = {}
    for name in names:
        try:
            found[name] = model.get_layer(name)
        except ValueError:
            raise ValueError(
                f"Model {model.name!r} has no layer named {name!r}; attention maps need a "
                "model made by keras_vit.build_vit (or loaded from its .keras file)."
            ) from None
    blocks = [layer for layer in model.layers if isinstance(layer, TransformerBlock)]
    if not blocks:
        raise ValueError(f"Model {model.name!r} has no TransformerBlock layers.")
    try:
        dropout = model.get_layer("embedding_dropout")
    except ValueError:
        dropout = None
    return found, dropout, blocks


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
        model: a model made by `keras_vit.build_vit` or loaded from its
            `.keras` file.
        images: float array `(batch, height, width, channels)`, values
            0..255, the model's input convention.
        batch_size: images per forward pass (bounds the memory used).

    Returns:
        Tuple `(logits, weights)` of numpy float32 arrays: logits
        `(batch, num_classes)` and weights `(depth, batch, num_heads,
        sequence, sequence)`. `sequence` is the number of patches, plus one
        for the class token when the model has one (at index 0). Each row of
        the weights sums to 1.
    """
    logits, weights, _ = _forward(model, images, batch_size)
    return logits, weights


def _forward(model, images, batch_size=64):
    """`forward_with_attention`'s logits and weights, and the `"seqpool"` head's weights over the patches.

    The third value is `(batch, patches)` float32 for a `pooling="seqpool"`
    model and None for the others.
    """
    images = _check_images(model, images)
    layers, dropout, blocks = _vit_layers(model)
    pool = layers["pool"]
    batch_size = max(1, int(batch_size))
    all_logits, all_weights, all_pooling = [], [], []
    for start in range(0, len(images), batch_size):
        x = ops.convert_to_tensor(images[start : start + batch_size])
        x = layers["normalize"](x)
        x = layers["patches"](x)
        x = layers["patch_encoder"](x)
        if dropout is not None:
            x = dropout(x, training=False)
        weights = []
        for block in blocks:
            x, w = block(x, training=False, return_attention_scores=True)
            weights.append(ops.convert_to_numpy(ops.cast(w, "float32")))
        x = layers["encoder_norm"](x)
        if pool.mode == "seqpool":
            all_pooling.append(ops.convert_to_numpy(pool.pooling_weights(pool.patch_tokens(x))))
        x = pool(x)
        logits = layers["head"](x)
        all_logits.append(ops.convert_to_numpy(ops.cast(logits, "float32")))
        all_weights.append(np.stack(weights))
    if not all_logits:
        raise ValueError("No images given.")
    pooling = np.concatenate(all_pooling) if all_pooling else None
    return np.concatenate(all_logits), np.concatenate(all_weights, axis=1), pooling


def attention_weights(model, images, batch_size: int = 64) -> np.ndarray:
    """The attention weights of every block of a ViT.

    Args:
        model: a model made by `keras_vit.build_vit`.
        images: float array `(batch, height, width, channels)`, 0..255.
        batch_size: images per forward pass.

    Returns:
        float32 array `(depth, batch, num_heads, sequence, sequence)`; see
        `forward_with_attention`.
    """
    return forward_with_attention(model, images, batch_size)[1]


def has_class_token(model) -> bool:
    """Whether the ViT's token sequence starts with a class token."""
    return bool(model.get_layer("patch_encoder").class_token)


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
    matrix, grid_size, class_token: bool = True, num_registers: int = 0, row_weights=None
) -> np.ndarray:
    """Turns token-to-token attention into one map over the patch grid.

    Args:
        matrix: array `(batch, sequence, sequence)` (one layer's fused
            attention, or a rollout).
        grid_size: `(rows, cols)` of the patch grid.
        class_token: whether token 0 is a class token. If so the map is the
            class token's row (what the classifier reads); otherwise
            ("gap" and "seqpool" models) it is a mean over the patch-token
            rows: the attention each patch receives on average.
        num_registers: register tokens between the class token and the
            patches (`PatchEncoder(num_registers=...)`); left out of the map.
        row_weights: optional array `(batch, patches)` whose rows sum to 1:
            the mean over the patch rows is weighted by it (a `"seqpool"`
            head's weights, which say how much of each patch token the
            classifier reads). Only without a class token.

    Returns:
        float32 array `(batch, rows, cols)`.
    """
    matrix = np.asarray(matrix, dtype="float32")
    rows, cols = (int(v) for v in grid_size)
    prefix = int(class_token) + int(num_registers)
    expected = rows * cols + prefix
    if matrix.ndim != 3 or matrix.shape[1:] != (expected, expected):
        raise ValueError(
            f"Expected attention of shape (batch, {expected}, {expected}) for a {rows}x{cols} grid"
            f"{' plus a class token' if class_token else ''}"
            f"{f' and {num_registers} registers' if num_registers else ''}, got {matrix.shape}."
        )
    if class_token:
        if row_weights is not None:
            raise ValueError("row_weights is for models without a class token.")
        values = matrix[:, 0, prefix:]
    elif row_weights is None:
        values = matrix[:, prefix:, prefix:].mean(axis=1)
    else:
        row_weights = np.asarray(row_weights, dtype="float32")
        if row_weights.shape != (matrix.shape[0], rows * cols):
            raise ValueError(
                f"row_weights must have shape {(matrix.shape[0], rows * cols)}, got {row_weights.shape}."
            )
        values = np.einsum("bp,bpq->bq", row_weights, matrix[:, prefix:, prefix:])
    return values.reshape(-1, rows, cols)


def cls_attention_map(model, images, layer: int = -1, head_fusion: str = "mean") -> np.ndarray:
    """The class token's attention over the patches in one block.

    For "gap" models (no class token) it is the mean attention the patches
    receive from all patch tokens; for "seqpool" models that mean is
    weighted by the head's pooling weights.

    Args:
        model: a model made by `keras_vit.build_vit`.
        images: float array `(batch, height, width, channels)`, 0..255.
        layer: index of the block (negative counts from the last).
        head_fusion: `"mean"`, `"max"` or `"min"` over the heads.

    Returns:
        float32 array `(batch, grid_rows, grid_cols)`.
    """
    _, weights, pooling = _forward(model, images)
    encoder = model.get_layer("patch_encoder")
    return attention_map(
        _fuse_heads(weights[layer], head_fusion),
        encoder.grid_size,
        encoder.class_token,
        encoder.num_registers,
        pooling,
    )


def rollout_map(model, images, discard_ratio: float = 0.0, head_fusion: str = "mean") -> np.ndarray:
    """Attention-rollout map of each image over the patch grid.

    Args:
        model: a model made by `keras_vit.build_vit`.
        images: float array `(batch, height, width, channels)`, 0..255.
        discard_ratio: see `attention_rollout`.
        head_fusion: see `attention_rollout`.

    Returns:
        float32 array `(batch, grid_rows, grid_cols)`.
    """
    _, weights, pooling = _forward(model, images)
    rollout = attention_rollout(weights, discard_ratio, head_fusion)
    encoder = model.get_layer("patch_encoder")
    return attention_map(rollout, encoder.grid_size, encoder.class_token, encoder.num_registers, pooling)


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
