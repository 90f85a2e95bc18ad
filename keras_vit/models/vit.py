"""`ViT`: the Vision Transformer classifier, a functional `keras.Model` that owns its config.

    images (0..255) -> normalize -> Patches -> PatchEncoder [-> PatchDropout] -> dropout
        -> TransformerBlock x depth -> LayerNorm -> SequencePooling -> Dense head -> logits

(with `head_norm="pooled"` the LayerNorm comes after the pooling, as timm's `fc_norm`).

The model takes raw pixel values (float, 0 to 255, channels last) and returns
logits; normalization lives inside the model so that every exported file
takes the same input. Augmentation does not: see `keras_vit.training.augment`.

As keras-hub's backbones do, `ViT`'s constructor builds the functional graph
and `get_config()` holds the constructor arguments, so a saved model is
rebuilt from them. Files saved before `ViT` existed hold a plain functional
model of the same layers; they still load, and `vit_arguments` reads their
arguments back from the layers (`_legacy_vit_arguments`).
"""

from __future__ import annotations

import inspect
import types

import keras
import numpy as np

from keras_vit.layers import (
    PACKAGE,
    LayerNorm,
    PatchDropout,
    PatchEncoder,
    Patches,
    SequencePooling,
    TransformerBlock,
    pair,
)
from keras_vit.layers.common import positive_int
from keras_vit.models.presets import get_preset

