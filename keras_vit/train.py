"""Train a ViT on CIFAR-10 (or any image-folder data set) with `model.fit`.

    python -m keras_vit.train --preset vit_tiny --epochs 8 --output runs/vit_tiny
    python -m keras_vit.train --init-from vit.keras --layer-decay 0.75 --output runs/fine_tuned

Writes to `--output`: `model.keras` (the exportable ViT, no augmentation
inside), `labels.txt`, `history.csv`, `curves.png` and `metrics.json` (test
accuracy, parameters, epochs, wall-clock). A checkpoint is written after each
epoch; rerunning the same command after an interruption resumes from it. A
finished run in `--output` is not trained over without `--fresh`.
Runs on any Keras backend (TensorFlow, JAX, PyTorch): set `KERAS_BACKEND`. On JAX,
several processes (hosts) train one model with the same command and
--distribute, --coordinator, --num-processes and --process-id; process 0 writes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from keras_vit.cli_utils import (
    console_output,
    interrupted_in_one_line,
    missing_backend_in_one_line,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    print_error,
    unit_fraction,
)
from keras_vit.model_flags import add_model_flags, without_model_args
from keras_vit.models.presets import PRESETS
from keras_vit.training.distribute import (
    DISTRIBUTE_KINDS,
    parse_mesh,
)
from keras_vit.training.recipes import (
    AUGMENT_RECIPES,
    DEFAULT_VALIDATION_SPLIT,
    MIXED_PRECISION,
    TRAINING_RECIPES,
    recipe_flags,
)

# Threads that read the next batches of a --stream run while a step runs.
LOADER_WORKERS = 2


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m keras_vit.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--recipe",
        default=None,
        choices=sorted(TRAINING_RECIPES),
        help="a named set of the flags below (`python -m keras_vit.recipes` lists them); flags "
        "given on the command line win over the recipe's values",
    )
    parser.add_argument(
        "--preset", default="vit_tiny", choices=sorted(PRESETS), help="model preset (default: %(default)s)"
    )
    _add_data_flags(parser)
    _add_optimization_flags(parser)
    add_model_flags(parser)
    _add_fine_tuning_flags(parser)
    _add_distillation_flags(parser)
    _add_run_flags(parser)
    return parser


def _add_data_flags(parser):
    parser.add_argument(
        "--data-dir",
        default=None,
        help="data location: an image-folder tree DIR/{train,test}/<class>/*.jpg|png or the "
        "cifar-10-batches-py folder (default: $KERAS_VIT_DATA_DIR, then standard places)",
    )
    parser.add_argument(
        "--dataset",
        default="auto",
        choices=["auto", "cifar10", "folder"],
        help="'cifar10' uses the CIFAR-10 loader, 'folder' any image-folder tree resized to the "
        "model input; 'auto' picks CIFAR-10 unless --data-dir holds other classes",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use N images of each split, drawn evenly from the classes (quick runs)",
    )
    parser.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="image folders load at NxN (default: the preset's size, or the --init-from checkpoint's); the model "
        "takes the data's size. The CIFAR-10 loader gives 32x32 only: another N is refused with --dataset cifar10 "
        "and for its batch files, while under --dataset auto an image-folder tree of CIFAR-10's classes loads at NxN",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="image folders larger than memory: keep the images on disk and decode each batch when it is read "
        "(nothing is decoded up front or cached); CIFAR-10 always loads into memory",
    )
    parser.add_argument(
        "--loader-workers",
        type=positive_int,
        default=None,
        help=f"with --stream: threads that read the next batches while a step runs (default: {LOADER_WORKERS})",
    )
    parser.add_argument(
        "--augment",
        default="basic",
        choices=sorted(AUGMENT_RECIPES),
        help="augmentation recipe run in the train step (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=None,
        help="repeated augmentation: each image this many times per batch (default: the --augment recipe's)",
    )
    parser.add_argument(
        "--mix-prob",
        type=float,
        default=None,
        metavar="SHARE",
        help="share of the batches MixUp/CutMix mixes, in [0, 1] (default: the --augment recipe's: "
        "0.5 for lee2021, 1 for strong, no mixing in the others, where it is an error)",
    )


def _add_optimization_flags(parser):
    parser.add_argument("--epochs", type=int, default=8, help="epochs to train (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128, help="images a step (default: %(default)s)")
    parser.add_argument(
        "--optimizer", default="adamw", choices=["adamw", "adam", "sgd"], help="(default: %(default)s)"
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=1e-3,
        help="peak learning rate, after warmup (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup-epochs",
        type=non_negative_float,
        default=1.0,
        help="epochs of linear warmup, then cosine decay to 0 (default: %(default)s)",
    )
    parser.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=0.05,
        help="decoupled weight decay of the matrices (default: %(default)s)",
    )
    parser.add_argument("--label-smoothing", type=unit_fraction, default=0.1, help="(default: %(default)s)")
    parser.add_argument(
        "--clipnorm",
        type=non_negative_float,
        default=1.0,
        help="global gradient-norm clip, 0: off (default: %(default)s)",
    )
    parser.add_argument(
        "--ema-momentum",
        type=float,
        default=None,
        help="keep an exponential moving average of the weights (e.g. 0.999) and "
        "train-end swap it in; off by default",
    )
    parser.add_argument(
        "--mixed-precision",
        default="none",
        choices=sorted(MIXED_PRECISION),
        help="dtype policy (default: float32)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="of the image selection, the split, the weights and the augmentation (default: %(default)s)",
    )
    parser.add_argument(
        "--distribute",
        default="none",
        choices=DISTRIBUTE_KINDS,
        help="several devices: 'data' splits each --batch-size batch over every device (JAX: Keras' "
        "distribution API; TensorFlow: tf.distribute.MirroredStrategy), 'model' (JAX only) also splits attention "
        "heads and MLP units over a --mesh (default: one device)",
    )
    parser.add_argument(
        "--mesh",
        type=_mesh,
        default=None,
        metavar="DATAxMODEL",
        help="with --distribute model: the device mesh, e.g. 2x2 (default: 2 on the model axis)",
    )
    _add_process_flags(parser)
    parser.add_argument(
        "--steps-per-execution",
        type=positive_int,
        default=1,
        help="train steps per call into the backend (fewer Python round trips)",
    )


def _add_process_flags(parser):
    parser.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="several processes (hosts, or one per GPU) train one model: process 0's address, the same on "
        "every process (default: $KERAS_DISTRIBUTION_JOB_ADDRESSES); JAX backend, with --distribute",
    )
    parser.add_argument(
        "--num-processes",
        type=_process_count,
        default=None,
        metavar="N",
        help="processes in the job (default: $KERAS_DISTRIBUTION_NUM_PROCESSES, else one); 'auto' reads "
        "them, the coordinator and --process-id from Slurm, Open MPI or Kubernetes",
    )
    parser.add_argument(
        "--process-id",
        type=non_negative_int,
        default=None,
        metavar="I",
        help="this process's index, 0 to N-1 (default: $KERAS_DISTRIBUTION_PROCESS_ID); process 0 writes "
        "--output, which every process reads to resume",
    )


def _process_count(text):
    return "auto" if text == "auto" else positive_int(text)


def _mesh(text):
    try:
        return parse_mesh(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_fine_tuning_flags(parser):
    parser.add_argument(
        "--init-from",
        default=None,
        metavar="CHECKPOINT",
        help="start from a pretrained ViT instead of --preset: a .keras file, a Hugging Face ViT's .safetensors "
        "file or folder, hf:NAME (downloaded), timm:NAME (timm's pretrained weights) or keras_hub:PRESET; it "
        "gets a new head for the data's classes and its position embedding resampled to their size; only the "
        "regularization "
        "flags (--drop-path, --patch-dropout, --model-arg dropout=...) change its architecture",
    )
    parser.add_argument(
        "--layer-decay",
        type=float,
        default=None,
        metavar="FACTOR",
        help="with --init-from: layer-wise learning-rate decay in (0, 1] (e.g. 0.75): each block trains at "
        "FACTOR times the rate of the block above it, the head at the full rate (default: off)",
    )
    parser.add_argument(
        "--freeze-blocks",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="with --init-from: leave the patch embedding and the first N blocks untrained (default: 0)",
    )


def _add_distillation_flags(parser):
    parser.add_argument(
        "--teacher",
        default=None,
        nargs="+",
        metavar="PATH",
        help="a .keras classifier to distil into the ViT (python -m keras_vit.teacher trains one), "
        "or several, whose logits are averaged; it sees the same augmented images and stays "
        "frozen; not part of the saved model",
    )
    parser.add_argument(
        "--distillation",
        default="soft",
        choices=["hard", "soft"],
        help="with --teacher: learn the teacher's probabilities at --temperature (soft) or its "
        "top class as a second label (DeiT's hard distillation) (default: %(default)s)",
    )
    parser.add_argument(
        "--distillation-weight",
        type=float,
        default=1.0,
        help="with --teacher: the teacher's share of the loss, the labels' is the rest "
        "(default: %(default)s, the teacher's targets alone)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="with --distillation soft: the softmax temperature (default: %(default)s)",
    )
    parser.add_argument(
        "--teacher-flip",
        action="store_true",
        help="with --teacher: average its logits over each image and its mirror image (its "
        "test-time flip), at twice its cost per step; off by default",
    )


def _add_run_flags(parser):
    parser.add_argument(
        "--validation-split",
        type=unit_fraction,
        default=None,
        metavar="FRACTION",
        help="hold out this share of the training images, class-balanced and drawn by --seed, as the validation "
        "split that the curves and every choice look at; the test split is scored once, after training "
        f"(default: {DEFAULT_VALIDATION_SPLIT}, for exploring, or an image folder's own DIR/val/ when it has one; "
        "0 for the final run on all the training images: no validation, val/ left out too, training curves and "
        "the test score only; another share with a val/ folder is refused)",
    )
    parser.add_argument(
        "--validation-freq",
        type=positive_int,
        default=1,
        help="evaluate on the validation split every N epochs",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="stop after the epoch that would otherwise end past this many seconds of "
        "fit; the model is still evaluated and saved",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="train for this many seconds of fit instead of a fixed number of epochs: the "
        "warmup + cosine schedule follows the epochs that fit, re-planned every epoch from "
        "their measured time; --epochs is then the first estimate and --warmup-epochs a "
        "share of it",
    )
    parser.add_argument(
        "--unmasked-finish",
        type=unit_fraction,
        default=None,
        metavar="SHARE",
        help="with --patch-dropout: train the last SHARE of the epochs (of the --time-budget's "
        "plan) on every token, as FLIP's unmasked tuning (e.g. 0.1; one recompilation)",
    )
    parser.add_argument(
        "--max-epochs",
        type=positive_int,
        default=None,
        help="with --time-budget: stop after this many epochs at most (default: 10 x --epochs)",
    )
    parser.add_argument("--output", default="runs/vit", help="output directory (default: %(default)s)")
    parser.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=1,
        help="write the resume checkpoint every N epochs (default: %(default)s)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start over: ignore a checkpoint in --output, and train even where --output holds a finished run "
        "(replaced when this run ends; refused without it)",
    )
    parser.add_argument(
        "--verbose",
        default="auto",
        choices=["auto", "0", "1", "2"],
        help="Keras fit verbosity (default: auto)",
    )


def parse_args(argv=None):
    """The flags, with a `--recipe`'s values as defaults that explicit flags override."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.recipe:
        parser.set_defaults(**without_model_args(recipe_flags(args.recipe), args.model_args))
        args = parser.parse_args(argv)
    return args


