"""Train a ViT on CIFAR-10 (or any image-folder data set) with `model.fit`.

    python -m keras_vit.train --preset vit_tiny --epochs 8 --output runs/vit_tiny

Writes to `--output`: `model.keras` (the exportable ViT, no augmentation
inside), `labels.txt`, `history.csv`, `curves.png` and `metrics.json` (test
accuracy, parameters, epochs, wall-clock). A checkpoint is written after each
epoch; rerunning the same command after an interruption resumes from it.
Runs on any Keras backend (TensorFlow, JAX, PyTorch): set `KERAS_BACKEND`.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_vit.augment import AUGMENT_RECIPES
from keras_vit.callbacks import EpochBackup, EpochTimer, StopOnNaN, TimeLimit, UnmaskedFinish
from keras_vit.evaluate import non_negative_int, positive_int, tta_accuracies, view_logits
from keras_vit.layers import SequencePooling
from keras_vit.labels import atomic_path

MIXED_PRECISION = {"none": "float32", "float32": "float32", "bfloat16": "mixed_bfloat16",
                   "mixed_bfloat16": "mixed_bfloat16", "float16": "mixed_float16",
                   "mixed_float16": "mixed_float16"}


def build_parser():
    from keras_vit.presets import PRESETS
    from keras_vit.recipes import TRAINING_RECIPES

    parser = argparse.ArgumentParser(
        prog="python -m keras_vit.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--recipe", default=None, choices=sorted(TRAINING_RECIPES),
                        help="a named set of the flags below (keras_vit/recipes.py; `python -m keras_vit.recipes` "
                        "lists them); flags given on the command line win over the recipe's values")
    parser.add_argument("--preset", default="vit_tiny", choices=sorted(PRESETS), help="model preset (default: %(default)s)")
    parser.add_argument("--data-dir", default=None,
                        help="data location: an image-folder tree DIR/{train,test}/<class>/*.jpg|png or the "
                        "cifar-10-batches-py folder (default: $KERAS_VIT_DATA_DIR, then standard places)")
    parser.add_argument("--dataset", default="auto", choices=["auto", "cifar10", "folder"],
                        help="'cifar10' uses the CIFAR-10 loader, 'folder' any image-folder tree resized to the "
                        "model input; 'auto' picks CIFAR-10 unless --data-dir holds other classes")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "adam", "sgd"])
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak learning rate (after warmup)")
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warmup, then cosine decay to 0")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--clipnorm", type=float, default=1.0, help="global gradient-norm clip (0: off)")
    parser.add_argument("--augment", default="basic", choices=sorted(AUGMENT_RECIPES),
                        help="augmentation recipe run in the train step (default: %(default)s)")
    add_model_flags(parser)
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="repeated augmentation: each image this many times per batch "
                        "(default: the --augment recipe's)")
    parser.add_argument("--mix-prob", type=float, default=None, metavar="SHARE",
                        help="share of the batches MixUp/CutMix mixes, in [0, 1] (default: the --augment recipe's: "
                        "0.5 for lee2021, 1 for strong, no mixing in the others, where it is an error)")
    parser.add_argument("--teacher", default=None, nargs="+", metavar="PATH",
                        help="a .keras classifier to distil into the ViT (python -m keras_vit.teacher trains one), "
                        "or several, whose logits are averaged; it sees the same augmented images and stays "
                        "frozen; not part of the saved model")
    parser.add_argument("--distillation", default="soft", choices=["hard", "soft"],
                        help="with --teacher: learn the teacher's probabilities at --temperature (soft) or its "
                        "top class as a second label (DeiT's hard distillation) (default: %(default)s; soft "
                        "beat hard by 2.3 points on the CPU: benchmarks/README.md)")
    parser.add_argument("--distillation-weight", type=float, default=1.0,
                        help="with --teacher: the teacher's share of the loss, the labels' is the rest "
                        "(default: %(default)s, the teacher's targets alone)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="with --distillation soft: the softmax temperature (default: %(default)s)")
    parser.add_argument("--teacher-flip", action="store_true",
                        help="with --teacher: average its logits over each image and its mirror image (its "
                        "test-time flip), at twice its cost per step; off by default")
    parser.add_argument("--ema-momentum", type=float, default=None,
                        help="keep an exponential moving average of the weights (e.g. 0.999) and "
                        "train-end swap it in; off by default")
    parser.add_argument("--mixed-precision", default="none", choices=sorted(MIXED_PRECISION),
                        help="dtype policy (default: float32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None,
                        help="use N images of each split, drawn evenly from the classes (quick runs)")
    parser.add_argument("--validation-freq", type=positive_int, default=1,
                        help="evaluate on the test split every N epochs")
    parser.add_argument("--steps-per-execution", type=positive_int, default=1,
                        help="train steps per call into the backend (fewer Python round trips)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="stop after the epoch that would otherwise end past this many seconds of "
                        "fit; the model is still evaluated and saved")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="train for this many seconds of fit instead of a fixed number of epochs: the "
                        "warmup + cosine schedule follows the epochs that fit, re-planned every epoch from "
                        "their measured time; --epochs is then the first estimate and --warmup-epochs a "
                        "share of it")
    parser.add_argument("--unmasked-finish", type=unit_fraction, default=None, metavar="SHARE",
                        help="with --patch-dropout: train the last SHARE of the epochs (of the --time-budget's "
                        "plan) on every token, as FLIP's unmasked tuning (e.g. 0.1; one recompilation)")
    parser.add_argument("--max-epochs", type=positive_int, default=None,
                        help="with --time-budget: stop after this many epochs at most (default: 10 x --epochs)")
    parser.add_argument("--output", default="runs/vit", help="output directory (default: %(default)s)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=1,
                        help="write the resume checkpoint every N epochs (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    parser.add_argument("--verbose", default="auto", help="Keras fit verbosity: auto, 0, 1 or 2")
    return parser


# build_vit arguments that --model-arg may not set: the data decide them.
_DATA_DECIDED = ("image_size", "num_classes", "channels")


def model_argument(text):
    """`KEY=VALUE` -> `(key, value)` for --model-arg; VALUE is read as a Python literal, else kept as a word."""
    from keras_vit.model import DEFAULTS

    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not raw.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if key not in DEFAULTS or key in _DATA_DECIDED:
        known = ", ".join(sorted(set(DEFAULTS) - set(_DATA_DECIDED)))
        raise argparse.ArgumentTypeError(f"unknown build_vit argument {key!r}; known: {known}")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()
    return key, value


def add_model_flags(parser):
    """The flags that override a preset's model shape; `benchmarks/throughput.py` takes them too.

    `flag_overrides(args)` turns the parsed values into `build_vit` keyword arguments.
    """
    parser.add_argument("--drop-path", type=float, default=None, help="override the preset's stochastic depth")
    parser.add_argument("--model-arg", dest="model_args", metavar="KEY=VALUE", type=model_argument, action="append",
                        default=None, help="any other build_vit argument, over the preset's value (repeatable), "
                        "e.g. --model-arg projection_dim=96 --model-arg depth=6; VALUE is a Python literal or a word")
    parser.add_argument("--num-heads", type=positive_int, default=None,
                        help="override the preset's attention heads (the width must divide by it)")
    parser.add_argument("--pooling", default=None, choices=list(SequencePooling.MODES),
                        help="override the preset's head: class token, mean of the patch tokens, or their "
                        "learned weighted mean (seqpool; no class token: 64 tokens for 4x4 patches)")
    parser.add_argument("--registers", type=non_negative_int, default=None,
                        help="learned register tokens after the class token (default: the preset's, 0); "
                        "1 makes CIFAR's 65 tokens an even 66, which cuDNN's fused attention takes")
    parser.add_argument("--shifted-patches", action=argparse.BooleanOptionalAction, default=None,
                        help="Shifted Patch Tokenization (Lee et al. 2021): each patch vector also holds its "
                        "four half-patch diagonal shifts (default: the preset's, off)")
    parser.add_argument("--locality-attention", action=argparse.BooleanOptionalAction, default=None,
                        help="Locality Self-Attention (Lee et al. 2021): no attention of a token to itself, learned "
                        "softmax temperature (default: the preset's, off)")
    parser.add_argument("--patch-dropout", type=unit_fraction, default=None, metavar="RATE",
                        help="leave out this share of each training image's patch tokens (PatchDropout, Liu et al. "
                        "2022): cheaper steps and a regularizer; inference sees all tokens (default: the preset's, 0)")


def unit_fraction(text):
    """argparse type: a float in [0, 1)."""
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def model_overrides(drop_path=None, num_heads=None, pooling=None, num_registers=None, shifted_patches=None,
                    locality_attention=None, patch_dropout=None):
    """`build_vit` overrides from the --drop-path/--num-heads/--pooling/--registers/--shifted-patches/
    --locality-attention/--patch-dropout flags.

    None leaves the preset's value.
    """
    flags = {"drop_path": drop_path, "num_heads": num_heads, "pooling": pooling, "num_registers": num_registers,
             "shifted_patches": shifted_patches, "locality_attention": locality_attention,
             "patch_dropout": patch_dropout}
    return {name: value for name, value in flags.items() if value is not None}


def flag_overrides(args):
    """`build_vit` overrides from --model-arg and the model flags (which give their own keys).

    Raises:
        ValueError: a key given both by its flag and by --model-arg.
    """
    named = model_overrides(args.drop_path, args.num_heads, args.pooling, args.registers, args.shifted_patches,
                            args.locality_attention, args.patch_dropout)
    free = dict(args.model_args or [])
    twice = sorted(set(free) & set(named))
    if twice:
        raise ValueError(f"{', '.join(twice)} given both as a flag and as --model-arg")
    return {**free, **named}


def training_recipe(augment, repeats=None, mix_prob=None):
    """The `AUGMENT_RECIPES[augment]` recipe, with --repeats and --mix-prob applied (None: the recipe's).

    Raises:
        ValueError: for a `mix_prob` outside `[0, 1]`, or above 0 with a
            recipe that has no MixUp/CutMix to apply.
    """
    recipe = dict(AUGMENT_RECIPES[augment])
    if repeats is not None:
        recipe["repeats"] = repeats
    if mix_prob is not None:
        if not 0.0 <= mix_prob <= 1.0:
            raise ValueError(f"--mix-prob must be in [0, 1], got {mix_prob}")
        if mix_prob > 0 and recipe["mixup_alpha"] <= 0 and recipe["cutmix_alpha"] <= 0:
            raise ValueError(f"--mix-prob {mix_prob}: --augment {augment} has no MixUp/CutMix "
                             "(lee2021 and strong have)")
        recipe["mix_prob"] = mix_prob
    return recipe


def load_data(args, image_size):
    from keras_vit import data

    if args.dataset == "folder" or (args.dataset == "auto" and args.data_dir and not _looks_like_cifar10(args.data_dir)):
        return data.load_image_folder(args.data_dir, image_size=image_size, limit=args.limit, seed=args.seed)
    return data.load_cifar10(args.data_dir, limit=args.limit, seed=args.seed)


def _looks_like_cifar10(path):
    from keras_vit.data import CIFAR10_CLASSES

    train = Path(path) / "train"
    if not train.is_dir():
        return True  # cifar-10-batches-py layouts and the like: the CIFAR-10 loader decides.
    return {p.name for p in train.iterdir() if p.is_dir()} == set(CIFAR10_CLASSES)


def save_model_atomic(model, path):
    """Saves `model` to the `.keras` file `path` through `keras_vit.labels.atomic_path`.

    A reader never sees a half-written model; a save that fails leaves the
    previous file (or none) and no temporary file.
    """
    with atomic_path(path, suffix=".tmp.keras") as tmp:
        model.save(tmp)


def describe_device():
    """The accelerator the backend computes on (e.g. `NVIDIA H100 80GB HBM3 (jax 0.6.2)`), else the CPU and its cores."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return f"{device.device_kind} (jax {jax.__version__})"
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
            return f"{name} (tensorflow {tf.__version__})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores ({backend})"


def as_float32(model):
    """A float32 copy of a (mixed-precision) ViT, with the same weights."""
    from keras_vit import build_vit, vit_arguments

    keras.mixed_precision.set_global_policy("float32")
    copy = build_vit(**vit_arguments(model))
    copy.set_weights(model.get_weights())
    return copy


def run(args, splits, overrides, recipe):
    """Trains, scores and saves; `overrides` and `recipe`: `flag_overrides(args)` and `training_recipe` of the args."""
    from keras_vit import build_vit, vit_arguments
    from keras_vit.labels import atomic_write_text, write_labels
    from keras_vit.plots import plot_training_curves, read_history_csv
    from keras_vit.training import (TrainingBatches, describe_length, even_batch_size, make_optimizer,
                                     make_trainer, plan_learning_rate)

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    backup_dir = output / "checkpoint"
    if args.fresh and backup_dir.exists():
        shutil.rmtree(backup_dir)
    resuming = backup_dir.exists()

    keras.utils.set_random_seed(args.seed)
    keras.mixed_precision.set_global_policy(MIXED_PRECISION[args.mixed_precision])

    print(splits.summary(), flush=True)
    overrides = {"num_classes": splits.num_classes, "image_size": tuple(splits.x_train.shape[1:3]), **overrides}
    try:
        model = build_vit(args.preset, **overrides)
    except (TypeError, ValueError) as error:  # e.g. a --model-arg value build_vit refuses
        print(f"error: cannot build the model: {error}", file=sys.stderr)
        return 2

    if args.unmasked_finish and not vit_arguments(model)["patch_dropout"]:
        print("error: --unmasked-finish needs --patch-dropout (a model that leaves tokens out in training)",
              file=sys.stderr)
        return 2

    teacher = None
    if args.teacher:
        from keras_vit.teacher import load_teacher

        try:
            teacher = load_teacher(args.teacher, tuple(splits.x_train.shape[1:3]), splits.num_classes)
        except (OSError, ValueError) as error:
            print(f"error: cannot use the teacher: {error}", file=sys.stderr)
            return 2
        print(f"Distilling {' + '.join(args.teacher)} ({teacher.count_params():,} parameters, "
              f"{args.distillation}, weight {args.distillation_weight})", flush=True)

    trainer = make_trainer(model, recipe, label_smoothing=args.label_smoothing, seed=args.seed, teacher=teacher,
                           distillation=args.distillation, distillation_weight=args.distillation_weight,
                           temperature=args.temperature, teacher_flip=args.teacher_flip)
    # Batches of one shape only (one compilation): each epoch leaves out its last len % batch images.
    batches = TrainingBatches(splits.x_train, splits.y_train, args.batch_size, seed=args.seed)
    steps = len(batches)
    num_train = steps * batches.batch_size  # images trained on per epoch
    # With a budget fit may run past the estimate, up to --max-epochs.
    max_epochs = (args.max_epochs or 10 * args.epochs) if args.time_budget else args.epochs
    schedule, budget = plan_learning_rate(args.learning_rate, steps, args.epochs, args.warmup_epochs,
                                          args.time_budget, max_epochs=max_epochs)
    optimizer = make_optimizer(args.optimizer, schedule, args.weight_decay, args.clipnorm or None,
                               ema_momentum=args.ema_momentum)
    trainer.compile(
        optimizer=optimizer,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=args.steps_per_execution,
    )

    history_path = output / "history.csv"
    if not resuming and history_path.exists():
        history_path.unlink()  # a fresh run starts a fresh history
    timer = EpochTimer(num_train)
    nan_guard = StopOnNaN()  # a NaN loss stops the run; it is reported below, not hidden
    time_limit = TimeLimit(args.time_limit) if args.time_limit else None
    unmasked = (UnmaskedFinish(args.unmasked_finish, epochs=max_epochs, budget=budget, clocks=[time_limit])
                if args.unmasked_finish else None)
    # Only epoch-end callbacks: batch hooks would make fit wait for the device
    # after every step (see keras_vit.callbacks).
    callbacks = [
        timer,
        *([unmasked] if unmasked else []),  # before TimeBudget: its plan then counts the slower epochs
        *([budget] if budget else []),  # before CSVLogger: its learning rate goes into the history
        # Saving weights and optimizer state costs time on a fast GPU: every N epochs.
        EpochBackup(str(backup_dir), every=args.checkpoint_every),
        keras.callbacks.CSVLogger(str(history_path), append=True),
        nan_guard,
    ]
    if args.ema_momentum is not None:
        # Validate with the averaged weights, which are the ones that get saved.
        # Not swap_on_epoch: it leaves the average in the model after an early
        # stop (--time-limit, NaN), and fit's end then saves the raw weights.
        callbacks.append(keras.callbacks.SwapEMAWeights())
    if time_limit is not None:
        callbacks.append(time_limit)
    if resuming:
        print(f"Resuming from the checkpoint in {backup_dir}", flush=True)
    length = describe_length(args.epochs, args.time_budget)
    print(f"Training {args.preset} ({model.count_params():,} parameters) for {length}, "
          f"{steps} steps each, on {describe_device()}", flush=True)

    validation = ({"images": splits.x_test, "labels": splits.y_test}, splits.y_test)
    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    start = time.perf_counter()
    trainer.fit(
        batches, epochs=max_epochs,
        validation_data=validation, validation_freq=args.validation_freq,
        validation_batch_size=even_batch_size(len(splits.x_test), max(args.batch_size, 250)),
        callbacks=callbacks, verbose=verbose,
    )
    wall_clock = time.perf_counter() - start

    history = read_history_csv(history_path) if history_path.exists() else {}
    losses = history.get("loss", [])
    diverged = nan_guard.stopped_epoch is not None or (bool(losses) and not np.isfinite(losses[-1]))
    epochs_done = len(losses)
    stopped_by_time_limit = time_limit is not None and time_limit.stopped_epoch is not None
    if budget is not None and budget.stopped_epoch is None and epochs_done == max_epochs:
        print(f"warning: {max_epochs} epochs ended before the {args.time_budget:.0f} s budget; "
              "raise --max-epochs next time.", file=sys.stderr)

    if keras.mixed_precision.global_policy().name != "float32":
        # Ship a float32 model: the exporters and the TF-free runtimes expect
        # float32 layers, and the accuracy below is that model's.
        model = as_float32(model)
    batch = max(args.batch_size, 256)
    # Test-time augmentation (keras_vit.evaluate --tta flip / flip-shift), reported beside the plain accuracy.
    accuracy = tta_accuracies(view_logits(model, splits.x_test, "flip-shift", batch, progress=False), splits.y_test)

    save_model_atomic(model, output / "model.keras")
    write_labels(output / "labels.txt", splits.class_names)
    if history:
        plot_training_curves(history, output / "curves.png",
                             title=f"{args.preset}, {len(splits.x_train):,} training images")
    steady = timer.times[1:] or timer.times
    metrics = {
        "test_accuracy": accuracy["none"],
        "test_accuracy_flip_tta": accuracy["flip"],
        "test_accuracy_flip_shift_tta": accuracy["flip-shift"],
        "test_images": int(len(splits.y_test)),
        "train_images": int(len(splits.x_train)),
        "images_per_epoch": int(num_train),  # full batches only (TrainingBatches)
        "parameters": int(model.count_params()),
        "epochs": epochs_done,
        "epochs_requested": args.epochs,
        "diverged": diverged,
        "stopped_by_time_limit": stopped_by_time_limit,
        "unmasked_from_epoch": None if unmasked is None or unmasked.started_epoch is None else unmasked.started_epoch + 1,
        "time_budget_seconds": args.time_budget,
        "wall_clock_seconds": round(wall_clock, 1),
        "train_images_per_second": round(num_train / float(np.median(steady)), 1) if steady else None,
        "backend": keras.backend.backend(),
        "device": describe_device(),
        "data_source": splits.source,
        "skipped_images": len(splits.skipped),
        "args": vars(args),
    }
    atomic_write_text(output / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(f"Test accuracy {accuracy['none']:.2%} (test-time flip {accuracy['flip']:.2%}, flip-shift "
          f"{accuracy['flip-shift']:.2%}) on "
          f"{len(splits.y_test)} images after {epochs_done} epochs ({wall_clock:.0f} s). "
          f"Wrote {output}/model.keras", flush=True)
    if diverged:
        print("error: the loss became NaN and training was stopped; lower --learning-rate or use "
              "--mixed-precision none.", file=sys.stderr)
        return 1
    return 0


def parse_args(argv=None):
    """The flags, with a `--recipe`'s values as defaults that explicit flags override."""
    from keras_vit.recipes import recipe_flags

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.recipe:
        parser.set_defaults(**recipe_flags(args.recipe))
        args = parser.parse_args(argv)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.epochs <= 0 or args.batch_size <= 0:
        print("error: --epochs and --batch-size must be positive", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit <= 0:
        print("error: --limit must be positive", file=sys.stderr)
        return 2
    if args.ema_momentum is not None and not 0.0 < args.ema_momentum < 1.0:
        print("error: --ema-momentum must be between 0 and 1", file=sys.stderr)
        return 2
    if args.time_limit is not None and args.time_limit <= 0:
        print("error: --time-limit must be positive", file=sys.stderr)
        return 2
    if args.time_budget is not None and args.time_budget <= 0:
        print("error: --time-budget must be positive", file=sys.stderr)
        return 2
    if not 0.0 <= args.distillation_weight <= 1.0 or args.temperature <= 0:
        print("error: --distillation-weight must be in [0, 1] and --temperature positive", file=sys.stderr)
        return 2
    if args.teacher_flip and not args.teacher:
        print("error: --teacher-flip needs --teacher (it averages the teacher over the mirror images)", file=sys.stderr)
        return 2
    for path in args.teacher or ():
        if not Path(path).is_file():
            print(f"error: --teacher {path}: no such file", file=sys.stderr)
            return 2
    try:
        overrides = flag_overrides(args)
        recipe = training_recipe(args.augment, args.repeats, args.mix_prob)  # before the data loads: fails fast
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from keras_vit.data import DataNotFoundError
    from keras_vit.presets import get_preset

    try:
        splits = load_data(args, get_preset(args.preset)["image_size"])
    except (DataNotFoundError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run(args, splits, overrides, recipe)


if __name__ == "__main__":
    sys.exit(main())
