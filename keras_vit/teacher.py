"""Train a convolutional teacher to distil into the ViT (DeiT-style).

    python -m keras_vit.teacher --data-dir DIR --epochs 16 --output runs/teacher

A ViT trained from scratch on a small data set lacks a convolution's
locality; DeiT (Touvron et al. 2021) showed that a ViT learns it best from a
ConvNet teacher's predictions. This command trains that teacher on the same
data; `python -m keras_vit.train --teacher PATH` then distils it into the
ViT. The shipped model stays a plain ViT: the teacher is used in training only.

Two networks (`--arch`, see `keras_vit.models.teachers`), both of built-in
Keras layers only, so the `.keras` file loads with `safe_mode=True`:
`resnet9` (David Page's ResNet-9) and `airbench` (the network of Keller
Jordan's airbench94, about a third of the ResNet-9's cost per image).

Writes `model.keras`, `labels.txt`, `history.csv` and `metrics.json` to `--output`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import keras

from keras_vit.cli_utils import (
    CLIError,
    Terminated,
    check_output_folder,
    positive_int,
    stop_on_signals,
    unit_fraction,
)
from keras_vit.models.teachers import TEACHER_ARCHS, build_teacher, with_dtype_policy
from keras_vit.training import pipeline
from keras_vit.training.batches import TrainingBatches, even_batch_size
from keras_vit.training.optimizers import make_optimizer
from keras_vit.training.plan import describe_length, plan_learning_rate
from keras_vit.training.recipes import AUGMENT_RECIPES, MIXED_PRECISION
from keras_vit.training.trainer import make_trainer


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m keras_vit.teacher",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", default=None, help="data location, as for keras_vit.train")
    parser.add_argument(
        "--dataset", default="auto", choices=["auto", "cifar10", "folder"], help="as for keras_vit.train"
    )
    parser.add_argument(
        "--image-size",
        type=positive_int,
        default=32,
        metavar="N",
        help="image folders load at NxN, the size of the student it teaches (keras_vit.train's --image-size, "
        "or its --init-from checkpoint's); resnet9 takes a multiple of 8, airbench at least 16 "
        "(default: %(default)s). CIFAR-10 stays 32x32",
    )
    parser.add_argument(
        "--arch",
        default="resnet9",
        choices=sorted(TEACHER_ARCHS),
        help="the network (default: %(default)s; see above)",
    )
    parser.add_argument(
        "--width",
        type=positive_int,
        default=64,
        help="channels of the first stage (default: %(default)s, the published networks)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=16,
        help="epochs of training (default: %(default)s); with --time-budget, the first estimate",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="train for as many epochs as fit in SECONDS of fit (compilation included), with "
        "warmup + cosine planned over them and planned again each epoch from the measured "
        "epoch times; caps the teacher's share of a wall-clock budget whatever the machine's speed",
    )
    parser.add_argument(
        "--max-epochs",
        type=positive_int,
        default=None,
        help="with --time-budget, at most this many epochs (default: 4 x --epochs)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=512)
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="peak rate of SGD with Nesterov momentum 0.9 (default: the arch's, at batch 512: "
        "0.4 for resnet9, 0.5 for airbench)",
    )
    parser.add_argument(
        "--warmup-epochs",
        type=float,
        default=None,
        help="linear warmup, then cosine decay to 0 (default: a fifth of --epochs)",
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=None,
        help="decoupled weight decay per unit of learning rate (default: the arch's: 5e-3 for "
        "resnet9, about Page's L2 of 5e-4 under momentum 0.9; 0.0133 for airbench)",
    )
    parser.add_argument("--label-smoothing", type=float, default=0.2)
    parser.add_argument(
        "--augment",
        default="basic",
        choices=sorted(AUGMENT_RECIPES),
        help="augmentation in the train step (default: %(default)s: crop + flip)",
    )
    parser.add_argument(
        "--mixed-precision",
        default="none",
        choices=sorted(MIXED_PRECISION),
        help="dtype policy of training (default: float32); the saved teacher is float32",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="use N images of each split (the same selection as keras_vit.train's --limit)",
    )
    parser.add_argument(
        "--validation-split",
        type=unit_fraction,
        default=0.0,
        metavar="FRACTION",
        help="leave out the share of the training images that keras_vit.train's --validation-split holds out "
        "at the same --seed and --limit, so that the teacher never trains on the student's validation images "
        "(default: %(default)s: all the training images)",
    )
    parser.add_argument("--output", default="runs/teacher", help="output directory (default: %(default)s)")
    parser.add_argument(
        "--verbose",
        default="auto",
        choices=["auto", "0", "1", "2"],
        help="Keras fit verbosity (default: auto)",
    )
    return parser


def run(args, splits):
    """Trains, scores and saves the teacher; writes `model.keras`, `labels.txt`, `history.csv` and `metrics.json`
    to `--output`."""
    output = pipeline.start_run(args.output, args.seed, args.mixed_precision)
    print(splits.summary(), flush=True)
    # airbench's whitening and input normalisation come from 5,000 training images, as in airbench94.
    try:
        model = build_teacher(
            args.arch,
            tuple(splits.x_train.shape[1:3]),
            splits.num_classes,
            args.width,
            channels=splits.x_train.shape[-1],
            images=splits.x_train[:5000],
        )
    except ValueError as error:  # an image size the network cannot take
        raise CLIError(f"--arch {args.arch} at --image-size {args.image_size}: {error}") from None
    for setting in ("learning_rate", "weight_decay"):
        if getattr(args, setting) is None:
            setattr(args, setting, TEACHER_ARCHS[args.arch][setting])

    trainer = make_trainer(
        model, AUGMENT_RECIPES[args.augment], label_smoothing=args.label_smoothing, seed=args.seed
    )
    batches = TrainingBatches(splits.x_train, splits.y_train, args.batch_size, seed=args.seed)
    warmup = args.epochs / 5 if args.warmup_epochs is None else args.warmup_epochs
    max_epochs = (args.max_epochs or 4 * args.epochs) if args.time_budget else args.epochs
    schedule, budget = plan_learning_rate(
        args.learning_rate, len(batches), args.epochs, warmup, args.time_budget, max_epochs=max_epochs
    )
    # No gradient clipping: batch norm keeps the steps in scale, and Page's recipe has none.
    optimizer = make_optimizer("sgd", schedule, args.weight_decay, clipnorm=None)
    trainer.compile(optimizer=optimizer, metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    print(
        f"Training the {args.arch} teacher ({model.count_params():,} parameters) for "
        f"{describe_length(args.epochs, args.time_budget, max_epochs)}, {len(batches)} steps each, on "
        f"{pipeline.describe_device()}",
        flush=True,
    )
    # The history goes to history.csv only with the teacher it describes (pipeline.save_run).
    history_path = output / ".history.partial.csv"
    # TimeBudget before the history file: its learning rate and plan go into the history.
    outcome = pipeline.fit(
        trainer,
        batches,
        epochs=max_epochs,
        history_path=history_path,
        before_history=[budget] if budget else [],
        verbose=args.verbose,
    )
    if budget is not None and budget.stopped_epoch is None and not outcome.diverged:
        print(
            f"warning: {max_epochs} epochs ended before the {args.time_budget:.0f} s budget; "
            "--max-epochs caps the run",
            flush=True,
        )

    if outcome.diverged:  # nothing written: NaN weights would replace a good teacher
        print(
            "error: the loss became NaN or infinite; the teacher was not saved (a previous one is kept); lower "
            "--learning-rate.",
            file=sys.stderr,
        )
        return 1
    if keras.mixed_precision.global_policy().name != "float32":
        keras.mixed_precision.set_global_policy("float32")
        model = with_dtype_policy(model, "float32")
    # What a distillation with --teacher-flip learns from: the mean of the image's and its mirror's logits.
    accuracy = pipeline.score(
        model,
        splits.x_test,
        splits.y_test,
        "flip",
        even_batch_size(len(splits.x_test), max(args.batch_size, 250)),
    )
    metrics = {
        "arch": args.arch,
        "test_accuracy": accuracy["none"],
        "test_accuracy_flip": accuracy["flip"],
        **pipeline.run_metrics(outcome, splits, model, len(batches) * batches.batch_size, args),
        "time_budget_seconds": args.time_budget,
        "stopped_by_time_budget": budget is not None and budget.stopped_epoch is not None,
    }
    pipeline.save_run(output, model, splits.class_names, metrics, history_path=history_path)
    history_path.unlink(missing_ok=True)
    print(
        f"Teacher test accuracy {accuracy['none']:.2%} (with its mirror images {accuracy['flip']:.2%}) on "
        f"{len(splits.y_test)} images after {outcome.epochs} epochs ({outcome.seconds:.0f} s of fit). "
        f"Wrote {output}/model.keras",
        flush=True,
    )
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.time_budget is not None and args.time_budget <= 0:
        print("error: --time-budget must be positive", file=sys.stderr)
        return 2
    output = Path(args.output)
    try:
        with stop_on_signals():
            check_output_folder(output)
            with pipeline.locked_output(output):
                try:
                    image_size = (args.image_size, args.image_size)
                    splits = pipeline.load_splits(
                        args.data_dir, args.dataset, image_size, args.limit, args.seed
                    )
                    splits = splits.hold_out(args.validation_split, args.seed)
                except (OSError, ValueError) as error:  # DataNotFoundError is an OSError
                    print(f"error: {error}", file=sys.stderr)
                    return 2
                return run(args, splits)
    except CLIError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the teacher was not saved", file=sys.stderr)
        return 130
    except Terminated:
        print("interrupted: the teacher was not saved", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
