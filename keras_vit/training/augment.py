"""Data augmentation that runs inside the training step, on the accelerator.

Everything here is written with `keras.ops` on whole batches (per-sample
randomness, no Python loops over images), so it runs under `jit` on the
JAX backend, inside `tf.function` on TensorFlow, and on PyTorch. These
layers are used by `keras_vit.training.trainer.ViTTrainer` and are never part of the
model that gets saved or exported (random layers break the converters).

Images are float tensors of raw pixel values in 0..255, `(batch, height,
width, channels)`, channels last.

Keras 3 has layers for each of these jobs; each was measured beside its
Keras counterpart in the same train step, and the comment above each class
says why it is kept (the table: docs/results.md, "Augmentation").

* `RandomCropFlip`: pad (reflect) and crop back at a random offset, mirror.
* `RandAugment`: a vectorised RandAugment (Cubuk et al. 2020): per image,
  `num_ops` operations drawn from a list of colour and geometric ones, each
  at a random strength up to `magnitude` (out of 10).
* `RandomErasing`: blanks a random rectangle with noise (Zhong et al. 2020).
* `MixUpCutMix`: mixes pairs of images and their one-hot labels, per batch.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from keras_vit.layers import PACKAGE
from keras_vit.training.recipes import AUGMENT_RECIPES  # noqa: F401 (moved to recipes.py; still importable here)


class ShareSeedGenerator(keras.random.SeedGenerator):
    """Keras' `SeedGenerator`, except that under a `tf.distribute` strategy each device draws its own numbers.

    Each device of a `MirroredStrategy` runs the step on its share of the
    batch with its own copy of the generator's state: with Keras' generator,
    every share would be augmented alike (the same crops, flips and
    operations). Here the seed of each draw is offset by the device's index.
    Under JAX (one program over the global batch) and on one device, the
    draws are Keras' own.
    """

    def next(self, ordered=True):
        seed = super().next(ordered)
        if keras.backend.backend() != "tensorflow":
            return seed
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return seed
        # A large odd step on the first word: the devices' streams never meet the second word's increments.
        replica = tf.cast(context.replica_id_in_sync_group, seed.dtype)
        return seed + tf.stack([replica * tf.constant(104729, seed.dtype), tf.zeros((), seed.dtype)])


def _batch_size(images):
    return ops.shape(images)[0]


def _static_hwc(images, layer):
    _, height, width, channels = images.shape
    if None in (height, width, channels):
        raise ValueError(f"{layer} needs static image sizes, got shape {images.shape}.")
    return height, width, channels


class AugmentationLayer(keras.layers.Layer):
    """Base of the augmentation layers: float32 under every dtype policy.

    Under mixed_bfloat16 Keras would cast the pixels to bfloat16 on entry, and
    the TensorFlow backend refuses the bfloat16 x float32 products of the
    random strengths (JAX promotes them). Pixels need no lower precision; the
    model casts its input to its own dtype. An explicit `dtype` still wins.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)


# Kept over keras.layers.RandomTranslation + RandomFlip: faster under JAX, as fast under TensorFlow (measured in
# docs/results.md, "Augmentation: keras_vit's layers beside Keras' own", for this and the layers below).
@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomCropFlip(AugmentationLayer):
    """Random crop with reflect padding, then a random horizontal flip.

    Args:
        padding: int, pixels of reflect padding on each side; the crop
            offset is uniform in `[0, 2 * padding]`.
        flip: bool, whether to mirror half of the images left-right.
        seed: optional int.

    Call arguments:
        images: float tensor `(batch, height, width, channels)`.
        training: the layer is the identity unless True.

    Returns:
        Tensor of the same shape and dtype.
    """

    def __init__(self, padding=4, flip=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)
        self.flip = bool(flip)
        self.seed = seed
        self.seed_generator = ShareSeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        height, width, channels = _static_hwc(images, "RandomCropFlip")
        batch = _batch_size(images)
        p = self.padding
        if p > 0:
            padded = ops.pad(images, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")
            offset_y = keras.random.randint((batch, 1), 0, 2 * p + 1, seed=self.seed_generator)
            offset_x = keras.random.randint((batch, 1), 0, 2 * p + 1, seed=self.seed_generator)
            rows = offset_y + ops.arange(height)[None]  # (batch, height)
            cols = offset_x + ops.arange(width)[None]  # (batch, width)
            # One gather over the flattened padded batch: index of pixel (b, r, c).
            padded_h, padded_w = height + 2 * p, width + 2 * p
            base = ops.arange(batch)[:, None, None] * (padded_h * padded_w)
            index = base + rows[:, :, None] * padded_w + cols[:, None, :]
            flat = ops.reshape(padded, (-1, channels))
            images = ops.reshape(
                ops.take(flat, ops.reshape(index, (-1,)), axis=0), (-1, height, width, channels)
            )
        if self.flip:
            mirror = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator) < 0.5
            images = ops.where(mirror, ops.flip(images, axis=2), images)
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"padding": self.padding, "flip": self.flip, "seed": self.seed})
        return config