def check_args(args):
    """The first problem with the flags, as one line, or None."""
    if args.epochs <= 0 or args.batch_size <= 0:
        return "--epochs and --batch-size must be positive"
    if args.limit is not None and args.limit <= 0:
        return "--limit must be positive"
    if args.ema_momentum is not None and not 0.0 < args.ema_momentum < 1.0:
        return "--ema-momentum must be between 0 and 1"
    if args.time_limit is not None and args.time_limit <= 0:
        return "--time-limit must be positive"
    if args.time_budget is not None and args.time_budget <= 0:
        return "--time-budget must be positive"
    if not 0.0 <= args.distillation_weight <= 1.0 or args.temperature <= 0:
        return "--distillation-weight must be in [0, 1] and --temperature positive"
    if args.teacher_flip and not args.teacher:
        return "--teacher-flip needs --teacher (it averages the teacher over the mirror images)"
    for path in args.teacher or ():
        if not Path(path).is_file():
            return f"--teacher {path}: {'a folder, not a .keras file' if Path(path).is_dir() else 'no such file'}"
    if args.layer_decay is not None and not 0.0 < args.layer_decay <= 1.0:
        return "--layer-decay must be in (0, 1]"
    if args.mesh and args.distribute != "model":
        return "--mesh is for --distribute model"
    if (args.layer_decay is not None or args.freeze_blocks) and not args.init_from:
        return "--layer-decay and --freeze-blocks fine-tune a pretrained ViT: they need --init-from"
    # Flags that would do nothing without another one are refused rather than ignored.
    if args.max_epochs is not None and args.time_budget is None:
        return "--max-epochs caps a --time-budget run: without --time-budget, --epochs is the length"
    if args.loader_workers is not None and not args.stream:
        return "--loader-workers is for --stream (the images are otherwise in memory)"
    if args.coordinator is not None and args.num_processes == 1:
        return "--coordinator joins a job of several processes: --num-processes 1 is one process alone"
    return None


def main(argv=None):
    args = parse_args(argv)
    problem = check_args(args)
    if problem:
        print_error(problem)
        return 2
    if args.loader_workers is None:
        args.loader_workers = LOADER_WORKERS
    if args.stream:
        # A streamed file that cannot be read fails inside tf.data, whose C++ log (TensorFlow's warnings) would
        # print the Python traceback twice above the command's one line; as export.common does, unless set.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_vit.training import train_command  # Keras and the backend: only once the flags are good

    return train_command.main(args)


if __name__ == "__main__":
    sys.exit(interrupted_in_one_line(missing_backend_in_one_line(console_output(main)))())
