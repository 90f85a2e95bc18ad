"""The per-format export step that every export command runs: convert, prove, document.

A `Format` says what one exported file is (its name, variant, file name) and
how it is made (its `convert` function); the formats themselves are defined
beside their converters (`export.savedmodel.FORMAT`, `export.tflite.FORMATS`,
`export.onnx.FORMAT`) and listed, in order, in `export.formats`.

`export_format` turns the `Job` of a command (the loaded model, its labels,
the proof images and Keras' answers on them) into one file at a temporary
path: convert, prove it against Keras in its own runtime (`export.verify`),
and write its model card. The commands publish the result: one file
(`export.cli.export_one`) or the whole folder (`python -m export`).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Callable

from export import card as card_module
from export import common, verify
from export.common import ExportError
from export.output import disk_full
from keras_vit.cli_utils import first_line
from keras_vit.files import atomic_write_json, json_text, pause_point
from keras_vit.labels import labels_text, write_labels


class DiskFullError(ExportError):
    """The disk filled up while an export wrote a file: the whole export stops (the others would fail too)."""


@dataclasses.dataclass(frozen=True)
class Format:
    """One export format.

    Attributes:
        name: `"savedmodel"`, `"tflite"` or `"onnx"` (the model card's `format`).
        variant: `"float32"`, `"float16"`, `"dynamic"` or `"int8"`.
        file_name: its name in the folder of the all-formats export.
        convert: `convert(job, path) -> dict` writes the format at `path`
            (a temporary path; an empty directory for a directory format)
            and returns the model card's fields about the conversion.
        read_io: `read_io(path) -> dict` of `card.model_card` keyword
            arguments (input/output dtypes and quantization) read back from
            the written file; `None`: float32 in and out.
        dir_marker: for a directory format (SavedModel), a file inside it
            that marks a previous export (which may be replaced); `None` for
            a file.
        needs_calibration: whether the conversion needs training images (int8).
    """

    name: str
    variant: str
    file_name: str
    convert: Callable[["Job", str], dict]
    read_io: Callable[[str], dict] | None = None
    dir_marker: str | None = None
    needs_calibration: bool = False

    @property
    def title(self):
        """`"tflite int8"`: how the terminal, the proof and the report name it."""
        return f"{self.name} {self.variant}"

    @property
    def quantize(self):
        """`None` for float32 files (proof: logit parity), else the variant (proof: accuracy drop)."""
        return None if self.variant == "float32" else self.variant

    @property
    def is_dir(self):
        return self.dir_marker is not None


@dataclasses.dataclass
class Job:
    """What every format's conversion and proof need, loaded once per command (`export.cli.prepare`).

    Attributes:
        args: the command's parsed arguments (`model`, `atol`, and the format
            options a `Format.convert` reads: `opset`, `strict_int8`).
        output: the absolute output path, checked.
        model: the Keras model (TensorFlow backend).
        io: its `common.ModelIO`.
        labels: its class names.
        label_source: a sentence saying where the class names came from.
        data: the proof (and calibration) images, a `common.Data`.
        reference: Keras' answers on them, a `verify.Reference`.
        saved_model: a SavedModel of `model` that conversions start from,
            once one is written (the all-formats export writes it first);
            `None`: each conversion writes a temporary one.
        isolate: run each TFLite conversion in a fresh process (the converter
            leaks memory per call): for a command that converts several times.
        published: whether the output has been replaced by the new export
            (set by `export.cli.publishing`; an interrupted command says so).
    """

    args: argparse.Namespace
    output: str
    model: object
    io: common.ModelIO
    labels: list
    label_source: str
    data: common.Data
    reference: verify.Reference
    saved_model: str | None = None
    isolate: bool = False
    published: bool = False

    @property
    def atol(self):
        """The largest |logit difference| a float32 file may have (`--atol`)."""
        return verify.FLOAT_ATOL if self.args.atol is None else self.args.atol


def export_format(fmt, job, path, *, file_name, labels_file=None):
    """Converts the job's model to `fmt` at `path`, proves it and writes its model card (in memory).

    Args:
        fmt: the `Format`.
        job: the command's `Job`.
        path: where to write (a temporary path: the caller publishes it).
        file_name: the name the file will have, for the model card.
        labels_file: the labels file it will have; default: its own, by
            `card.sidecar_paths` (`<stem>.labels.txt` for a file).

    Returns:
        `(result, card)`: the proof's numbers (`verify.prove`; `passed` says
        whether it passed) and the model card, which holds that same result
        dict as its `proof` (figures a command adds to the result later, such
        as size ratios, appear in both).

    Raises:
        ExportError: the conversion failed (a file that converts but fails
            its proof is a result with `passed` false, not an error).
        DiskFullError: the disk filled up while writing.
    """
    print(f"converting to {fmt.title} ...", flush=True)
    pause_point(f"converting:{fmt.name}-{fmt.variant}")
    try:
        fields = fmt.convert(job, path)
        io_fields = fmt.read_io(path) if fmt.read_io else {}
    except Exception as e:  # a full disk, whatever the library that met it says
        if disk_full(e):
            raise DiskFullError(f"the disk is full: writing {fmt.title} failed ({first_line(e)})") from None
        raise
    result = verify.prove(path, job.reference, name=fmt.title, quantize=fmt.quantize, atol=job.atol)
    if labels_file is None:
        labels_file = card_module.sidecar_paths(file_name, is_dir=fmt.is_dir)[0]
    card = card_module.model_card(
        fmt=fmt.name,
        variant=fmt.variant,
        file=file_name,
        io=job.io,
        labels=job.labels,
        source_model=job.args.model,
        labels_file=labels_file,
        extra={**fields, "proof": result},
        **io_fields,
    )
    return result, card


def write_sidecars(path, fmt, labels, card, shared_labels=False, staged=None):
    """Writes the labels file and the model card that go with an exported file, atomically.

    Beside a file `X.ext`: `X.labels.txt` (with `shared_labels`: `labels.txt`)
    and `X.ext.json`; inside a directory (SavedModel): `labels.txt` and
    `model_card.json` (see `card.sidecar_paths`).

    Args:
        path: the exported file or directory (its final path for a file).
        fmt: its `Format`.
        labels: its class names.
        card: its model card (`card.model_card`).
        shared_labels: whether files of one folder share `labels.txt`.
        staged: `staged(final_path) -> temporary path`: write each file
            there, for the caller to move it into place once the model is
            (`export.cli.Publication.stage`); `None`: each is written in place
            at once.
    """
    labels_path, card_path = card_module.sidecar_paths(path, is_dir=fmt.is_dir, shared_labels=shared_labels)
    if staged is None:
        write_labels(labels_path, labels)
        atomic_write_json(card_path, card)
        return
    staged(labels_path).write_bytes(labels_text(labels).encode("utf-8"))
    staged(card_path).write_bytes(json_text(card).encode("utf-8"))