def _blend(degenerate, images, factor):
    """`degenerate + factor * (images - degenerate)`: PIL's ImageEnhance."""
    return degenerate + factor * (images - degenerate)


def _grayscale(images):
    # ITU-R 601-2 luma, as PIL's convert("L"). Channel slices, not a sum over a
    # length-3 axis: the same numbers, much faster under XLA on the CPU.
    return 0.299 * images[..., 0:1] + 0.587 * images[..., 1:2] + 0.114 * images[..., 2:3]


# The colour operations: f(images, strength in [0, 1], sign in {-1, 1}).
def _identity(images, strength, sign):
    return images


def _brightness(images, strength, sign):
    return images * (1.0 + 0.9 * strength * sign)


def _contrast(images, strength, sign):
    mean = ops.mean(_grayscale(images), axis=(1, 2, 3), keepdims=True)
    return _blend(mean, images, 1.0 + 0.9 * strength * sign)


def _color(images, strength, sign):
    return _blend(_grayscale(images), images, 1.0 + 0.9 * strength * sign)


def _solarize(images, strength, sign):
    threshold = 256.0 - 256.0 * strength
    return ops.where(images >= threshold, 255.0 - images, images)


def _posterize(images, strength, sign):
    # Keep 8 - 4*strength bits (rounded), as RandAugment's posterize.
    step = ops.power(2.0, ops.round(4.0 * strength))
    return ops.floor(images / step) * step


def _autocontrast(images, strength, sign):
    # Each channel stretched to 0..255; a flat channel is left as it is (PIL's ImageOps.autocontrast).
    low = ops.min(images, axis=(1, 2), keepdims=True)
    high = ops.max(images, axis=(1, 2), keepdims=True)
    stretched = (images - low) * (255.0 / ops.maximum(high - low, 1.0))
    return ops.where(high > low, stretched, images)


def _sharpness(images, strength, sign):
    # Blend with PIL's SMOOTH filter ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13), which,
    # as in PIL, leaves the border pixels as they are. Written as nine shifted
    # adds (one fused elementwise pass) instead of a depthwise convolution.
    height, width, _ = _static_hwc(images, "RandAugment")
    padded = ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    box = sum(padded[:, dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))
    smooth = (box + 4.0 * images) / 13.0
    interior = np.zeros((1, height, width, 1), bool)
    interior[:, 1:-1, 1:-1] = True
    smooth = ops.where(interior, smooth, images)
    return _blend(smooth, images, 1.0 + 0.9 * strength * sign)


COLOR_OPS = (_identity, _brightness, _contrast, _color, _solarize, _posterize, _autocontrast, _sharpness)
GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")


