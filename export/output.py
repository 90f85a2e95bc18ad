"""The output of an export command: one writer at a time, no leftovers, enough room, no other model's files.

Before anything is loaded, every command takes a lock beside its output
(`output_lock`), removes what an export killed earlier left there
(`remove_leftovers`) and checks the free space (`check_free_space`). A
one-format command writes its class names to `<name>.labels.txt` beside the
file; `check_labels_twin` refuses when that would change the class names of
another model sharing the name. `disk_full` tells a full disk from other
failures, so that it is one clear line.

Names are keyed by the output's stem (`out` for `out.onnx` and for a folder
`out`): files sharing a stem share their `<stem>.labels.txt`, so they share
one lock, and only the temporaries of that stem are removed (never those of
another export or a training writing in the same folder).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import zipfile
from pathlib import Path

import h5py

from export.common import ExportError, discard
from keras_vit.cli_utils import CLIError, check_output_folder
from keras_vit.data import CIFAR10_CLASSES
from keras_vit.files import exclusive_lock, stale_temporaries
from keras_vit.labels import TWIN_SUFFIX, find_labels_file, read_labels

# Files that read their class names from `<stem>.labels.txt` (keras_vit.labels, rule 2).
MODEL_SUFFIXES = (".keras", ".tflite", ".onnx")
# What an export writes besides its weights: the SavedModel's graph, the model cards, the report.
EXPORT_OVERHEAD_BYTES = 1 << 20


def lock_path(output):
    """`.<stem>.lock` beside the output (see the module docstring); it stays there, empty, between runs."""
    output = Path(output)
    return output.with_name(f".{output.stem}.lock")


@contextlib.contextmanager
def output_lock(output):
    """Holds the lock of `output` for the block, or says that another export is writing it.

    An OS file lock (`filelock`, `flock` on Linux and macOS): the system
    releases it when its process ends however it ends, so a lock left by a
    killed export never blocks the next one.

    Raises:
        ExportError: another process holds the lock.
    """
    busy = ExportError(
        f"another export is writing {output} (it holds {lock_path(output)}); wait for it to finish or "
        "choose another output."
    )
    with exclusive_lock(lock_path(output), busy):
        yield


def leftovers(output):
    """The temporary files and folders an interrupted export of `output` (or of its stem) left beside it.

    Those `atomic_path` writes (`keras_vit.files.stale_temporaries`), keeping
    only this stem's: its temporary folders (`.<stem>.tmp-*`, `.<name>.old-*`),
    a file's temporary copy (`.<stem>.tmp-*<ext>`), model card
    (`.<name>.tmp-*.json`) and labels twin (`.<stem>.labels.tmp-*.txt`). Only
    call it while holding `output_lock(output)`.
    """
    output = Path(output)
    stem, name, extension = output.stem, output.name, output.suffix
    twin_stem = stem + TWIN_SUFFIX[: -len(".txt")]

    def ours(path):
        n = path.name
        if path.is_dir() and not path.is_symlink():
            return n.startswith((f".{stem}.tmp-", f".{name}.old-"))
        return (
            (bool(extension) and n.startswith(f".{stem}.tmp-") and n.endswith(extension))
            or (n.startswith(f".{name}.tmp-") and n.endswith(".json"))
            or (n.startswith(f".{twin_stem}.tmp-") and n.endswith(".txt"))
        )

    return [path for path in stale_temporaries(output.parent) if ours(path)]


def remove_leftovers(output):
    """Removes `leftovers(output)`, first putting back a previous export a killed swap left aside.

    A folder is replaced in two renames (`keras_vit.files.atomic_path`): the
    old one aside to `.<name>.old-*`, the new one in. Killed between the two,
    the output is missing and the previous export sits aside: it is renamed
    back, not deleted. Prints what it did on stderr. Call it while holding
    `output_lock(output)`.

    Returns:
        The paths removed.
    """
    output = Path(output)
    found = leftovers(output)
    if not os.path.lexists(output):
        aside = [p for p in found if p.name.startswith(f".{output.name}.old-") and any(p.iterdir())]
        if aside:
            os.replace(aside[-1], output)
            found.remove(aside[-1])
            print(f"restored the previous export {output} from {aside[-1].name}", file=sys.stderr)
    for path in found:
        discard(path)
    if found:
        names = ", ".join(p.name for p in found)
        print(
            f"removed what an interrupted export of {output} left in {output.parent}: {names}",
            file=sys.stderr,
        )
    return found


def model_weight_bytes(model_path):
    """Bytes of a `.keras` model's own weights (not its optimizer's), read from the archive's index.

    Only the HDF5 metadata is read, not the weights. The file's size when the
    archive has no readable `model.weights.h5` (the size is then an upper
    bound: the file also holds the optimizer's state).
    """
    total = 0

    def add(name, item):
        nonlocal total
        if isinstance(item, h5py.Dataset) and not name.startswith("optimizer/"):
            total += item.size * item.dtype.itemsize

    try:
        with zipfile.ZipFile(model_path) as archive, archive.open("model.weights.h5") as f:
            with h5py.File(f, "r") as weights:
                weights.visititems(add)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        total = 0
    return total or os.path.getsize(model_path)


def check_free_space(output, model_path, files):
    """Checks that the output's disk has room for `files` copies of the model's weights, before any work.

    An exported file is at most about the size of the float32 weights (the
    quantized ones are smaller); a one-format command also writes a
    temporary SavedModel beside its file. The previous export stays until the
    new one is complete, so it is not counted as free.

    Raises:
        ExportError: the disk has less free space than that.
    """
    needed = files * model_weight_bytes(model_path) + EXPORT_OVERHEAD_BYTES
    folder = os.path.dirname(os.path.abspath(os.fspath(output)))
    try:
        check_output_folder(folder, min_free_bytes=needed, what="the output's folder")
    except CLIError as e:
        raise ExportError(
            f"{e} ({files} file{'s' if files > 1 else ''} of about the model's weights each); free some space "
            "or choose another output."
        ) from None


def disk_full(error):
    """Whether an error says the disk is full (or over quota): an `OSError`, or a library's message with it."""
    codes = (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, OSError) and error.errno in codes:
        return True
    return any(os.strerror(code) in str(error) for code in codes)


def check_labels_twin(output, labels, labels_path):
    """Refuses a one-format export whose `<stem>.labels.txt` would change another model's class names.

    A model file with the same stem beside the output (`out.keras`,
    `out.tflite` beside `out.onnx`) reads its names from that file first
    (`keras_vit.labels`, rule 2); writing other names there would break it.

    Args:
        output: the exported file.
        labels: its class names.
        labels_path: the labels file the export writes (`<stem>.labels.txt`).

    Raises:
        ExportError: another model beside the output would get other names.
    """
    output = Path(output)
    for other in sorted(output.parent.iterdir()):
        if other.name == output.name or other.stem != output.stem or other.suffix not in MODEL_SUFFIXES:
            continue
        if not other.is_file():
            continue
        found = find_labels_file(other)
        try:
            current = list(read_labels(found)) if found is not None else list(CIFAR10_CLASSES)
        except (OSError, ValueError):
            current = None
        if current != list(labels):
            source = found if found is not None else "the CIFAR-10 default"
            raise ExportError(
                f"{labels_path} would hold this model's class names, but {other.name} beside it reads its names "
                f"from {source} and they differ: export to a file with another name (stem), or to another "
                "folder."
            )
