"""Convolutional teachers to distil into the ViT (DeiT-style), and loading them.

A convolutional network's locality is the inductive bias a ViT trained from
scratch on a small data set lacks, and DeiT (Touvron et al. 2021) showed that
a ViT learns it best from a ConvNet teacher's predictions
(`keras_vit.training.trainer.ViTTrainer(teacher=...)`). `python -m
keras_vit.teacher` trains one; the shipped model stays a plain ViT: the
teacher is used in training only.

Two networks (`TEACHER_ARCHS`), both of built-in Keras layers only, so their
`.keras` files load with `safe_mode=True`:

- `resnet9`: David Page's ResNet-9 for fast CIFAR-10 training ("How to train
  your ResNet", 2018): three stages of 3x3 convolutions with batch norm, two
  residual pairs, a global max pool and a linear head whose logits are scaled
  by 1/8 (6.6M parameters, 0.76 GFLOP an image).
- `airbench`: the network of Keller Jordan's airbench94 (2024): a frozen 2x2
  convolution that whitens the image patches (its kernel from the training
  images' patch covariance), then three blocks of two 3x3 convolutions with
  max pooling, batch norm without scale and GELU, the convolutions
  initialised as identities where their shapes allow (2.0M parameters, 0.24
  GFLOP an image). Its lookahead optimiser and the larger learning rate of
  the norms' biases are left out.
"""

from __future__ import annotations

import os

import keras
import numpy as np
from keras import layers

from keras_vit.inference import load_keras_model

# Page's scale of the logits: with SGD at a peak rate of 0.4 the unscaled head trains too fast.
LOGIT_SCALE = 0.125
# airbench94's scale of the logits, for the same reason.
AIRBENCH_LOGIT_SCALE = 1.0 / 9.0


def _conv_bn(x, filters, name):
    x = layers.Conv2D(
        filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv"
    )(x)
    # Momentum 0.9: a run of a few thousand steps needs the running statistics to follow quickly.
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _residual(x, filters, name):
    shortcut = x
    x = _conv_bn(x, filters, f"{name}_a")
    x = _conv_bn(x, filters, f"{name}_b")
    return layers.Add(name=f"{name}_add")([shortcut, x])


def build_resnet9(image_size=(32, 32), num_classes=10, width=64, channels=3, name="resnet9_teacher"):
    """ResNet-9 (Page 2018) for small images.

    Args:
        image_size: `(height, width)` of the input; must divide by 8.
        num_classes: int, number of classes.
        width: int, channels of the first convolution; the stages have
            2x, 4x and 8x as many (64: Page's network, 6.6M parameters).
        channels: int, image channels.
        name: the model's name.

    Returns:
        A functional `keras.Model` from images `(batch, height, width,
        channels)` with values 0..255 (as the ViT takes them) to logits.
    """
    height, width_px = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if height % 8 or width_px % 8:
        raise ValueError(f"image_size must divide by 8 (three 2x2 poolings), got {image_size}.")
    if width < 1:
        raise ValueError(f"width must be positive, got {width}.")
    images = keras.Input((height, width_px, channels), name="images")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(images)
    x = _conv_bn(x, width, "prep")
    x = _conv_bn(x, 2 * width, "stage1")
    x = layers.MaxPooling2D(2, name="stage1_pool")(x)
    x = _residual(x, 2 * width, "stage1_res")
    x = _conv_bn(x, 4 * width, "stage2")
    x = layers.MaxPooling2D(2, name="stage2_pool")(x)
    x = _conv_bn(x, 8 * width, "stage3")
    x = layers.MaxPooling2D(2, name="stage3_pool")(x)
    x = _residual(x, 8 * width, "stage3_res")
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    x = layers.Dense(num_classes, use_bias=False, name="head")(x)
    logits = layers.Rescaling(LOGIT_SCALE, name="logit_scale", dtype="float32")(x)
    return keras.Model(images, logits, name=name)