def bilinear_warp(images, transform, fill_value=128.0):
    """Affine warp of a batch with bilinear sampling and a constant fill.

    Output pixel `(x, y)` of image `i` samples the input at
    `(a0 x + a1 y + a2, b0 x + b1 y + b2)`, with `transform[i] = (a0, a1, a2,
    b0, b1, b2)`: the convention of `keras.ops.image.affine_transform`, whose
    `bilinear`/`constant` result this reproduces. It reads the four
    neighbouring pixels (all channels at once) from the flattened batch, where
    Keras' JAX version interpolates in three dimensions over eight
    neighbours, several times slower.

    Args:
        images: float tensor `(batch, height, width, channels)`.
        transform: float tensor `(batch, 6)`.
        fill_value: value of pixels sampled from outside the image.

    Returns:
        Tensor like `images`.
    """
    height, width, channels = _static_hwc(images, "bilinear_warp")
    batch = _batch_size(images)
    # Tensors first: NumPy arrays (as a caller may pass) do not mix with torch tensors in arithmetic.
    images, transform = ops.convert_to_tensor(images), ops.convert_to_tensor(transform, "float32")
    grid_y, grid_x = np.meshgrid(
        np.arange(height, dtype="float32"), np.arange(width, dtype="float32"), indexing="ij"
    )
    grid_x, grid_y = grid_x.reshape(1, -1), grid_y.reshape(1, -1)  # (1, pixels)
    a0, a1, a2, b0, b1, b2 = (transform[:, k : k + 1] for k in range(6))
    source_x = a0 * grid_x + a1 * grid_y + a2  # (batch, pixels)
    source_y = b0 * grid_x + b1 * grid_y + b2
    x0, y0 = ops.floor(source_x), ops.floor(source_y)
    weight_x, weight_y = source_x - x0, source_y - y0
    x0, y0 = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    flat = ops.reshape(images, (-1, channels))
    base = ops.arange(batch, dtype="int32")[:, None] * (height * width)

    def corner(y, x):
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        index = base + ops.clip(y, 0, height - 1) * width + ops.clip(x, 0, width - 1)
        values = ops.reshape(ops.take(flat, ops.reshape(index, (-1,)), axis=0), (batch, -1, channels))
        return ops.where(inside[..., None], values, ops.cast(fill_value, images.dtype))

    weight_x, weight_y = weight_x[..., None], weight_y[..., None]
    top = (1 - weight_x) * corner(y0, x0) + weight_x * corner(y0, x0 + 1)
    bottom = (1 - weight_x) * corner(y0 + 1, x0) + weight_x * corner(y0 + 1, x0 + 1)
    return ops.reshape((1 - weight_y) * top + weight_y * bottom, (-1, height, width, channels))


