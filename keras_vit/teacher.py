"""A small convolutional teacher for distilling into the ViT (DeiT-style).

A ViT trained from scratch on 50,000 images memorises them: GPU run 6's
`vit_cifar10` model scored 99.5% on the clean training images and 87.2% on the
test set; distilled from this teacher in the same 6 minutes (run 9: 48 s for
the teacher, 292 s for the ViT) it scored 90.3%. A convolutional network's
locality is the inductive bias the ViT lacks, and DeiT (Touvron et al. 2021)
showed that a ViT learns it best from a ConvNet teacher's predictions. This
module builds and trains that teacher on the same data; `python -m
keras_vit.train --teacher PATH` then distils it into the ViT
(`keras_vit.training.ViTTrainer`). The shipped model stays a plain ViT: the
teacher is used in training only.

    python -m keras_vit.teacher --data-dir DIR --epochs 16 --output runs/teacher

Two networks (`--arch`), both of built-in Keras layers only, so the `.keras`
file loads with `safe_mode=True`:

- `resnet9`: David Page's ResNet-9 for fast CIFAR-10 training ("How to train
  your ResNet", 2018): three stages of 3x3 convolutions with batch norm, two
  residual pairs, a global max pool and a linear head whose logits are scaled
  by 1/8 (6.6M parameters, 0.76 GFLOP an image).
- `airbench`: the network of Keller Jordan's airbench94 ("94% on CIFAR-10 in
  3.29 seconds on a single GPU", 2024): a frozen 2x2 convolution that whitens
  the image patches (its kernel from the training images' patch covariance),
  then three blocks of two 3x3 convolutions with max pooling, batch norm
  without scale and GELU, the convolutions initialised as identities where
  their shapes allow (2.0M parameters, 0.24 GFLOP an image: a third of the
  ResNet-9's cost in each distillation step). Its lookahead optimiser and the
  64x learning rate of the norms' biases are left out: each saved a few
  epochs, and an epoch of it is a fraction of a second on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
from keras import layers

# Page's scale of the logits: with SGD at a peak rate of 0.4 the unscaled head trains too fast.
LOGIT_SCALE = 0.125
# airbench94's scale of the logits, for the same reason.
AIRBENCH_LOGIT_SCALE = 1.0 / 9.0


def _conv_bn(x, filters, name):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                      name=f"{name}_conv")(x)
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


def build_airbench(image_size=(32, 32), num_classes=10, width=64, channels=3, images=None,
                   name="airbench_teacher"):
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
        raise ValueError(f"image_size must be at least 16 (a 2x2 whitening and three 2x2 poolings), got {image_size}.")
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
    whitening = layers.Conv2D(2 * 2 * 2 * channels, 2, padding="valid", use_bias=False, trainable=False,
                              name="whiten")
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


# The teachers `--arch` picks, and the SGD settings that go with each at batch 512.
TEACHER_ARCHS = {
    # Page's peak rate 0.4 and L2 5e-4 (decoupled: 5e-3 per unit of rate under momentum 0.9).
    "resnet9": dict(learning_rate=0.4, weight_decay=5e-3),
    # airbench94's step sizes (its lr 11.5 and weight decay 0.0153 per 1024 images, summed loss, Nesterov 0.85)
    # for a mean loss, batch 512 and momentum 0.9: a rate of 0.5 moves as far per image, and a decoupled decay
    # of 0.0133 per unit of rate shrinks the weights as much per step as its coupled one does.
    "airbench": dict(learning_rate=0.5, weight_decay=0.0133),
}


def build_teacher(arch="resnet9", image_size=(32, 32), num_classes=10, width=64, channels=3, images=None):
    """The `arch` teacher (`TEACHER_ARCHS`); `images` (training images) set up airbench's whitening.

    Raises:
        ValueError: for an unknown `arch`.
    """
    if arch not in TEACHER_ARCHS:
        raise ValueError(f"Unknown teacher arch {arch!r}; choose {', '.join(sorted(TEACHER_ARCHS))}.")
    if arch == "airbench":
        return build_airbench(image_size, num_classes, width, channels=channels, images=images)
    return build_resnet9(image_size, num_classes, width, channels=channels)


def forward_flops_per_image(model):
    """FLOPs of one image's forward pass through `model`'s convolutions and dense layers (2 x multiply-adds).

    For MFU when a teacher's forward pass shares the training step
    (`benchmarks/throughput.py --teacher-width`); batch norm, pooling and
    activations are small beside them and not counted. Page's ResNet-9
    (width 64) on 32x32 images: 0.76 GFLOP.
    """
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # an ensemble's members (average_logits)
            flops += forward_flops_per_image(layer)
        elif isinstance(layer, layers.Conv2D):
            _, height, width, filters = layer.output.shape
            kernel_h, kernel_w, channels_in, _ = layer.kernel.shape
            flops += 2 * height * width * kernel_h * kernel_w * channels_in * filters
        elif isinstance(layer, layers.Dense):
            flops += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(flops)


def with_dtype_policy(model, policy):
    """A copy of `model` whose layers compute in `policy` (e.g. `"mixed_bfloat16"`), with the same weights.

    A `.keras` file restores each layer's saved policy (float32 for a saved
    teacher); on a GPU the teacher's forward pass in a bf16 training step
    should run in bf16 as well. The last layer keeps float32 logits.
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
    """
    if len(models) == 1:
        return models[0]
    inputs = keras.Input(models[0].input_shape[1:], name="images")
    # Each member under its own name (two files saved by the same builder share one).
    members = [keras.Model(model.input, model.output, name=f"{model.name}_{index}")
               for index, model in enumerate(models)]
    logits = layers.Average(name="mean_logits", dtype="float32")([member(inputs) for member in members])
    return keras.Model(inputs, logits, name=name)


def load_teacher(paths, image_size, num_classes):
    """Loads a teacher `.keras` classifier (safe mode), frozen, checked against the data.

    Args:
        paths: a path, or several: their logits are averaged (`average_logits`).
        image_size: `(height, width)` of the training images.
        num_classes: int, classes of the data.

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
        teacher = keras.saving.load_model(path, compile=False, safe_mode=True)
        input_hw = tuple(teacher.input_shape[1:3])
        if input_hw != tuple(image_size):
            raise ValueError(f"the teacher {path} takes {input_hw} images, the data are {tuple(image_size)}.")
        if teacher.output_shape[-1] != num_classes:
            raise ValueError(f"the teacher {path} has {teacher.output_shape[-1]} outputs, the data "
                             f"{num_classes} classes.")
        if policy != "float32":
            teacher = with_dtype_policy(teacher, policy)
        teachers.append(teacher)
    teacher = average_logits(teachers)
    teacher.trainable = False
    return teacher


