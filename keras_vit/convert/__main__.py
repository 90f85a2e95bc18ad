"""Convert a pretrained ViT into a keras_vit `.keras` file, checked against its source, with its class names.

    python -m keras_vit.convert hf:google/vit-base-patch16-224 vit_b16.keras
    python -m keras_vit.convert timm:deit_small_patch16_224.fb_in1k deit_s.keras
    python -m keras_vit.convert keras_hub:vit_base_patch16_224_imagenet vit_b16.keras
    python -m keras_vit.convert vit-b16/ vit_b16.keras      # a Hugging Face folder: no PyTorch needed
    python -m export vit_b16.keras export/vit_b16            # then every deployable format, with its proofs

SOURCE is timm:NAME, hf:NAME (downloaded), keras_hub:PRESET (a name or a local preset folder), a Hugging Face
`.safetensors` file or a folder holding one with its config.json. The model written takes 0..255 pixels and
normalizes inside with the source's statistics (or --mean and --std). Where the source runs here (timm and
keras-hub; a Hugging Face folder with PyTorch and transformers installed), both run on random images first and
a logit difference above --tolerance stops the conversion with nothing written; the file is then reloaded in
safe mode and must give the same logits. Its class names (a Hugging Face config's id2label, timm's ImageNet
classes, or --labels) go to its twin OUTPUT-stem.labels.txt, which keras_vit.predict, keras_vit.evaluate and
python -m export read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import keras
import numpy as np

from keras_vit.cli_utils import (
    CLIError,
    Terminated,
    check_output_folder,
    first_line,
    positive_int,
    print_error,
    stop_on_signals,
)
from keras_vit.convert.sources import SOURCE_KINDS, load_source
from keras_vit.files import atomic_path
from keras_vit.inference import load_keras_model
from keras_vit.labels import TWIN_SUFFIX, check_class_names, read_labels, write_labels

# Random images each check runs on.
CHECK_IMAGES = 4
# The saved file's logits against the converted model's, relative to the largest logit.
RELOAD_TOLERANCE = 1e-5


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m keras_vit.convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help=f"the checkpoint: {SOURCE_KINDS}")
    parser.add_argument("output", help="the .keras file to write")
    parser.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="run the model at NxN, the position embedding resampled (default: the source's size)",
    )
    parser.add_argument(
        "--mean",
        type=float,
        nargs=3,
        default=None,
        metavar=("R", "G", "B"),
        help="input mean per channel in 0..1 units, with --std (default: the source's)",
    )
    parser.add_argument(
        "--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="input std, with --mean"
    )
    parser.add_argument(
        "--num-classes",
        type=positive_int,
        default=None,
        metavar="N",
        help="for a source without a classifier (a backbone): a new, zero head of N classes",
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="FILE",
        help="class names, one per line, for the twin labels file (default: the source's, where it has them)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="the largest |logit difference| from the source allowed (default: %(default)s)",
    )
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.output.endswith(".keras"):
        parser.error(f"the output must be a .keras file, not {args.output}")
    if (args.mean is None) != (args.std is None):
        parser.error("--mean and --std go together")
    if not args.tolerance > 0:
        parser.error("--tolerance must be above 0")
    return args


def source_difference(converted, pixels, logits):
    """The largest |logit difference| between the converted model's `logits` on `pixels` and its source's, and
    how many of the images both give the same top class."""
    expected = np.asarray(converted.reference(pixels), "float32")
    actual = np.asarray(logits, "float32")
    if expected.shape != actual.shape:
        raise CLIError(
            f"the source gives logits of shape {expected.shape}, the converted model {actual.shape}"
        )
    same_top = int(np.sum(expected.argmax(-1) == actual.argmax(-1)))
    return float(np.max(np.abs(expected - actual))), same_top


def given_labels(args):
    """The --labels names (read before any download or conversion), or None."""
    if not args.labels:
        return None
    try:
        return read_labels(args.labels)
    except (OSError, ValueError) as error:
        raise CLIError(first_line(error)) from None


def class_names(args, given, converted, num_classes):
    """The names for the labels twin (--labels, else the source's), checked as a labels file would hold them,
    and where they come from; (None, why) where there are none."""
    if given is not None:
        names, where = given, args.labels
    elif converted.class_names is not None:
        names, where = converted.class_names, converted.names_from
    else:
        return None, "the source names no classes: pass --labels FILE (python -m export needs them)"
    if len(names) != num_classes:
        raise CLIError(f"{where} gives {len(names)} class names, the model has {num_classes} classes")
    try:
        return check_class_names(names), where
    except ValueError as error:
        raise CLIError(f"{where}: {first_line(error)}") from None


def save_checked(model, output, pixels, expected):
    """Writes `model` to `output` atomically, after reloading the written file in safe mode and checking that it
    gives the logits `expected` that `model` gives on `pixels` (nothing is left at `output` otherwise)."""
    try:
        with atomic_path(output) as tmp:
            model.save(tmp)
            reloaded = load_keras_model(tmp)
            difference = float(np.max(np.abs(reloaded.predict(pixels, verbose=0) - expected)))
            # The same weights and graph: equal on a CPU; a GPU may pick other kernels when it compiles again.
            if difference > RELOAD_TOLERANCE * max(1.0, float(np.max(np.abs(expected)))):
                raise CLIError(
                    f"the saved file gives logits {difference:.3g} away from the converted model's"
                )
    except (OSError, ValueError) as error:  # a full disk, or the file refused on reloading
        raise CLIError(f"cannot write {output}: {first_line(error)}") from None


def highest_matmul_precision():
    """float32 matrix products at full precision on every backend (GPUs default to TF32), for the checks."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")