# Kept over keras.layers.RandAugment: a faster step on both backends, an operation drawn per image.
@keras.saving.register_keras_serializable(package=PACKAGE)
class RandAugment(AugmentationLayer):
    """A vectorised RandAugment: random colour and geometric ops per image.

    For each of `num_ops` rounds every image draws one operation uniformly
    from identity, brightness, contrast, colour, solarize, posterize,
    autocontrast, sharpness, rotate (up to 30 degrees), shear x/y (up to
    0.3), translate x/y (up to 30% of the side); its strength is uniform in
    `[0, magnitude / 10]` with a random sign, as in TrivialAugment's
    sampling. Colour ops are computed for the whole batch and selected per
    image (cheap at CIFAR sizes). The geometric ops of all rounds are composed
    into one affine map per image and applied once at the end, by one
    bilinear warp: the same images as warping round by round, except that
    a colour op drawn after a geometric one no longer touches the filled
    border, and one resampling blurs less than two.

    Args:
        num_ops: int, operations applied in sequence to each image.
        magnitude: float in `[0, 10]`, the largest strength.
        fill_value: float, pixel value for areas warped in from outside.
        seed: optional int.

    Call arguments:
        images: float tensor `(batch, height, width, channels)`, 0..255.
        training: the layer is the identity unless True.

    Returns:
        Tensor of the same shape, clipped to 0..255.
    """

    def __init__(self, num_ops=2, magnitude=9.0, fill_value=128.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= magnitude <= 10:
            raise ValueError(f"magnitude must be in [0, 10], got {magnitude}.")
        self.num_ops = int(num_ops)
        self.magnitude = float(magnitude)
        self.fill_value = float(fill_value)
        self.seed = seed
        self.seed_generator = ShareSeedGenerator(seed)

    def _affine(self, images, op, strength, sign):
        """This round's sampling map per image, `(batch, 3, 3)` (identity for colour ops)."""
        height, width, _ = _static_hwc(images, "RandAugment")
        first_geometric = len(COLOR_OPS)

        def amount(name, scale):
            chosen = ops.equal(op, first_geometric + GEOMETRIC_OPS.index(name))
            return ops.where(chosen, strength * sign * scale, ops.zeros_like(strength))

        angle = amount("rotate", math.radians(30.0))
        shear_x, shear_y = amount("shear_x", 0.3), amount("shear_y", 0.3)
        shift_x, shift_y = amount("translate_x", 0.3 * width), amount("translate_y", 0.3 * height)
        # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2),
        # about the image centre; only one of the four is non-zero per image.
        cos, sin = ops.cos(angle), ops.sin(angle)
        a0, a1 = cos, -sin + shear_x
        b0, b1 = sin + shear_y, cos
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        a2 = cx - a0 * cx - a1 * cy + shift_x
        b2 = cy - b0 * cx - b1 * cy + shift_y
        zeros, ones = ops.zeros_like(angle), ops.ones_like(angle)
        return ops.reshape(ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros, ones], axis=1), (-1, 3, 3))

    def call(self, images, training=None):
        if not training or self.num_ops == 0 or self.magnitude == 0:
            return images
        batch = _batch_size(images)
        num_choices = len(COLOR_OPS) + len(GEOMETRIC_OPS)
        sampling = None  # input position of each output pixel, composed over the rounds
        for _ in range(self.num_ops):
            op = keras.random.randint((batch,), 0, num_choices, seed=self.seed_generator)
            strength = keras.random.uniform((batch,), 0.0, self.magnitude / 10.0, seed=self.seed_generator)
            sign = ops.where(keras.random.uniform((batch,), seed=self.seed_generator) < 0.5, -1.0, 1.0)
            strength4, sign4 = ops.reshape(strength, (-1, 1, 1, 1)), ops.reshape(sign, (-1, 1, 1, 1))
            op4 = ops.reshape(op, (-1, 1, 1, 1))
            out = images
            for index, fn in enumerate(COLOR_OPS[1:], start=1):
                out = ops.where(ops.equal(op4, index), fn(images, strength4, sign4), out)
            images = ops.clip(out, 0.0, 255.0)
            # A later round's map is applied first: out2(p) = out1(M2 p) = in(M1 M2 p).
            matrix = self._affine(images, op, strength, sign)
            sampling = matrix if sampling is None else ops.matmul(sampling, matrix)
        images = bilinear_warp(images, ops.reshape(sampling, (-1, 9))[:, :6], self.fill_value)
        return ops.clip(images, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_ops": self.num_ops,
                "magnitude": self.magnitude,
                "fill_value": self.fill_value,
                "seed": self.seed,
            }
        )
        return config


# Kept over keras.layers.RandomErasing: faster on TensorFlow, uniform noise in the box.
@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomErasing(AugmentationLayer):
    """Replaces a random rectangle of some images with uniform noise.

    Args:
        rate: float, probability that an image gets a rectangle.
        area: `(min, max)` fraction of the image area the rectangle covers.
        aspect: `(min, max)` aspect ratio, sampled log-uniformly.
        seed: optional int.

    Call arguments:
        images: float tensor `(batch, height, width, channels)`, 0..255.
        training: the layer is the identity unless True.

    Returns:
        Tensor of the same shape.
    """

    def __init__(self, rate=0.25, area=(0.02, 0.25), aspect=(0.3, 3.3), seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.area = tuple(float(a) for a in area)
        self.aspect = tuple(float(a) for a in aspect)
        self.seed = seed
        self.seed_generator = ShareSeedGenerator(seed)

    def call(self, images, training=None):
        if not training or self.rate == 0:
            return images
        height, width, _ = _static_hwc(images, "RandomErasing")
        batch = _batch_size(images)

        def uniform(low=0.0, high=1.0):
            return keras.random.uniform((batch, 1, 1, 1), low, high, seed=self.seed_generator)

        area = uniform(*self.area) * (height * width)
        log_aspect = uniform(math.log(self.aspect[0]), math.log(self.aspect[1]))
        box_h = ops.minimum(ops.sqrt(area * ops.exp(log_aspect)), float(height))
        box_w = ops.minimum(ops.sqrt(area / ops.exp(log_aspect)), float(width))
        top = uniform() * (height - box_h)
        left = uniform() * (width - box_w)
        rows = ops.reshape(ops.arange(height, dtype="float32"), (1, height, 1, 1))
        cols = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, width, 1))
        inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
        erase = inside & (uniform() < self.rate)
        noise = keras.random.uniform(ops.shape(images), 0.0, 255.0, seed=self.seed_generator)
        return ops.where(erase, ops.cast(noise, images.dtype), images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "area": self.area, "aspect": self.aspect, "seed": self.seed})
        return config


