"""The flow shared by the one-format CLIs: check, load, convert to a temp path, prove, publish.

`python -m export.savedmodel`, `export.tflite` and `export.onnx` differ only
in their conversion function; everything else (arguments, cheap checks
first, labels, data, the proof, the atomic rename, the model card) is here.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

from export import common
from export.common import ExportError
from keras_vit.evaluate import positive_int


def eval_images_arg(value):
    """`--eval-images`: a positive int, or `all`."""
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
        prog=prog, description=description,
        epilog="Input of every exported file: float32 (batch, height, width, 3) raw RGB pixels 0..255, channels "
        "last (int8 TFLite: uint8 pixels). Output: logits (batch, num_classes); softmax gives probabilities. "
        "The file is written to a temp path and renamed only after it passes the parity proof.",
    )
    parser.add_argument("model", help="trained .keras file (from any Keras backend)")
    parser.add_argument("output", help=output_help)
    parser.add_argument("--labels", default=None,
                        help="class names, one per line (default: labels.txt or MODEL.labels.txt beside the model, "
                        "else the CIFAR-10 names for a 10-class model)")
    parser.add_argument("--data-dir", default=None,
                        help="real images for the proof (and int8 calibration): a CIFAR-10 copy "
                        "(DIR/{train,test}/<class>/*.jpg or cifar-10-batches-py); default $KERAS_VIT_DATA_DIR, "
                        "then the standard local places; else a random batch, with a warning")
    parser.add_argument("--eval-images", type=eval_images_arg, default="all",
                        help="test images for parity and accuracy, or 'all' (default; CIFAR-10: 10000). A 1-point "
                        "accuracy tolerance needs thousands of images: int8 changes the top-1 of a few %% of "
                        "borderline images, both ways, so on 2000 images the measured drop has a noise of about "
                        "+-0.4 point")
    parser.add_argument("--atol", type=float, default=None,
                        help="max |logit diff| for float32 files (default 1e-4)")
    return parser


Prepared = collections.namedtuple("Prepared", "output model io labels label_source data reference")


def prepare(args, *, kind, marker=None, calib_images=0):
    """The steps every export command starts with, cheap checks first.

    Checks the model file, the output path and the data before loading
    TensorFlow (a typo fails in a second), then loads the model, its labels
    and the proof images and computes the Keras reference.

    Returns:
        A `Prepared` tuple.
    """
    from export import verify

    common.check_model_file(args.model)
    output = common.check_output_path(args.output, kind=kind, marker=marker)
    common.check_data_available(args.data_dir)
    if args.labels is not None and not os.path.isfile(args.labels):
        raise ExportError(f"labels file {args.labels} does not exist.")

    model, io = common.load_keras_model(args.model)
    labels, label_source = common.resolve_labels(args.model, io.num_classes, args.labels)
    print(label_source)
    # int8 needs calibration images, so this fails (clearly) without real data.
    data = common.load_data(args.data_dir, io, labels, eval_images=args.eval_images, calib_images=calib_images)
    for note in data.notes:
        print(note, file=sys.stderr if not data.real else sys.stdout)
    reference = verify.Reference(model, data)
    print(f"checking on {reference.description}; Keras accuracy {reference.keras_accuracy:.2f}%")
    return Prepared(output, model, io, labels, label_source, data, reference)


def export_one(args, *, fmt, variant, convert, is_dir=False, calib_images=0, marker=None):
    """Runs one export end to end; returns the proof result.

    Args:
        args: parsed arguments of `make_parser`.
        fmt: `"savedmodel"`, `"tflite"` or `"onnx"`.
        variant: `"float32"`, `"float16"`, `"dynamic"`, `"int8"`.
        convert: `convert(model, io, tmp_path, data) -> dict` writes the file
            (or directory) at `tmp_path` and returns extra model-card fields.
        is_dir: the output is a directory (SavedModel).
        calib_images: training images needed for calibration (int8).
        marker: a file that marks an existing directory as a previous export.

    Raises:
        ExportError / ProofError: with a one-line message; nothing is left
            at the output path.
    """
    from export import verify

    output, model, io, labels, _, data, reference = prepare(
        args, kind="dir" if is_dir else "file", marker=marker, calib_images=calib_images)

    tmp = common.temp_path(output)
    labels_path, card_path = common.sidecar_paths(output, is_dir=is_dir)
    try:
        print(f"converting to {fmt} {variant} ...", flush=True)
        extra = convert(model, io, tmp, data) or {}
        quantize = None if variant == "float32" else variant
        atol = verify.FLOAT_ATOL if args.atol is None else args.atol
        result = verify.prove(tmp, reference, name=f"{fmt} {variant}", quantize=quantize, atol=atol)
        if quantize is not None:
            float32_bytes = 4 * model.count_params()
            result["size_ratio_to_float32_weights"] = result["size_bytes"] / float32_bytes
        if not result["passed"]:
            _remove_stale(output, card_path)
            verify.require_pass([result])
        runtime_info = extra.pop("runtime_info", {})
        card = common.model_card(
            fmt=fmt, variant=variant, file=output, io=io, labels=labels, source_model=args.model,
            extra={**extra, "proof": result}, **runtime_info,
        )
        if is_dir:  # The sidecars live inside the directory: write them before it is published.
            labels_path, card_path = common.sidecar_paths(tmp, is_dir=True)
        common.write_labels(labels_path, labels)
        common.write_json(card_path, card)
        common.publish(tmp, output)  # last: the file appears only when everything is in place
    finally:
        common.discard(tmp)
    print(f"wrote {output}\n{common.describe_card(card)}")
    print(f"  labels: {common.sidecar_paths(output, is_dir=is_dir)[0]}; model card: "
          f"{common.sidecar_paths(output, is_dir=is_dir)[1]}")
    if not data.real:
        print(data.notes[0], file=sys.stderr)
    return result


def _remove_stale(output, card_path):
    """A failed proof leaves no file at the output path, not even an older export."""
    if os.path.lexists(output):
        common.discard(output)
        print(f"removed the previous {output} so that it cannot be mistaken for this export", file=sys.stderr)
    if os.path.exists(card_path) and not os.path.isdir(output):
        common.discard(card_path)