def convert(args, written):
    """Converts, checks and writes; appends each file to `written` once it is in place."""
    output = Path(args.output)
    check_output_folder(output.parent, what="the output's folder")
    given = given_labels(args)
    highest_matmul_precision()
    try:
        converted = load_source(args.source, args.image_size, args.mean, args.std, args.num_classes)
    except ImportError as error:
        raise CLIError(f"{first_line(error)}: pip install keras-vit[convert]") from None
    except (OSError, ValueError) as error:
        raise CLIError(first_line(error)) from None
    except Exception as error:  # noqa: BLE001 - the source's library (e.g. timm's "Unknown model"): one line
        raise CLIError(f"cannot load {args.source}: {first_line(error, with_type=True)}") from None
    model = converted.model
    height, width = model.input_shape[1:3]
    num_classes = int(model.output_shape[-1])
    names, names_from = class_names(args, given, converted, num_classes)
    print(
        f"{args.source}: {model.count_params():,} parameters, {height}x{width} pixels in, {num_classes} classes out, "
        f"normalized with mean {tuple(round(v / 255, 4) for v in model.mean)} and std "
        f"{tuple(round(v / 255, 4) for v in model.std)} (0..1 units)"
    )
    pixels = np.random.default_rng(0).uniform(0, 255, (CHECK_IMAGES, height, width, 3)).astype("float32")
    logits = model.predict(pixels, verbose=0)
    if converted.reference is None:
        print(f"not compared with the source: {converted.no_reference}")
    else:
        difference, same_top = source_difference(converted, pixels, logits)
        print(
            f"against the source on {CHECK_IMAGES} random images: max |logit difference| {difference:.2e} "
            f"(--tolerance {args.tolerance:g}), the same top class on {same_top} of {CHECK_IMAGES}"
        )
        if not difference <= args.tolerance:
            print_error(f"the converted model differs from its source by {difference:.3g}: nothing written")
            return 1
    save_checked(model, output, pixels, logits)
    written.append(output)
    print(f"wrote {output} (reloaded in safe mode: the same logits)")
    twin = output.with_name(output.stem + TWIN_SUFFIX)
    if names is None:
        if twin.exists():  # an earlier conversion's names would be read beside this model
            twin.unlink()
            print(f"removed {twin}, an earlier model's labels")
        print(f"no labels file: {names_from}")
    else:
        try:
            write_labels(twin, names)
        except OSError as error:
            raise CLIError(f"{output} written, but not its labels {twin}: {first_line(error)}") from None
        written.append(twin)
        print(f"wrote {twin} ({len(names)} class names from {names_from})")
    print(
        f"next: python -m export {output} {output.with_suffix('')}_export --data-dir IMAGES (real images for its "
        "proofs and int8 calibration: docs/pretrained.md)"
    )
    return 0


def main(argv=None):
    args = parse_args(argv)
    written = []
    try:
        with stop_on_signals():
            return convert(args, written)
    except CLIError as error:
        print_error(error)
        return 2
    except (KeyboardInterrupt, Terminated) as stop:
        if not written:
            print_error("interrupted: nothing written")
        else:  # the model is in place; its labels twin may not be yet
            print_error(
                f"interrupted after {', '.join(map(str, written))} was written: run the command again"
            )
        return 130 if isinstance(stop, KeyboardInterrupt) else 143


if __name__ == "__main__":
    sys.exit(main())
