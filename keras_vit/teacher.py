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

from keras_vit.cli_utils import (
    console_output,
    interrupted_in_one_line,
    missing_backend_in_one_line,
    non_negative_float,
    positive_float,
    positive_int,
    print_error,
    unit_fraction,
)
from keras_vit.training.recipes import (
    AUGMENT_RECIPES,
    DEFAULT_VALIDATION_SPLIT,
    MIXED_PRECISION,
    TEACHER_RECIPES,
)


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
        "(default: %(default)s). The CIFAR-10 loader gives 32x32 only: another N is refused for it",
    )
    parser.add_argument(
        "--arch",
        default="resnet9",
        choices=sorted(TEACHER_RECIPES),
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
        type=positive_float,
        default=None,
        help="peak rate of SGD with Nesterov momentum 0.9 (default: the arch's, at batch 512: "
        "0.4 for resnet9, 0.5 for airbench)",
    )
    parser.add_argument(
        "--warmup-epochs",
        type=non_negative_float,
        default=None,
        help="linear warmup, then cosine decay to 0 (default: a fifth of --epochs)",
    )
    parser.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=None,
        help="decoupled weight decay per unit of learning rate (default: the arch's: 5e-3 for "
        "resnet9, about Page's L2 of 5e-4 under momentum 0.9; 0.0133 for airbench)",
    )
    parser.add_argument("--label-smoothing", type=unit_fraction, default=0.2, help="(default: %(default)s)")
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
        default=None,
        metavar="FRACTION",
        help="leave out what keras_vit.train's --validation-split holds out (the same default, and the same "
        "images at the same --seed and --limit), so that the teacher never trains on the student's validation "
        f"images (default: {DEFAULT_VALIDATION_SPLIT}, or nothing when the data has its own DIR/val/; 0 trains "
        "on all the training images, for a student run with --validation-split 0)",
    )
    parser.add_argument("--output", default="runs/teacher", help="output directory (default: %(default)s)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="train even where --output holds a finished teacher (replaced when this one ends; refused without it)",
    )
    parser.add_argument(
        "--verbose",
        default="auto",
        choices=["auto", "0", "1", "2"],
        help="Keras fit verbosity (default: auto)",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.time_budget is not None and args.time_budget <= 0:
        print_error("--time-budget must be positive")
        return 2
    from keras_vit.training import teacher_command  # Keras and the backend: only once the flags are good

    return teacher_command.main(args)


if __name__ == "__main__":
    sys.exit(interrupted_in_one_line(missing_backend_in_one_line(console_output(main)))())