def _log_standard_gamma(shape, alpha, seed, candidates):
    """The logarithm of Gamma(alpha, 1) samples by Marsaglia and Tsang's method, without a loop.

    The method draws (normal, uniform) pairs until one is accepted; here
    `candidates` pairs are drawn at once and the first accepted one is kept.
    Each is accepted with probability above 0.95 (for the shape >= 1 that
    is sampled), so all of 12 fail with probability below 1e-15; the last one
    is kept then. Logarithms, because for a small `alpha` the samples
    themselves underflow float32.
    """
    boosted = alpha + 1.0 if alpha < 1.0 else alpha  # shape < 1: Gamma(a) = Gamma(a + 1) * U^(1/a)
    d = boosted - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    x = keras.random.normal((candidates, *shape), seed=seed)
    v = (1.0 + c * x) ** 3
    u = keras.random.uniform((candidates, *shape), seed=seed)
    safe_v = ops.maximum(v, 1e-30)
    accepted = (v > 0) & (ops.log(u) < 0.5 * x * x + d - d * safe_v + d * ops.log(safe_v))
    # Index of the first accepted candidate (the last one if none is).
    first = ops.argmax(ops.concatenate([accepted[:-1], ops.ones_like(accepted[-1:])], axis=0), axis=0)
    log_gamma = math.log(d) + ops.log(ops.take_along_axis(safe_v, ops.expand_dims(first, 0), axis=0)[0])
    if alpha < 1.0:
        boost = keras.random.uniform(shape, minval=1e-30, maxval=1.0, seed=seed)
        log_gamma = log_gamma + ops.log(boost) / alpha
    return log_gamma


def symmetric_beta(shape, alpha, seed=None, candidates=12):
    """Samples of Beta(alpha, alpha) (MixUp's and CutMix's mixing weight), without loops.

    `keras.random.beta` on JAX is `jax.random.beta`, whose gamma sampler runs
    `while` loops (7 of them for one number): on a GPU each iteration waits for the
    device, inside every training step. Beta(1, 1) is the uniform distribution;
    other shapes are `G1 / (G1 + G2)` of two loop-free gamma samples (see
    `_log_standard_gamma`), computed as `sigmoid(log G1 - log G2)`.

    Args:
        shape: tuple, the output shape.
        alpha: float > 0, both Beta parameters.
        seed: a `keras.random.SeedGenerator` or int.
        candidates: int, proposals per gamma sample.

    Returns:
        float32 tensor of `shape`, values in `[0, 1]`.
    """
    alpha = float(alpha)
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}.")
    if alpha == 1.0:
        return keras.random.uniform(shape, seed=seed)
    first = _log_standard_gamma(shape, alpha, seed, candidates)
    second = _log_standard_gamma(shape, alpha, seed, candidates)
    return ops.sigmoid(first - second)