# Per-channel statistics of the CIFAR-10 training images, in 0..255 units.
CIFAR10_MEAN = (125.3, 123.0, 113.9)
CIFAR10_STD = (63.0, 62.1, 66.7)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ViT(keras.Model):
    """A Vision Transformer classifier (Dosovitskiy et al. 2021) for small images.

    A functional model: calling it, `fit`, `save` and `get_layer` work as on
    any `keras.Model`. Its layers are named `images`, `normalize`, `patches`,
    `patch_encoder`, [`patch_dropout`,] `embedding_dropout`, `block_0` ...
    `block_{depth-1}`, `encoder_norm`, `pool` and `head` (`pool`, `head_norm`
    and `head` with `head_norm="pooled"`).

    Args:
        image_size: positive int or `(height, width)` of the input images
            (NumPy integers will do; bools and floats, even `32.0`, will not).
        patch_size: positive int, side of the square patches; must divide
            both sides.
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
            grows linearly from 0 in the first block (a single block gets
            all of it).
        position_embedding: `"learned"` or `"sincos"` (fixed 2-D).
        num_registers: int, learned register tokens after the class token
            (see `PatchEncoder`).
        shifted_patches: bool, Shifted Patch Tokenization (Lee et al. 2021):
            `Patches(shifted=True)` and a layer norm on the patch vectors
            (`PatchEncoder(patch_norm=True)`).
        locality_attention: bool, Locality Self-Attention (Lee et al. 2021)
            in every block (`TransformerBlock(locality_attention=True)`).
        patch_dropout: float in [0, 1), the share of patch tokens left out
            of each training image (`PatchDropout`, after the position
            embedding): cheaper steps and a regularizer; inference sees every
            token. At 0 the model has no such layer.
        channels: int, image channels.
        mean, std: per-channel pixel statistics (0..255 units) used by the
            model's own normalization layer.
        layer_norm_epsilon: float, epsilon of every LayerNorm (timm uses
            1e-6, Hugging Face's ViT 1e-12).
        class_token: bool or None, whether to prepend a class token; `None`
            (default) makes one for `pooling="token"` only. `True` with
            `"gap"` gives timm's mean-pooled heads on class-token models.
        distillation_token: bool, a DeiT distillation token after the class
            token; with `pooling="token"` the head reads both tokens (see
            `SequencePooling`).
        head_norm: `"tokens"` (default: the final LayerNorm on every token,
            then the pooling) or `"pooled"` (the pooling, then the
            LayerNorm, named `head_norm`: timm's `fc_norm`).
        name: model name; None (default) gives a unique one (`vit`,
            `vit_1`, ...), so that several ViTs can stand in one model.
            The copies `resize_vit` and `build_vit(**vit_arguments(model))`
            make get one of their own too; a config round trip
            (`ViT.from_config(model.get_config())`, loading a saved file)
            keeps the name, as it does for any Keras model.
        dtype: optional dtype policy of the layers (e.g. `"mixed_bfloat16"`);
            `None` takes the global policy. The head always computes float32
            logits.
        **kwargs: `trainable`.

    Raises:
        ValueError: `image_size` or `patch_size` is not a positive int (or
            pair of them), `image_size` is not divisible by `patch_size`,
            an unknown `pooling` or `head_norm`, `pooling="token"` without
            a class token, or `mean`/`std` without one value per channel.

    Example:

    ```python
    model = ViT(image_size=32, patch_size=8, projection_dim=32, depth=2, num_heads=2, mlp_dim=64)
    logits = model(np.zeros((1, 32, 32, 3), "float32"))  # (1, 10)
    same = ViT.from_config(model.get_config())  # the same network and name, new weights
    ```
    """

    def __init__(
        self,
        image_size=32,
        patch_size=4,
        num_classes=10,
        projection_dim=192,
        depth=9,
        num_heads=3,
        mlp_dim=384,
        pooling="token",
        dropout=0.0,
        attention_dropout=0.0,
        drop_path=0.0,
        position_embedding="learned",
        num_registers=0,
        shifted_patches=False,
        locality_attention=False,
        patch_dropout=0.0,
        channels=3,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        layer_norm_epsilon=1e-6,
        class_token=None,
        distillation_token=False,
        head_norm="tokens",
        name=None,
        dtype=None,
        **kwargs,
    ):
        unknown = sorted(set(kwargs) - {"trainable"})
        if unknown:
            raise TypeError(f"Unknown ViT arguments {unknown}.")
        height, width = pair(image_size, "image_size")
        patch_size = positive_int(patch_size, "patch_size")
        grid = patch_grid((height, width), patch_size)
        if pooling not in SequencePooling.MODES:
            raise ValueError(f"pooling must be one of {SequencePooling.MODES}, got {pooling!r}.")
        if head_norm not in ("tokens", "pooled"):
            raise ValueError(f"head_norm must be 'tokens' or 'pooled', got {head_norm!r}.")
        if len(mean) != channels or len(std) != channels:
            raise ValueError(
                f"mean and std need one value per channel (channels={channels}), got {len(mean)} and "
                f"{len(std)}; the defaults are CIFAR-10's 3 channels: pass mean=... and std=... for other images."
            )
        class_token = pooling == "token" if class_token is None else bool(class_token)
        if pooling == "token" and not class_token:
            raise ValueError("pooling='token' needs class_token=True (or None).")
        prefix_tokens = int(class_token) + int(bool(distillation_token)) + num_registers

        # === Functional model ===
        inputs = keras.Input((height, width, channels), name="images")
        x = keras.layers.Normalization(
            mean=list(mean), variance=list(np.square(std)), name="normalize", dtype=dtype
        )(inputs)
        x = Patches(patch_size, shifted=shifted_patches, name="patches", dtype=dtype)(x)
        x = PatchEncoder(
            grid[0] * grid[1],
            projection_dim,
            grid_size=grid,
            class_token=class_token,
            position_embedding=position_embedding,
            num_registers=num_registers,
            patch_norm=shifted_patches,
            distillation_token=distillation_token,
            name="patch_encoder",
            dtype=dtype,
        )(x)
        if patch_dropout:  # no layer at 0: models without it keep their old graph
            x = PatchDropout(
                patch_dropout,
                num_prefix_tokens=prefix_tokens,
                name="patch_dropout",
                dtype=dtype,
            )(x)
        x = keras.layers.Dropout(dropout, name="embedding_dropout", dtype=dtype)(x)
        for i in range(depth):
            # Stochastic depth grows linearly from 0 in the first block to drop_path in the last (a lone block
            # is the last one: it gets drop_path).
            rate = drop_path * i / (depth - 1) if depth > 1 else drop_path
            x = TransformerBlock(
                num_heads,
                projection_dim,
                mlp_dim,
                dropout=dropout,
                attention_dropout=attention_dropout,
                drop_path=rate,
                layer_norm_epsilon=layer_norm_epsilon,
                locality_attention=locality_attention,
                name=f"block_{i}",
                dtype=dtype,
            )(x)
        if head_norm == "tokens":
            x = LayerNorm(epsilon=layer_norm_epsilon, name="encoder_norm", dtype=dtype)(x)
        x = SequencePooling(
            pooling,
            has_class_token=class_token,
            num_registers=num_registers,
            distillation_token=distillation_token,
            name="pool",
            dtype=dtype,
        )(x)
        if head_norm == "pooled":
            x = LayerNorm(epsilon=layer_norm_epsilon, name="head_norm", dtype=dtype)(x)
        # Logits in float32 even under a mixed-precision policy (stable softmax).
        outputs = keras.layers.Dense(num_classes, kernel_initializer="zeros", name="head", dtype="float32")(x)
        super().__init__(inputs, outputs, name=name or _unique_name("vit"), **kwargs)

        # === Config ===
        self.image_size = (height, width)
        self.patch_size = patch_size
        self.num_classes = int(num_classes)
        self.projection_dim = int(projection_dim)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.pooling = pooling
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.drop_path = float(drop_path)
        self.position_embedding = position_embedding
        self.num_registers = int(num_registers)
        self.shifted_patches = bool(shifted_patches)
        self.locality_attention = bool(locality_attention)
        self.patch_dropout = float(patch_dropout)
        self.channels = int(channels)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.class_token = class_token
        self.distillation_token = bool(distillation_token)
        self.head_norm = head_norm
        if dtype is not None:
            self.dtype_policy = keras.dtype_policies.get(dtype)

    def get_config(self):
        # Not Functional.get_config (a graph of layer configs): the constructor rebuilds the graph.
        config = {argument: getattr(self, argument) for argument in _ARCHITECTURE}
        config.update(
            name=self.name, trainable=self.trainable, dtype=keras.dtype_policies.serialize(self.dtype_policy)
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def patch_grid(image_size, patch_size):
    """`(rows, columns)` of the patches of an image.

    Args:
        image_size: int or `(height, width)`, positive ints.
        patch_size: positive int, side of the square patches.

    Returns:
        `(rows, columns)`, Python ints.

    Raises:
        ValueError: a size that is not a positive int, or a `patch_size`
            that does not divide both sides.
    """
    height, width = pair(image_size, "image_size")
    patch_size = positive_int(patch_size, "patch_size")
    if height % patch_size or width % patch_size:
        raise ValueError(f"image_size {height}x{width} is not divisible by patch_size={patch_size}.")
    return height // patch_size, width // patch_size


def _unique_name(prefix):
    """`prefix`, then `prefix_1`, `prefix_2`, ...: Keras' naming of unnamed layers, without its snake case
    of the class name (`vi_t`)."""
    uid = keras.backend.get_uid(prefix)
    return prefix if uid == 1 else f"{prefix}_{uid - 1}"


def _constructor_defaults(cls):
    """`{argument: default}` of `cls.__init__`'s keyword arguments, in order (`**kwargs` left out)."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


# Every ViT constructor argument and its default: what `build_vit` and `--model-arg` accept.
VIT_ARGUMENTS = types.MappingProxyType(_constructor_defaults(ViT))
# The arguments that describe the network (what `vit_arguments` returns), in constructor order.
_ARCHITECTURE = tuple(argument for argument in VIT_ARGUMENTS if argument not in ("name", "dtype"))


def build_vit(preset=None, **kwargs):
    """Builds a `ViT` from a preset and/or constructor arguments.

    Args:
        preset: optional preset name (see `keras_vit.PRESETS`). Its values
            replace the constructor's defaults; any argument given explicitly
            overrides them, e.g. `build_vit("vit_cifar10", num_classes=100)`.
        **kwargs: `ViT` constructor arguments (`VIT_ARGUMENTS`).

    Returns:
        A `ViT` mapping float images `(batch, height, width, channels)` with
        values in 0..255 to float32 logits `(batch, num_classes)`.

    Raises:
        TypeError: an argument `ViT` does not take.
        ValueError: an unknown preset, or arguments `ViT` refuses.
    """
    unknown = sorted(set(kwargs) - set(VIT_ARGUMENTS) - {"trainable"})  # trainable: get_config holds it
    if unknown:
        raise TypeError(f"Unknown build_vit arguments {unknown}; known: {sorted(VIT_ARGUMENTS)}.")
    config = get_preset(preset) if preset is not None else {}
    config.update(kwargs)
    return ViT(**config)


def vit_arguments(model):
    """The constructor arguments of a ViT that describe its network: all but `name` and `dtype`.

    `build_vit(**vit_arguments(model))` builds the same network (new
    weights) under the caller's dtype policy, with a new unique name (so
    that it can stand beside `model` in one model); pass `name=model.name`
    as well to keep the name.

    Args:
        model: a `ViT`, or a plain functional model saved by `build_vit`
            before `ViT` existed (such as the shipped `vit_cifar10.keras`):
            its arguments are read from its layers.

    Returns:
        dict of `build_vit` keyword arguments (without `preset`, `name` and
        `dtype`).
    """
    if isinstance(model, ViT):
        config = model.get_config()
        return {argument: config[argument] for argument in _ARCHITECTURE}
    return _legacy_vit_arguments(model)


def _legacy_vit_arguments(model):
    """The legacy reader: a pre-`ViT` functional model's arguments, recovered from its layers' names and
    attributes."""
    patches = model.get_layer("patches")
    encoder = model.get_layer("patch_encoder")
    blocks = [layer for layer in model.layers if isinstance(layer, TransformerBlock)]
    norm = model.get_layer("normalize")
    _, height, width, channels = model.input_shape
    first = blocks[0]
    return dict(
        image_size=(height, width),
        patch_size=patches.patch_size,
        num_classes=model.get_layer("head").units,
        projection_dim=encoder.projection_dim,
        depth=len(blocks),
        num_heads=first.num_heads,
        mlp_dim=first.mlp_dim,
        pooling=model.get_layer("pool").mode,
        dropout=first.dropout,
        attention_dropout=first.attention_dropout,
        drop_path=blocks[-1].drop_path,
        position_embedding=encoder.position_embedding_type,
        num_registers=encoder.num_registers,
        shifted_patches=patches.shifted,
        locality_attention=first.locality_attention,
        patch_dropout=next((layer.rate for layer in model.layers if isinstance(layer, PatchDropout)), 0.0),
        channels=channels,
        mean=tuple(float(v) for v in np.ravel(norm.input_mean)),
        std=tuple(float(v) for v in np.sqrt(np.ravel(norm.input_variance))),
        layer_norm_epsilon=first.layer_norm_epsilon,
        class_token=encoder.class_token,
        distillation_token=getattr(encoder, "distillation_token", False),
        head_norm="pooled" if any(layer.name == "head_norm" for layer in model.layers) else "tokens",
    )


# The layer types of a ViT in graph order, each with how many it has ("1", "?": none or one, "+": one or more).
_VIT_CHAIN = (
    (keras.layers.InputLayer, "1"),
    (keras.layers.Normalization, "1"),
    (Patches, "1"),
    (PatchEncoder, "1"),
    (PatchDropout, "?"),
    (keras.layers.Dropout, "1"),
    (TransformerBlock, "+"),
    (LayerNorm, "?"),
    (SequencePooling, "1"),
    (LayerNorm, "?"),
    (keras.layers.Dense, "1"),
)


def vit_layers(model):
    """`model`'s layers in graph order when they are a ViT's chain (`_VIT_CHAIN`: the graph `ViT` and the legacy
    `build_vit` make, one layer feeding the next), else None: what walks a ViT layer by layer (the export's
    inference pass, `keras_vit.attention_maps`) starts from it."""
    layers = list(model.layers)
    return layers if _is_vit_chain(layers) else None


def _is_vit_chain(layers):
    """Whether `layers` (a model's, in order) have a ViT's layer types in a ViT's order (`_VIT_CHAIN`)."""
    position = 0
    for kind, count in _VIT_CHAIN:
        seen = 0
        while position < len(layers) and type(layers[position]) is kind and (count == "+" or seen < 1):
            position, seen = position + 1, seen + 1
        if seen == 0 and count in ("1", "+"):
            return False
    return position == len(layers)


def class_token_forward(model):
    """`model`'s inference pass with the last block cut down to the tokens its head reads, for export.

    A class-token head (`pooling="token"`) reads one token of the last
    block's output (two with a distillation token). The block's other
    tokens (their queries, attention, MLP and norms) are dead work at
    inference; this pass computes only the tokens read
    (`TransformerBlock(query_tokens=...)`): the same logits up to float
    rounding, with most of the last block's matrix products left out
    (about a fifth of a 4-block model's at 65 tokens, a twelfth of a
    9-block one's).

    Args:
        model: a `ViT` (or a legacy functional one, see `vit_arguments`).

    Returns:
        A function `images -> logits` computing `model(images,
        training=False)`, or None where the head reads every token
        (`"gap"`, `"seqpool"`) or the model is not a ViT's chain of layers.
    """
    layers = vit_layers(model)
    if layers is None:
        return None
    pools = [layer for layer in layers if isinstance(layer, SequencePooling)]
    if pools[0].mode != "token":
        return None
    last_block = max(i for i, layer in enumerate(layers) if isinstance(layer, TransformerBlock))
    read_tokens = 1 + int(pools[0].distillation_token)

    def forward(images):
        x = images
        for i, layer in enumerate(layers[1:], start=1):
            if i == last_block:
                x = layer(x, training=False, query_tokens=read_tokens)
            else:
                x = layer(x, training=False)
        return x

    return forward


def resize_vit(model, image_size, num_classes=None, name=None):
    """Returns a copy of `model` for another input resolution (and, optionally, another class count).

    All weights are copied; the position embedding is resampled to the new
    patch grid (bicubic for learned embeddings, recomputed for sine-cosine),
    so a ViT trained on 32x32 images runs on, e.g., 48x48 ones. With another
    `num_classes` the head is new (zero weights, as every new ViT's): the
    starting point for fine-tuning a pretrained model on other classes.

    Args:
        model: a `ViT` (or a legacy functional one, see `vit_arguments`).
        image_size: int or `(height, width)`, divisible by the patch size.
        num_classes: optional int, the class count of a new head; None (or
            the model's own count) keeps the head.
        name: optional name of the copy; None (default) gives it a new
            unique one (`vit_1`, ...), so that it can stand beside `model`
            in one model.

    Returns:
        A new `ViT`, under the global dtype policy.

    Raises:
        ValueError: `image_size` is not a positive int (or pair of them)
            or is not divisible by the patch size.
    """
    config = vit_arguments(model)
    config["image_size"] = pair(image_size, "image_size")
    # A unique name, never the source's: a model loaded from a file keeps its name (`vit`), which this process's
    # count may not have passed yet.
    if name is None:
        name = _unique_name("vit")
        while name == model.name:
            name = _unique_name("vit")
    new_head = num_classes is not None and int(num_classes) != config["num_classes"]
    if new_head:
        config["num_classes"] = int(num_classes)
    new = ViT(**config, name=name)
    encoder = model.get_layer("patch_encoder")
    new_encoder = new.get_layer("patch_encoder")
    for old_layer, new_layer in zip(model.layers, new.layers, strict=True):
        if old_layer.name == "patch_encoder" or (new_head and old_layer.name == "head"):
            continue
        new_layer.set_weights(old_layer.get_weights())
    new_encoder.projection.set_weights(encoder.projection.get_weights())
    if encoder.patch_norm:
        new_encoder.patch_norm_layer.set_weights(encoder.patch_norm_layer.get_weights())
    if encoder.class_token:
        new_encoder.cls.assign(encoder.cls)
    if getattr(encoder, "distillation_token", False):
        new_encoder.dist.assign(encoder.dist)
    if encoder.num_registers:
        new_encoder.registers.assign(encoder.registers)
    new_encoder.position.assign(encoder.resampled_position_embedding(new_encoder.grid_size))
    return new
