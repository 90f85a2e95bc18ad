"""What every export command shares: its arguments, the job it prepares, and publishing one format.

`python -m export.savedmodel`, `export.tflite` and `export.onnx` differ only
in their `Format` (`export.step`); everything else (arguments, cheap checks
first, labels, data, the proof, the model card, the atomic rename) is here
and in `export.step`. `python -m export` prepares its job here too and runs
the same step for every format of `export.formats`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from export import card as card_module
from export import common, verify
from export import output as output_module
from export.common import ExportError
from export.step import DiskFullError, Job, export_format, write_sidecars
from keras_vit.cli_utils import os_error_reason, positive_float, positive_int
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


# What each command does without real images, for the help of --data-dir: by how it quantizes.
WITHOUT_IMAGES = {
    "never": "else a random batch, with a warning",
    "optional": "else a random batch, with a warning (not for int8, which stops without real images)",
    "always": "without real images it stops, as int8 needs them (export one format at a time with "
    "python -m export.savedmodel, export.tflite or export.onnx to check on a random batch)",
}


def make_parser(prog, description, output_help, int8="never"):
    """An `ArgumentParser` with the arguments every exporter takes.

    Args:
        int8: whether the command writes an int8 file, which needs real images for its calibration:
            `"never"`, `"optional"` (`--quantize int8`) or `"always"`.
    """
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
        help=f"real images for the proof{'' if int8 == 'never' else ' and int8 calibration'}: an image-folder "
        "tree DIR/{train,test}/<class>/*.jpg of the model's classes, or CIFAR-10's cifar-10-batches-py; default "
        f"$KERAS_VIT_DATA_DIR, then CIFAR-10's standard local places; {WITHOUT_IMAGES[int8]}",
    )
    parser.add_argument(
        "--eval-images",
        type=eval_images_arg,
        default="all",
        help="test images for parity and accuracy, or 'all' (default; CIFAR-10: 10000)"
        + (
            ""
            if int8 == "never"
            else ". A 1-point accuracy tolerance needs thousands of images: int8 changes the top-1 of some "
            "borderline images, both ways, so a drop measured on few images is noisy"
        ),
    )
    parser.add_argument(
        "--atol", type=positive_float, default=None, help="max |logit diff| for float32 files (default 1e-4)"
    )
    return parser


@contextlib.contextmanager
def prepared(args, *, kind, marker=None, calib_images=0, isolate=False, files=1):
    """The steps every export command starts with, cheap checks first; the command runs in the block.

    Before TensorFlow is loaded (a typo or a full disk fails in a second):
    checks the model file and the output path, takes the output's lock
    (`export.output.output_lock`: a second export to it is refused), removes
    what an interrupted export of it left (`remove_leftovers`), checks the
    free space and the data. Then loads the model, its labels and the proof
    images and computes the Keras reference. The lock is held until the
    block ends.

    On the way out, an `Interrupted` learns the output and whether it was
    published (for `run_cli`'s line), and an `OSError` while writing becomes
    one line saying that the output is unchanged.

    Args:
        args: parsed arguments of `make_parser`.
        kind: `"file"` or `"dir"`: what the output is.
        marker: a file that marks an existing output directory as a previous
            export (which may be replaced).
        calib_images: training images to load for int8 calibration (0: none).
        isolate: see `Job.isolate`.
        files: how many files of about the model's size the command writes
            (for the free-space check).

    Yields:
        The `Job`.
    """
    common.check_model_file(args.model)
    output = common.check_output_path(args.output, kind=kind, marker=marker)
    job = None
    try:
        with output_module.output_lock(output):
            output_module.remove_leftovers(output)
            output_module.check_free_space(output, args.model, files)
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
            job = Job(args, output, model, io, labels, label_source, data, reference, isolate=isolate)
            yield job
    except common.Interrupted as e:
        e.output, e.published = output, job is not None and job.published
        raise
    except OSError as e:  # writing the export (reading errors are ExportErrors already)
        reason = "the disk is full" if output_module.disk_full(e) else os_error_reason(e)
        if job is not None and job.published:  # only moving its labels and card into place was left
            kept = f"; {output} itself was written, its labels file or model card may be missing or old"
        else:
            kept = f"; nothing of {output} was changed"
        # A rename's destination (filename2) names the file meant, not its hidden temporary.
        raise ExportError(f"{e.filename2 or e.filename or output}: {reason}{kept}.") from None
    except DiskFullError as e:
        raise ExportError(f"{e}; nothing of {output} was changed.") from None


class Publication:
    """The temporary path a command fills, and the moment it starts publishing it (`publishing`)."""

    def __init__(self, path, deferral, staged):
        self.path = path
        self._deferral = deferral
        self._staged = staged

    def start(self):
        """From here only the publication is left: SIGINT/SIGTERM wait until it is complete."""
        self._deferral.defer()

    def stage(self, path):
        """A temporary path beside `path` to write a file that goes with the output (its labels, its card).

        It replaces `path` right after the output itself is in place (never
        before: a kill in between would leave the old output with the new
        labels), or is removed if the output is not published.
        """
        return self._staged.enter_context(atomic_path(path))


@contextlib.contextmanager
def publishing(job, directory=False):
    """`atomic_path(job.output)`, published when the block ends, without a signal cutting the publication short.

    The block fills `Publication.path`, and any file `Publication.stage`
    gives; a block that raises leaves the output and those files as they
    were. When it ends, the output is renamed into place (`job.published`
    then says so), then the staged files. Once the block calls
    `Publication.start()`, a SIGINT/SIGTERM (`common.Interrupted`) waits
    until all are in place.

    Yields:
        The `Publication`.
    """
    # The staged files' contexts exit after the output's: they are renamed once it is in place.
    with common.SignalDeferral() as deferral, contextlib.ExitStack() as staged:
        with atomic_path(job.output, directory=directory) as tmp:
            yield Publication(tmp, deferral, staged)
        job.published = True


def check_output_extension(parser, args, fmt):
    """A usage error (exit 2) unless a file format's output ends in its extension, before any work.

    The runtimes, and the proof, pick a file's type by its extension. An
    existing directory is left to `common.check_output_path`, which says so.
    """
    extension = os.path.splitext(fmt.file_name)[1]
    if fmt.is_dir or os.path.isdir(args.output):
        return
    if os.path.splitext(args.output)[1].lower() != extension:
        parser.error(f"the output {args.output} must end in {extension} (the runtimes go by the extension)")


def export_one(args, fmt):
    """Runs a one-format command end to end: prepare, the export step, publish; returns the proof result.

    The file (or SavedModel directory) appears at `args.output` only once it
    has passed its proof; a file's labels file and model card are renamed
    into place right after it, never before. A file's labels go to
    `<name>.labels.txt` beside it (`card.sidecar_paths`): another
    model's `labels.txt` in the folder is left alone, and the command refuses
    when the name would change another model's class names
    (`output.check_labels_twin`).

    Args:
        args: parsed arguments of `make_parser`, plus the format's options.
        fmt: the `Format` to export.

    Raises:
        ExportError / ProofError: with a one-line message, which says what
            was written: nothing, unless moving the labels file or card
            into place failed after the file itself was.
    """
    calib_images = args.calib_images if fmt.needs_calibration else 0
    files = 1 if fmt.is_dir else 2  # a file is converted from a temporary SavedModel beside it
    kind = "dir" if fmt.is_dir else "file"
    with prepared(args, kind=kind, marker=fmt.dir_marker, calib_images=calib_images, files=files) as job:
        output = job.output
        labels_path, card_path = card_module.sidecar_paths(output, is_dir=fmt.is_dir)
        if not fmt.is_dir:
            output_module.check_labels_twin(output, job.labels, labels_path)
        previous = os.path.lexists(output)
        with publishing(job, directory=fmt.is_dir) as publication:
            tmp = publication.path
            result, card = export_format(
                fmt, job, str(tmp), file_name=os.path.basename(output), labels_file=labels_path
            )
            if fmt.quantize is not None:
                float32_bytes = 4 * job.model.count_params()
                result["size_ratio_to_float32_weights"] = result["size_bytes"] / float32_bytes
            verify.require_pass([result], output=output, previous=previous)
            # A directory's labels and card live inside it: written before it is published. A file's go beside
            # it: staged now, renamed into place right after the file itself, when the block ends.
            publication.start()
            if fmt.is_dir:
                write_sidecars(tmp, fmt, job.labels, card)
            else:
                write_sidecars(output, fmt, job.labels, card, staged=publication.stage)
    print(f"wrote {output}\n{card_module.describe_card(card)}")
    print(f"  labels: {labels_path}; model card: {card_path}")
    if not job.data.real:
        print(job.data.notes[0], file=sys.stderr)
    return result