def build_parser():
    from keras_vit.augment import AUGMENT_RECIPES
    from keras_vit.evaluate import positive_int
    from keras_vit.train import MIXED_PRECISION

    parser = argparse.ArgumentParser(prog="python -m keras_vit.teacher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="data location, as for keras_vit.train")
    parser.add_argument("--dataset", default="auto", choices=["auto", "cifar10", "folder"],
                        help="as for keras_vit.train")
    parser.add_argument("--arch", default="resnet9", choices=sorted(TEACHER_ARCHS),
                        help="the network (default: %(default)s; see above)")
    parser.add_argument("--width", type=positive_int, default=64,
                        help="channels of the first stage (default: %(default)s, the published networks)")
    parser.add_argument("--epochs", type=positive_int, default=16,
                        help="epochs of training (default: %(default)s); with --time-budget, the first estimate")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="train for as many epochs as fit in SECONDS of fit (compilation included), with "
                        "warmup + cosine planned over them and planned again each epoch from the measured "
                        "epoch times (keras_vit.callbacks.TimeBudget); caps the teacher's share of a "
                        "wall-clock budget whatever the machine's speed")
    parser.add_argument("--max-epochs", type=positive_int, default=None,
                        help="with --time-budget, at most this many epochs (default: 4 x --epochs)")
    parser.add_argument("--batch-size", type=positive_int, default=512)
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="peak rate of SGD with Nesterov momentum 0.9 (default: the arch's, at batch 512: "
                        "0.4 for resnet9, 0.5 for airbench)")
    parser.add_argument("--warmup-epochs", type=float, default=None,
                        help="linear warmup, then cosine decay to 0 (default: a fifth of --epochs)")
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="decoupled weight decay per unit of learning rate (default: the arch's: 5e-3 for "
                        "resnet9, about Page's L2 of 5e-4 under momentum 0.9; 0.0133 for airbench)")
    parser.add_argument("--label-smoothing", type=float, default=0.2)
    parser.add_argument("--augment", default="basic", choices=sorted(AUGMENT_RECIPES),
                        help="augmentation in the train step (default: %(default)s: crop + flip; cutout, the GPU "
                        "session's: +0.7 point at 40 epochs on the H100)")
    parser.add_argument("--mixed-precision", default="none", choices=sorted(MIXED_PRECISION),
                        help="dtype policy of training (default: float32); the saved teacher is float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="use N images of each split (the same selection as keras_vit.train's --limit)")
    parser.add_argument("--output", default="runs/teacher", help="output directory (default: %(default)s)")
    parser.add_argument("--verbose", default="auto", help="Keras fit verbosity: auto, 0, 1 or 2")
    return parser


def run(args, splits):
    """Trains, scores and saves the teacher; writes `model.keras`, `labels.txt`, `history.csv` and `metrics.json`
    to `--output`."""
    import numpy as np

    from keras_vit.augment import AUGMENT_RECIPES
    from keras_vit.callbacks import EpochTimer, StopOnNaN
    from keras_vit.evaluate import tta_accuracies, view_logits
    from keras_vit.labels import atomic_write_text, write_labels
    from keras_vit.train import MIXED_PRECISION, describe_device, save_model_atomic
    from keras_vit.training import (TrainingBatches, describe_length, even_batch_size, make_optimizer,
                                     make_trainer, plan_learning_rate)

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    policy = MIXED_PRECISION[args.mixed_precision]
    keras.mixed_precision.set_global_policy(policy)
    print(splits.summary(), flush=True)
    image_size = tuple(splits.x_train.shape[1:3])
    # airbench's whitening and input normalisation come from 5,000 training images, as in airbench94.
    model = build_teacher(args.arch, image_size, splits.num_classes, args.width, channels=splits.x_train.shape[-1],
                          images=splits.x_train[:5000])
    for setting in ("learning_rate", "weight_decay"):
        if getattr(args, setting) is None:
            setattr(args, setting, TEACHER_ARCHS[args.arch][setting])

    trainer = make_trainer(model, AUGMENT_RECIPES[args.augment], label_smoothing=args.label_smoothing,
                           seed=args.seed)
    batches = TrainingBatches(splits.x_train, splits.y_train, args.batch_size, seed=args.seed)
    steps = len(batches)
    warmup = args.epochs / 5 if args.warmup_epochs is None else args.warmup_epochs
    max_epochs = (args.max_epochs or 4 * args.epochs) if args.time_budget else args.epochs
    length = describe_length(args.epochs, args.time_budget, max_epochs)
    schedule, budget = plan_learning_rate(args.learning_rate, steps, args.epochs, warmup, args.time_budget,
                                          max_epochs=max_epochs)
    # No gradient clipping: batch norm keeps the steps in scale, and Page's recipe has none.
    optimizer = make_optimizer("sgd", schedule, args.weight_decay, clipnorm=None)
    trainer.compile(optimizer=optimizer, metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    timer = EpochTimer(steps * batches.batch_size)
    nan_guard = StopOnNaN()
    print(f"Training the {args.arch} teacher ({model.count_params():,} parameters) for {length}, "
          f"{steps} steps each, on {describe_device()}", flush=True)
    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    start = time.perf_counter()
    history_path = output / "history.csv"
    history_path.unlink(missing_ok=True)
    # TimeBudget before CSVLogger: its learning rate and plan go into the history.
    callbacks = [timer, *([budget] if budget else []), nan_guard, keras.callbacks.CSVLogger(str(history_path))]
    trainer.fit(batches, epochs=max_epochs, verbose=verbose, callbacks=callbacks)
    wall_clock = time.perf_counter() - start
    if budget is not None and budget.stopped_epoch is None and nan_guard.stopped_epoch is None:
        print(f"warning: {max_epochs} epochs ended before the {args.time_budget:.0f} s budget; "
              "--max-epochs caps the run", flush=True)

    if policy != "float32":
        keras.mixed_precision.set_global_policy("float32")
        model = with_dtype_policy(model, "float32")
    batch = even_batch_size(len(splits.x_test), max(args.batch_size, 250))
    # What a distillation with --teacher-flip learns from: the mean of the image's and its mirror's logits.
    accuracy = tta_accuracies(view_logits(model, splits.x_test, "flip", batch, progress=False), splits.y_test)
    test_accuracy, test_accuracy_flip = accuracy["none"], accuracy["flip"]
    save_model_atomic(model, output / "model.keras")
    write_labels(output / "labels.txt", splits.class_names)
    steady = timer.times[1:] or timer.times
    metrics = {
        "arch": args.arch,
        "test_accuracy": test_accuracy,
        "test_accuracy_flip": test_accuracy_flip,
        "test_images": int(len(splits.y_test)),
        "train_images": int(len(splits.x_train)),
        "parameters": int(model.count_params()),
        "epochs": len(timer.times),
        "time_budget_seconds": args.time_budget,
        "stopped_by_time_budget": budget is not None and budget.stopped_epoch is not None,
        "diverged": nan_guard.stopped_epoch is not None,
        "wall_clock_seconds": round(wall_clock, 1),
        "train_images_per_second": round(steps * batches.batch_size / float(np.median(steady)), 1),
        "backend": keras.backend.backend(),
        "device": describe_device(),
        "data_source": splits.source,
        "args": vars(args),
    }
    atomic_write_text(output / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(f"Teacher test accuracy {test_accuracy:.2%} (with its mirror images {test_accuracy_flip:.2%}) on "
          f"{len(splits.y_test)} images after "
          f"{metrics['epochs']} epochs ({wall_clock:.0f} s of fit). Wrote {output}/model.keras", flush=True)
    if metrics["diverged"]:
        print("error: the loss became NaN; lower --learning-rate.", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    from keras_vit.data import DataNotFoundError
    from keras_vit.train import load_data

    args = build_parser().parse_args(argv)
    if args.time_budget is not None and args.time_budget <= 0:
        print("error: --time-budget must be positive", file=sys.stderr)
        return 2
    try:
        splits = load_data(args, (32, 32))
    except (DataNotFoundError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run(args, splits)


if __name__ == "__main__":
    sys.exit(main())
