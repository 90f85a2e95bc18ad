"""`build_vit`: the functional Vision Transformer.

    images (0..255) -> normalize -> Patches -> PatchEncoder [-> PatchDropout] -> dropout
        -> TransformerBlock x depth -> LayerNorm -> SequencePooling -> Dense head -> logits

The model takes raw pixel values (float, 0 to 255, channels last) and returns
logits; normalization lives inside the model so that every exported file
takes the same input. Augmentation does not: see `keras_vit.augment`.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_vit.layers import LayerNorm, PatchDropout, Patches, PatchEncoder, SequencePooling, TransformerBlock, _pair
from keras_vit.presets import get_preset

# Per-channel statistics of the CIFAR-10 training images, in 0..255 units.
CIFAR10_MEAN = (125.3, 123.0, 113.9)
CIFAR10_STD = (63.0, 62.1, 66.7)


DEFAULTS = dict(
    image_size=32, patch_size=4, num_classes=10, projection_dim=192, depth=9, num_heads=3,
    mlp_dim=384, pooling="token", dropout=0.0, attention_dropout=0.0, drop_path=0.0,
    position_embedding="learned", num_registers=0, shifted_patches=False, locality_attention=False,
    patch_dropout=0.0, channels=3, mean=CIFAR10_MEAN, std=CIFAR10_STD,
    name="vit",
)


def build_vit(preset=None, **kwargs):
    """Builds a Vision Transformer classifier as a functional `keras.Model`.

    Args:
        preset: optional preset name (see `keras_vit.PRESETS`). Its values
            are the defaults; any other argument given explicitly overrides
            them, e.g. `build_vit("vit_cifar10", num_classes=100)`.
        image_size: int or `(height, width)` of the input images.
        patch_size: int, side of the square patches; must divide both sides.
        num_classes: int, number of output logits.
        projection_dim: int, token width.
        depth: int, number of transformer blocks.
        num_heads: int, attention heads per block.
        mlp_dim: int, hidden width of each block's MLP.
        pooling: `"token"` (class-token head, as in the paper), `"gap"`
            (mean of the patch tokens) or `"seqpool"` (learned weighted mean
            of the patch tokens, see `SequencePooling`); no class token is
            created for the last two.
        dropout: float, dropout on embeddings, attention output and MLP.
        attention_dropout: float, dropout on attention weights.
        drop_path: float, the stochastic-depth rate of the last block; it
            grows linearly from 0 in the first block.
        position_embedding: `"learned"` or `"sincos"` (fixed 2-D).
        num_registers: int, learned register tokens after the class token
            (see `PatchEncoder`); 0 by default.
        shifted_patches: bool, Shifted Patch Tokenization (Lee et al. 2021):
            `Patches(shifted=True)` and a layer norm on the patch vectors
            (`PatchEncoder(patch_norm=True)`). Off by default.
        locality_attention: bool, Locality Self-Attention (Lee et al. 2021)
            in every block (`TransformerBlock(locality_attention=True)`).
            Off by default.
        patch_dropout: float in [0, 1), the share of patch tokens left out
            of each training image (`PatchDropout`, after the position
            embedding): cheaper steps and a regularizer; inference sees every
            token. 0 (no layer) by default.
        channels: int, image channels.
        mean, std: per-channel pixel statistics (0..255 units) used by the
            model's own normalization layer.
        name: model name.

    Returns:
        A `keras.Model` mapping float images `(batch, height, width,
        channels)` with values in 0..255 to float32 logits `(batch,
        num_classes)`.
    """
    unknown = sorted(set(kwargs) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"Unknown build_vit arguments {unknown}; known: {sorted(DEFAULTS)}.")
    # Defaults, then the preset's values, then what the caller gave.
    args = dict(DEFAULTS)
    if preset is not None:
        args.update(get_preset(preset))
    args.update(kwargs)
    return _build(**args)


def _build(*, image_size, patch_size, num_classes, projection_dim, depth, num_heads, mlp_dim,
           pooling, dropout, attention_dropout, drop_path, position_embedding, num_registers, shifted_patches,
           locality_attention, patch_dropout, channels,
           mean, std, name):
    height, width = _pair(image_size, "image_size")
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"image_size {height}x{width} is not divisible by patch_size={patch_size}."
        )
    if pooling not in SequencePooling.MODES:
        raise ValueError(f"pooling must be one of {SequencePooling.MODES}, got {pooling!r}.")
    grid = (height // patch_size, width // patch_size)
    class_token = pooling == "token"

    inputs = keras.Input((height, width, channels), name="images")
    x = keras.layers.Normalization(
        mean=list(mean), variance=list(np.square(std)), name="normalize"
    )(inputs)
    x = Patches(patch_size, shifted=shifted_patches, name="patches")(x)
    x = PatchEncoder(
        grid[0] * grid[1], projection_dim, grid_size=grid, class_token=class_token,
        position_embedding=position_embedding, num_registers=num_registers, patch_norm=shifted_patches,
        name="patch_encoder",
    )(x)
    if patch_dropout:  # no layer at 0: models without it keep their old graph and config
        x = PatchDropout(patch_dropout, num_prefix_tokens=int(class_token) + num_registers, name="patch_dropout")(x)
    x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(depth):
        x = TransformerBlock(
            num_heads, projection_dim, mlp_dim, dropout=dropout,
            attention_dropout=attention_dropout,
            drop_path=drop_path * i / max(depth - 1, 1), locality_attention=locality_attention,
            name=f"block_{i}",
        )(x)
    x = LayerNorm(epsilon=1e-6, name="encoder_norm")(x)
    x = SequencePooling(pooling, has_class_token=class_token, num_registers=num_registers, name="pool")(x)
    # Logits in float32 even under a mixed-precision policy (stable softmax).
    outputs = keras.layers.Dense(
        num_classes, kernel_initializer="zeros", name="head", dtype="float32"
    )(x)
    return keras.Model(inputs, outputs, name=name)


def vit_arguments(model):
    """Recovers the `build_vit` arguments of a model built by `build_vit`.

    Args:
        model: a `keras.Model` made by `build_vit` (or loaded from its
            `.keras` file).

    Returns:
        dict of `build_vit` keyword arguments (without `preset`).
    """
    patches = model.get_layer("patches")
    encoder = model.get_layer("patch_encoder")
    blocks = [layer for layer in model.layers if isinstance(layer, TransformerBlock)]
    norm = model.get_layer("normalize")
    _, height, width, channels = model.input_shape
    first = blocks[0]
    return dict(
        image_size=(height, width), patch_size=patches.patch_size,
        num_classes=model.get_layer("head").units, projection_dim=encoder.projection_dim,
        depth=len(blocks), num_heads=first.num_heads, mlp_dim=first.mlp_dim,
        pooling=model.get_layer("pool").mode, dropout=first.dropout,
        attention_dropout=first.attention_dropout, drop_path=blocks[-1].drop_path,
        position_embedding=encoder.position_embedding_type, num_registers=encoder.num_registers,
        shifted_patches=patches.shifted, locality_attention=first.locality_attention,
        patch_dropout=next((layer.rate for layer in model.layers if isinstance(layer, PatchDropout)), 0.0),
        channels=channels,
        mean=tuple(float(v) for v in np.ravel(norm.input_mean)),
        std=tuple(float(v) for v in np.sqrt(np.ravel(norm.input_variance))),
        name=model.name,
    )


def resize_vit(model, image_size):
    """Returns a copy of `model` for another input resolution.

    All weights are copied; the position embedding is resampled to the new
    patch grid (bilinear for learned embeddings, recomputed for sine-cosine),
    so a ViT trained on 32x32 images runs on, e.g., 48x48 ones.

    Args:
        model: a model made by `build_vit`.
        image_size: int or `(height, width)`, divisible by the patch size.

    Returns:
        A new `keras.Model`.
    """
    args = vit_arguments(model)
    args["image_size"] = _pair(image_size, "image_size")
    new = _build(**args)
    encoder = model.get_layer("patch_encoder")
    new_encoder = new.get_layer("patch_encoder")
    for old_layer, new_layer in zip(model.layers, new.layers):
        if old_layer.name == "patch_encoder":
            continue
        new_layer.set_weights(old_layer.get_weights())
    new_encoder.projection.set_weights(encoder.projection.get_weights())
    if encoder.patch_norm:
        new_encoder.patch_norm_layer.set_weights(encoder.patch_norm_layer.get_weights())
    if encoder.class_token:
        new_encoder.cls.assign(encoder.cls)
    if encoder.num_registers:
        new_encoder.registers.assign(encoder.registers)
    new_encoder.position.assign(encoder.resampled_position_embedding(new_encoder.grid_size))
    return new
