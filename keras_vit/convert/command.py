"""What `python -m keras_vit.convert` does once its flags are parsed (`keras_vit.convert.__main__`).

`convert` loads the source (`sources.load_source`), compares the converted
model with it on random images, writes the `.keras` file only once it
reloads in safe mode to the same logits, then its labels twin. Kept apart
from the flags so that `--help` and a bad flag answer without importing Keras.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from keras_vit.cli_utils import (
    CLIError,
    RunFailed,
    Terminated,
    first_line,
    interrupted_status,
    output_folder,
    print_error,
    stop_on_signals,
)
from keras_vit.convert.sources import load_source, loading_error
from keras_vit.files import atomic_path
from keras_vit.inference import load_keras_model
from keras_vit.labels import TWIN_SUFFIX, check_class_names, read_labels, write_labels

# Random images each check runs on.
CHECK_IMAGES = 4
# The saved file's logits against the converted model's, relative to the largest logit.
RELOAD_TOLERANCE = 1e-5


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
        output.parent.mkdir(
            parents=True, exist_ok=True
        )  # again: another command's failure may have removed it
        with atomic_path(output) as tmp:
            model.save(tmp)
            reloaded = load_keras_model(tmp)
            difference = float(np.max(np.abs(reloaded.predict(pixels, verbose=0) - expected)))
            # The same weights and graph: equal on a CPU; a GPU may pick other kernels when it compiles again.
            if difference > RELOAD_TOLERANCE * max(1.0, float(np.max(np.abs(expected)))):
                raise RunFailed(
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
    with output_folder(output.parent, what="the output's folder"):  # removed again if nothing is written
        return _convert(args, output, written)


def _convert(args, output, written):
    given = given_labels(args)
    highest_matmul_precision()
    try:
        converted = load_source(args.source, args.image_size, args.mean, args.std, args.num_classes)
    except Exception as error:  # noqa: BLE001 - the source's library too (e.g. timm's "Unknown model"): one line
        raise CLIError(loading_error(args.source, error)) from None
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


def main(args):
    """Runs `python -m keras_vit.convert` with its parsed flags: converts, checks and writes the model and its
    labels twin.

    Returns:
        The exit status: 0 when written, 1 when the model differs from its source (or its saved file from it),
        2 for a bad source or a
        failed write (nothing left half written), 130/143 when interrupted.
    """
    written = []
    try:
        with stop_on_signals():
            return convert(args, written)
    except CLIError as error:
        print_error(error)
        return error.exit_status
    except (KeyboardInterrupt, Terminated) as stop:
        if not written:
            print_error("interrupted: nothing written")
        else:  # the model is in place; its labels twin may not be yet
            print_error(
                f"interrupted after {', '.join(map(str, written))} was written: run the command again"
            )
        return interrupted_status(stop)
