"""What every export command shares: its arguments, the job it prepares, and publishing one format.

`python -m export.savedmodel`, `export.tflite` and `export.onnx` differ only
in their `Format` (`export.step`); everything else (arguments, cheap checks
first, labels, data, the proof, the model card, the atomic rename) is here
and in `export.step`. `python -m export` prepares its job here too and runs
the same step for every format of `export.formats`.
"""

from __future__ import annotations

import argparse
import os
import sys

from export import card as card_module
from export import common, verify
from export.common import ExportError
from export.step import Job, export_format, write_sidecars
from keras_vit.cli_utils import positive_int
from keras_vit.files import atomic_path


def eval_images_arg(value):
    """`--eval-images`: a positive int, or `all` (`None`)."""
    if value.lower() == "all":
        return None
    return positive_int(value)


class Parser(argparse.ArgumentParser):
    """`ArgumentParser` whose usage errors are one line (`error: ...`), exit status 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def make_parser(prog, description, output_help):
    """An `ArgumentParser` with the arguments every exporter takes."""
    parser = Parser(
        prog=prog,
        description=description,
        epilog="Input of every exported file: float32 (batch, height, width, 3) raw RGB pixels 0..255, "
        "channels last (int8 TFLite: uint8 pixels). Output: logits (batch, num_classes); softmax gives "
        "probabilities. The file is written to a temp path and renamed only after it passes the parity "
        "proof.",
    )
    parser.add_argument("model", help="trained .keras file (from any Keras backend)")
    parser.add_argument("output", help=output_help)
    parser.add_argument(
        "--labels",
        default=None,
        help="class names, one per line (default: MODEL.labels.txt or labels.txt beside the model, "
        "else the CIFAR-10 names for a 10-class model)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="real images for the proof (and int8 calibration): a CIFAR-10 copy "
        "(DIR/{train,test}/<class>/*.jpg or cifar-10-batches-py); default $KERAS_VIT_DATA_DIR, then the "
        "standard local places; else a random batch, with a warning",
    )
    parser.add_argument(
        "--eval-images",
        type=eval_images_arg,
        default="all",
        help="test images for parity and accuracy, or 'all' (default; CIFAR-10: 10000). A 1-point "
        "accuracy tolerance needs thousands of images: int8 changes the top-1 of some borderline images, "
        "both ways, so a drop measured on few images is noisy",
    )
    parser.add_argument(
        "--atol", type=float, default=None, help="max |logit diff| for float32 files (default 1e-4)"
    )
    return parser


def prepare(args, *, kind, marker=None, calib_images=0, isolate=False):
    """The steps every export command starts with, cheap checks first.

    Checks the model file, the output path and the data before loading
    TensorFlow (a typo fails in a second), then loads the model, its labels
    and the proof images and computes the Keras reference.

    Args:
        args: parsed arguments of `make_parser`.
        kind: `"file"` or `"dir"`: what the output is.
        marker: a file that marks an existing output directory as a previous
            export (which may be replaced).
        calib_images: training images to load for int8 calibration (0: none).
        isolate: see `Job.isolate`.

    Returns:
        The `Job`.
    """
    common.check_model_file(args.model)
    output = common.check_output_path(args.output, kind=kind, marker=marker)
    common.check_data_available(args.data_dir)
    if args.labels is not None and not os.path.isfile(args.labels):
        raise ExportError(f"labels file {args.labels} does not exist.")

    model, io = common.load_keras_model(args.model)
    labels, label_source = common.labels_with_source(args.model, io.num_classes, args.labels)
    print(label_source)
    # int8 needs calibration images, so this fails (clearly) without real data.
    data = common.load_data(
        args.data_dir, io, labels, eval_images=args.eval_images, calib_images=calib_images
    )
    for note in data.notes:
        print(note, file=sys.stderr if not data.real else sys.stdout)
    reference = verify.Reference(model, data)
    print(f"checking on {reference.description}; Keras accuracy {reference.keras_accuracy:.2f}%")
    return Job(args, output, model, io, labels, label_source, data, reference, isolate=isolate)


def export_one(args, fmt):
    """Runs a one-format command end to end: prepare, the export step, publish; returns the proof result.

    The file (or SavedModel directory) appears at `args.output`, with its
    labels file and model card, only once it has passed its proof.

    Args:
        args: parsed arguments of `make_parser`, plus the format's options.
        fmt: the `Format` to export.

    Raises:
        ExportError / ProofError: with a one-line message; nothing is left
            at the output path.
    """
    calib_images = args.calib_images if fmt.needs_calibration else 0
    job = prepare(
        args, kind="dir" if fmt.is_dir else "file", marker=fmt.dir_marker, calib_images=calib_images
    )
    output = job.output
    with atomic_path(output, directory=fmt.is_dir) as tmp:
        result, card = export_format(fmt, job, str(tmp), file_name=os.path.basename(output))
        if fmt.quantize is not None:
            float32_bytes = 4 * job.model.count_params()
            result["size_ratio_to_float32_weights"] = result["size_bytes"] / float32_bytes
        if not result["passed"]:
            _remove_stale(output, fmt)
            verify.require_pass([result])
        # A directory's labels and card live inside it: written before it is published. A file's go beside it,
        # before the file itself appears (last, when the block ends).
        write_sidecars(tmp if fmt.is_dir else output, fmt, job.labels, card)
    labels_path, card_path = card_module.sidecar_paths(output, is_dir=fmt.is_dir)
    print(f"wrote {output}\n{card_module.describe_card(card)}")
    print(f"  labels: {labels_path}; model card: {card_path}")
    if not job.data.real:
        print(job.data.notes[0], file=sys.stderr)
    return result


def _remove_stale(output, fmt):
    """A failed proof leaves no file at the output path, not even an older export (nor its model card)."""
    if os.path.lexists(output):
        common.discard(output)
        print(f"removed the previous {output} so that it cannot be mistaken for this export", file=sys.stderr)
    if not fmt.is_dir:
        common.discard(card_module.sidecar_paths(output)[1])