def whitening_kernel(images, kernel_size=2, epsilon=5e-4):
    """The kernel of a convolution that whitens the `kernel_size` x `kernel_size` patches of `images`.

    The patch covariance's eigenvectors, each divided by the square root of
    its eigenvalue (plus `epsilon`), and their negatives: `2 * k * k * channels`
    filters whose outputs are decorrelated with unit variance, in both signs
    so that the GELU after them loses nothing.

    Args:
        images: float array `(n, height, width, channels)`, normalised as the
            layer's input will be.
        kernel_size: int, the patch side.
        epsilon: float, added to the eigenvalues (keeps the smallest ones from
            blowing up noise).

    Returns:
        float32 array `(kernel_size, kernel_size, channels, 2 * k * k * channels)`.
    """
    images = np.asarray(images, dtype="float64")
    channels = images.shape[-1]
    windows = np.lib.stride_tricks.sliding_window_view(images, (kernel_size, kernel_size), axis=(1, 2))
    # (n, h', w', channels, k, k) -> rows of (k, k, channels), the order of a Keras kernel's first three axes.
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kernel_size * kernel_size * channels)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]  # strongest component first
    scaled = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + epsilon)
    kernel = np.concatenate([scaled, -scaled], axis=1)
    return kernel.reshape(kernel_size, kernel_size, channels, -1).astype("float32")


def _airbench_block(x, filters, name):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    # Fast running statistics (airbench's momentum 0.6 in PyTorch's convention) and no scale: the
    # convolutions before it are scale-free, so the weight decay sets their effective step size.
    x = layers.BatchNormalization(momentum=0.4, epsilon=1e-5, scale=False, name=f"{name}_bn1")(x)
    x = layers.Activation("gelu", name=f"{name}_gelu1")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    x = layers.BatchNormalization(momentum=0.4, epsilon=1e-5, scale=False, name=f"{name}_bn2")(x)
    return layers.Activation("gelu", name=f"{name}_gelu2")(x)