# Kept over keras.layers.MixUp / CutMix: theirs fail to compile under XLA and loop under JAX (a gamma sampler);
# CutMix faster than theirs on TensorFlow, with the label weight of the pixels really pasted.
@keras.saving.register_keras_serializable(package=PACKAGE)
class MixUpCutMix(AugmentationLayer):
    """MixUp (Zhang et al. 2018) or CutMix (Yun et al. 2019) on a batch.

    Each batch is mixed with itself reversed, with one `lambda ~
    Beta(alpha, alpha)` per batch, as timm does. A batch is mixed at all
    with probability `mix_prob` (else it passes unchanged); when both are
    enabled a mixed batch uses CutMix with probability `switch_prob`.
    CutMix's label weight is the exact pasted area.

    Args:
        mixup_alpha: float, Beta parameter of MixUp; 0 disables it.
        cutmix_alpha: float, Beta parameter of CutMix; 0 disables it.
        switch_prob: float, probability of CutMix when both are on.
        mix_prob: float in `[0, 1]`, probability that a batch is mixed.
        seed: optional int.

    Call arguments:
        images: float tensor `(batch, height, width, channels)`.
        targets: float one-hot (or soft) labels `(batch, num_classes)`.

    Returns:
        `(mixed_images, mixed_targets)`.
    """

    def __init__(self, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, mix_prob=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= mix_prob <= 1.0:
            raise ValueError(f"mix_prob must be in [0, 1], got {mix_prob}.")
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.switch_prob = float(switch_prob)
        self.mix_prob = float(mix_prob)
        self.seed = seed
        self.seed_generator = ShareSeedGenerator(seed)

    @property
    def enabled(self):
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.mix_prob > 0

    def _lam(self, alpha):
        return symmetric_beta((), alpha, seed=self.seed_generator)

    def call(self, images, targets):
        if not self.enabled:
            return images, targets
        height, width, _ = _static_hwc(images, "MixUpCutMix")
        partner_images = ops.flip(images, axis=0)
        partner_targets = ops.flip(targets, axis=0)
        results = []
        if self.mixup_alpha > 0:
            lam = ops.cast(self._lam(self.mixup_alpha), images.dtype)
            results.append((lam * images + (1 - lam) * partner_images, lam))
        if self.cutmix_alpha > 0:
            lam = self._lam(self.cutmix_alpha)
            cut = ops.sqrt(1.0 - lam)
            center_y = keras.random.uniform((), 0.0, float(height), seed=self.seed_generator)
            center_x = keras.random.uniform((), 0.0, float(width), seed=self.seed_generator)
            top = ops.clip(ops.round(center_y - cut * height / 2), 0, height)
            bottom = ops.clip(ops.round(center_y + cut * height / 2), 0, height)
            left = ops.clip(ops.round(center_x - cut * width / 2), 0, width)
            right = ops.clip(ops.round(center_x + cut * width / 2), 0, width)
            rows = ops.reshape(ops.arange(height, dtype="float32"), (1, height, 1, 1))
            cols = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, width, 1))
            box = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
            # The label weight is what is really left of the image after pasting.
            lam = 1.0 - (bottom - top) * (right - left) / float(height * width)
            results.append((ops.where(box, partner_images, images), ops.cast(lam, images.dtype)))
        if len(results) == 2:
            use_cutmix = keras.random.uniform((), seed=self.seed_generator) < self.switch_prob
            mixed = ops.where(use_cutmix, results[1][0], results[0][0])
            lam = ops.where(use_cutmix, results[1][1], results[0][1])
        else:
            mixed, lam = results[0]
        if self.mix_prob < 1.0:
            # Unmixed batches keep lam = 1: the clean images and labels.
            mix = keras.random.uniform((), seed=self.seed_generator) < self.mix_prob
            mixed = ops.where(mix, mixed, images)
            lam = ops.where(mix, ops.cast(lam, "float32"), 1.0)
        lam = ops.cast(lam, targets.dtype)
        return mixed, lam * targets + (1 - lam) * partner_targets

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mixup_alpha": self.mixup_alpha,
                "cutmix_alpha": self.cutmix_alpha,
                "switch_prob": self.switch_prob,
                "mix_prob": self.mix_prob,
                "seed": self.seed,
            }
        )
        return config


def build_augmentation(
    crop_padding=4,
    flip=True,
    randaug_ops=0,
    randaug_magnitude=9.0,
    erasing=0.0,
    erasing_max_area=0.25,
    seed=None,
):
    """The per-image augmentation pipeline as a list of layers (may be empty)."""
    layers = []
    if randaug_ops > 0 and randaug_magnitude > 0:
        layers.append(RandAugment(randaug_ops, randaug_magnitude, seed=seed, name="rand_augment"))
    if crop_padding > 0 or flip:
        layers.append(
            RandomCropFlip(crop_padding, flip, seed=None if seed is None else seed + 1, name="crop_flip")
        )
    if erasing > 0:
        layers.append(
            RandomErasing(
                erasing,
                area=(0.02, erasing_max_area),
                seed=None if seed is None else seed + 2,
                name="random_erasing",
            )
        )
    return layers
