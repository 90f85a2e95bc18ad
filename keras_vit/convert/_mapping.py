"""The shared half of the converters: a ViT's architecture and timm-named weights -> a keras_vit `ViT`.

Every converter reads its source into a `SourceViT` (the architecture) and a
dict of float32 numpy arrays named as in timm's `VisionTransformer` state
dict (the canonical layout here: `patch_embed.proj.weight` `(dim, channels,
patch, patch)`, `blocks.{i}.attn.qkv.weight` `(3 * dim, dim)`, torch `Linear`
weights `(out, in)`, ...). `build_converted_vit` builds the keras_vit model
and copies every array into it; an array it does not use is an error.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_vit.layers import pair
from keras_vit.models.vit import ViT, resize_vit


@dataclasses.dataclass(frozen=True)
class SourceViT:
    """The architecture of a source ViT, in the terms keras_vit's `ViT` takes.

    Attributes:
        image_size: `(height, width)` the source was built for.
        patch_size: int, side of the square patches.
        width: int, token width.
        depth: int, number of blocks.
        num_heads: int, attention heads.
        mlp_dim: int, hidden width of the MLPs.
        num_classes: int or None; None for a source without a classifier.
        channels: int, image channels.
        class_token: bool.
        distillation_token: bool (DeiT).
        pooling: `"token"` or `"gap"` (mean of the patch tokens).
        head_norm: `"tokens"` (final norm on every token) or `"pooled"`
            (timm's `fc_norm`: after the pooling).
        layer_norm_epsilon: float, shared by every LayerNorm.
    """

    image_size: tuple
    patch_size: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    num_classes: int | None
    channels: int = 3
    class_token: bool = True
    distillation_token: bool = False
    pooling: str = "token"
    head_norm: str = "tokens"
    layer_norm_epsilon: float = 1e-6


class MissingStatisticsError(ValueError):
    """Neither the caller nor the source gives the input mean and std (`pixel_statistics`)."""


def pixel_statistics(mean, std, source_mean, source_std, source):
    """The model's `mean` and `std` in 0..255 units, from the given or the source's 0..1 statistics.

    Args:
        mean, std: per-channel statistics given by the caller, 0..1 units
            (as timm's `pretrained_cfg` and Hugging Face's image processors
            print them), or None.
        source_mean, source_std: the source's own statistics (0..1), or None
            when it does not carry them.
        source: a few words naming the source, for the error message.

    Returns:
        `(mean, std)`, tuples of floats in 0..255 units.

    Raises:
        MissingStatisticsError: neither the caller nor the source gives them.
        ValueError: only one of the two is given, or they are not in 0..1
            units.
    """
    if (mean is None) != (std is None):
        raise ValueError("Pass both `mean` and `std` (0..1 units), or neither.")
    if mean is None:
        mean, std = source_mean, source_std
    if mean is None or std is None:
        raise MissingStatisticsError(
            f"{source} does not say its input normalization: pass `mean` and `std` (per channel, 0..1 "
            "units, as the checkpoint's image processor or timm's pretrained_cfg gives them)."
        )
    mean = tuple(float(v) for v in np.ravel(mean))
    std = tuple(float(v) for v in np.ravel(std))
    if max(map(abs, mean + std)) > 1.0 or min(std) <= 0:
        raise ValueError(
            f"`mean`={mean} and `std`={std} must be in 0..1 units (0.485, not 123.7), with std > 0."
        )
    return tuple(255.0 * v for v in mean), tuple(255.0 * v for v in std)


class _Weights:
    """The source's arrays by timm name; `take` hands each out once, `left` lists what nobody took."""

    def __init__(self, arrays):
        self._arrays = {name: np.asarray(value, dtype="float32") for name, value in arrays.items()}
        self._taken = set()

    def take(self, name, shape=None, default=None):
        if name not in self._arrays:
            if default is not None:
                return default
            raise ValueError(f"The checkpoint has no `{name}`.")
        value = self._arrays[name]
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ValueError(f"`{name}` has shape {tuple(value.shape)}, expected {tuple(shape)}.")
        self._taken.add(name)
        return value

    def left(self):
        return sorted(set(self._arrays) - self._taken)


def build_converted_vit(spec, arrays, mean, std, image_size=None, num_classes=None, name="vit"):
    """Builds a keras_vit `ViT` with `spec`'s architecture and the weights in `arrays`.

    Args:
        spec: a `SourceViT`.
        arrays: dict of timm-named arrays (see the module docstring).
        mean, std: the model's pixel statistics, 0..255 units.
        image_size: optional int or `(height, width)` to run at; the
            position embedding is then resampled (`resize_vit`).
        num_classes: the class count of a new (zero) head, for a source
            without a classifier; must be None when the source has one.
        name: the model's name.

    Returns:
        A float32 `ViT` that takes 0..255 pixels.

    Raises:
        ValueError: a missing or misshapen array, an array the model does
            not use, or a head that is missing / given twice.
    """
    weights = _Weights(arrays)
    d, p, c = spec.width, spec.patch_size, spec.channels
    if spec.num_classes is None and num_classes is None:
        raise ValueError("The source has no classifier: pass `num_classes` for a new head.")
    if spec.num_classes is not None and num_classes is not None and num_classes != spec.num_classes:
        raise ValueError(
            f"The source has a {spec.num_classes}-class head; `num_classes`={num_classes} would drop it. "
            "Convert, then replace the head when fine-tuning."
        )
    model = ViT(
        image_size=spec.image_size,
        patch_size=p,
        num_classes=spec.num_classes if spec.num_classes is not None else num_classes,
        projection_dim=d,
        depth=spec.depth,
        num_heads=spec.num_heads,
        mlp_dim=spec.mlp_dim,
        pooling=spec.pooling,
        channels=c,
        mean=mean,
        std=std,
        layer_norm_epsilon=spec.layer_norm_epsilon,
        class_token=spec.class_token,
        distillation_token=spec.distillation_token,
        head_norm=spec.head_norm,
        name=name,
        dtype="float32",
    )
    zeros = np.zeros((d,), "float32")

    encoder = model.get_layer("patch_encoder")
    # Conv (dim, channels, p, p) -> rows of a (row, column, channel)-ordered patch vector, as `Patches` cuts.
    kernel = weights.take("patch_embed.proj.weight", (d, c, p, p)).transpose(2, 3, 1, 0).reshape(p * p * c, d)
    encoder.projection.set_weights([kernel, weights.take("patch_embed.proj.bias", (d,), zeros)])
    if spec.class_token:
        encoder.cls.assign(weights.take("cls_token", (1, 1, d)))
    if spec.distillation_token:
        encoder.dist.assign(weights.take("dist_token", (1, 1, d)))
    encoder.position.assign(weights.take("pos_embed", tuple(encoder.position.shape)))

    heads = spec.num_heads
    for i in range(spec.depth):
        block, prefix = model.get_layer(f"block_{i}"), f"blocks.{i}."
        block.attention_norm.set_weights(_norm(weights, prefix + "norm1", d))
        qkv = weights.take(prefix + "attn.qkv.weight", (3 * d, d))
        qkv_bias = weights.take(prefix + "attn.qkv.bias", (3 * d,), np.zeros((3 * d,), "float32"))
        attention = block.attention
        for j, dense in enumerate((attention.query_dense, attention.key_dense, attention.value_dense)):
            rows = slice(j * d, (j + 1) * d)
            dense.set_weights([qkv[rows].T.reshape(d, heads, d // heads), qkv_bias[rows].reshape(heads, -1)])
        # LayerScale (`ls1`, `ls2`) scales a branch's output per channel: folded into its last Linear.
        scale = weights.take(prefix + "ls1.gamma", (d,), np.ones((d,), "float32"))
        proj = weights.take(prefix + "attn.proj.weight", (d, d)) * scale[:, None]
        proj_bias = weights.take(prefix + "attn.proj.bias", (d,), zeros) * scale
        attention.output_dense.set_weights([proj.T.reshape(heads, d // heads, d), proj_bias])
        block.mlp_norm.set_weights(_norm(weights, prefix + "norm2", d))
        m = spec.mlp_dim
        fc1 = weights.take(prefix + "mlp.fc1.weight", (m, d))
        block.mlp_hidden.set_weights(
            [fc1.T, weights.take(prefix + "mlp.fc1.bias", (m,), np.zeros((m,), "f4"))]
        )
        scale = weights.take(prefix + "ls2.gamma", (d,), np.ones((d,), "float32"))
        fc2 = weights.take(prefix + "mlp.fc2.weight", (d, m)) * scale[:, None]
        block.mlp_output.set_weights([fc2.T, weights.take(prefix + "mlp.fc2.bias", (d,), zeros) * scale])

    if spec.head_norm == "tokens":
        model.get_layer("encoder_norm").set_weights(_norm(weights, "norm", d))
    else:
        model.get_layer("head_norm").set_weights(_norm(weights, "fc_norm", d))
    if spec.num_classes is not None:
        k = spec.num_classes
        kernel = weights.take("head.weight", (k, d)).T
        bias = weights.take("head.bias", (k,), np.zeros((k,), "float32"))
        if spec.distillation_token:
            # DeiT averages its two heads' logits: one Dense over [class token, distillation token].
            kernel_dist = weights.take("head_dist.weight", (k, d)).T
            bias_dist = weights.take("head_dist.bias", (k,), np.zeros((k,), "float32"))
            kernel, bias = np.concatenate([kernel, kernel_dist]) / 2, (bias + bias_dist) / 2
        model.get_layer("head").set_weights([kernel, bias])

    left = weights.left()
    if left:
        raise ValueError(f"The converter would drop these source weights: {left}.")
    if image_size is not None and pair(image_size, "image_size") != tuple(spec.image_size):
        model = resize_vit(model, image_size, name=model.name)  # the copy stands in for it
    return model


def _norm(weights, name, width):
    return [weights.take(name + ".weight", (width,)), weights.take(name + ".bias", (width,))]