def _identity_init(conv):
    """Sets the first `channels_in` filters of a 3x3 convolution to the identity (PyTorch's `dirac_`).

    An implicit residual connection at the start of training; the other
    filters keep their random initialisation.
    """
    kernel = keras.ops.convert_to_numpy(conv.kernel).copy()
    size, _, channels_in, filters = kernel.shape
    identity = min(channels_in, filters)
    kernel[..., :identity] = 0.0
    kernel[size // 2, size // 2, np.arange(identity), np.arange(identity)] = 1.0
    conv.kernel.assign(kernel)


def build_airbench(
    image_size=(32, 32), num_classes=10, width=64, channels=3, images=None, name="airbench_teacher"
):
    """The airbench94 network (Jordan 2024) for small images.

    Args:
        image_size: `(height, width)` of the input, at least 16.
        num_classes: int, number of classes.
        width: int, channels of the first block; the second and third have
            4x as many (64: airbench94's network, 2.0M parameters).
        channels: int, image channels.
        images: optional array `(n, height, width, channels)` of training
            images, values 0..255 (a few thousand are plenty): the input
            normalisation and the whitening kernel come from them. Without
            them the normalisation is generic and the whitening kernel random,
            which is only good for timing (`benchmarks/throughput.py`).
        name: the model's name.

    Returns:
        A functional `keras.Model` from images `(batch, height, width,
        channels)` with values 0..255 to logits.
    """
    height, width_px = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if min(height, width_px) < 16:
        raise ValueError(
            f"image_size must be at least 16 (a 2x2 whitening and three 2x2 poolings), got {image_size}."
        )
    if width < 1:
        raise ValueError(f"width must be positive, got {width}.")
    if images is not None:
        images = np.asarray(images, dtype="float32")
        mean = images.mean(axis=(0, 1, 2))
        variance = images.var(axis=(0, 1, 2))
    else:
        mean, variance = np.full(channels, 127.5), np.full(channels, 64.0**2)
    inputs = keras.Input((height, width_px, channels), name="images")
    x = layers.Normalization(mean=mean.tolist(), variance=variance.tolist(), name="normalize")(inputs)
    # Frozen: it only decorrelates the pixels of each 2x2 patch, which the blocks then learn from.
    whitening = layers.Conv2D(
        2 * 2 * 2 * channels, 2, padding="valid", use_bias=False, trainable=False, name="whiten"
    )
    x = layers.Activation("gelu", name="whiten_gelu")(whitening(x))
    for index, filters in enumerate((width, 4 * width, 4 * width), start=1):
        x = _airbench_block(x, filters, f"block{index}")
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    x = layers.Dense(num_classes, use_bias=False, name="head")(x)
    logits = layers.Rescaling(AIRBENCH_LOGIT_SCALE, name="logit_scale", dtype="float32")(x)
    model = keras.Model(inputs, logits, name=name)
    if images is not None:
        normalized = (images - mean) / np.sqrt(variance)
        whitening.kernel.assign(whitening_kernel(normalized, kernel_size=2))
    for layer in model.layers:
        if layer.name.startswith("block") and isinstance(layer, layers.Conv2D):
            _identity_init(layer)
    return model


# The teachers `--arch` picks (their SGD settings: `keras_vit.training.recipes.TEACHER_RECIPES`).
TEACHER_ARCHS = ("airbench", "resnet9")


def build_teacher(arch="resnet9", image_size=(32, 32), num_classes=10, width=64, channels=3, images=None):
    """The `arch` teacher (`TEACHER_ARCHS`).

    Args:
        arch: `"resnet9"` (`build_resnet9`) or `"airbench"` (`build_airbench`).
        image_size: `(height, width)` of the input.
        num_classes: int, number of classes.
        width: int, channels of the first stage.
        channels: int, image channels.
        images: optional training images, values 0..255: airbench's input
            normalisation and whitening come from them (ignored by resnet9).

    Returns:
        A functional `keras.Model` from images (0..255) to logits.

    Raises:
        ValueError: for an unknown `arch`.
    """
    if arch not in TEACHER_ARCHS:
        raise ValueError(f"Unknown teacher arch {arch!r}; choose {', '.join(TEACHER_ARCHS)}.")
    if arch == "airbench":
        return build_airbench(image_size, num_classes, width, channels=channels, images=images)
    return build_resnet9(image_size, num_classes, width, channels=channels)


def with_dtype_policy(model, policy):
    """A copy of `model` whose layers compute in `policy` (e.g. `"mixed_bfloat16"`), with the same weights.

    A `.keras` file restores each layer's saved policy (float32 for a saved
    teacher); on a GPU the teacher's forward pass in a bf16 training step
    should run in bf16 as well. The last layer keeps float32 logits.

    Args:
        model: a functional `keras.Model` of built-in layers.
        policy: a dtype policy name.

    Returns:
        The copy, a new functional `keras.Model`.
    """
    last = model.layers[-1].name

    def clone(layer):
        config = layer.get_config()
        if layer.name != last and not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def average_logits(models, name="teacher_ensemble"):
    """One classifier whose logits are the mean of `models`' logits: an ensemble of teachers.

    Two teachers trained from different seeds disagree on some images; their
    mean is a better target than either (`python -m keras_vit.train --teacher
    A B`). Only built-in layers: the ensemble serialises with the trainer.
    A single model is returned as it is: it is its own average.

    Args:
        models: classifiers of the same images into the same classes.
        name: the ensemble's name.

    Returns:
        A functional `keras.Model` (or `models[0]` when it is the only one).
    """
    if len(models) == 1:
        return models[0]
    inputs = keras.Input(models[0].input_shape[1:], name="images")
    # Each member under its own name (two files saved by the same builder share one).
    members = [
        keras.Model(model.input, model.output, name=f"{model.name}_{index}")
        for index, model in enumerate(models)
    ]
    logits = layers.Average(name="mean_logits", dtype="float32")([member(inputs) for member in members])
    return keras.Model(inputs, logits, name=name)


def load_teacher(paths, image_size, num_classes):
    """Loads a teacher `.keras` classifier (safe mode), frozen, checked against the data.

    Args:
        paths: a path, or several: their logits are averaged (`average_logits`).
        image_size: `(height, width)` of the training images.
        num_classes: int, classes of the data.

    Returns:
        The frozen teacher (under the global dtype policy when it is mixed).

    Raises:
        ValueError: a file is not a classifier of `image_size` images into
            `num_classes` classes.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("no teacher given.")
    policy = keras.mixed_precision.global_policy().name
    teachers = []
    for path in paths:
        teacher = load_keras_model(path)  # checked and loaded in safe mode, as every model file
        input_hw = tuple(teacher.input_shape[1:3])
        if input_hw != tuple(image_size):
            raise ValueError(f"the teacher {path} takes {input_hw} images, the data are {tuple(image_size)}.")
        if teacher.output_shape[-1] != num_classes:
            raise ValueError(
                f"the teacher {path} has {teacher.output_shape[-1]} outputs, the data {num_classes} classes."
            )
        if policy != "float32":
            teacher = with_dtype_policy(teacher, policy)
        teachers.append(teacher)
    teacher = average_logits(teachers)
    teacher.trainable = False
    return teacher
