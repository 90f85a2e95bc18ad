"""What the exporters share: the TensorFlow backend, errors, the `.keras` model, its labels, the proof images.

Importing this module imports nothing heavy and changes nothing: TensorFlow
and Keras are imported by the functions that need them (`keras_vit` imports
its Keras parts on first use), so a command rejects bad arguments in well
under a second. A command selects the TensorFlow backend in `run_cli`,
before anything imports Keras (`use_tensorflow_backend`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import zipfile

import numpy as np
from tqdm import tqdm

import keras_vit
from keras_vit.cli_utils import CLIError, RunFailed, console_output, first_line, print_error, signal_handlers
from keras_vit.data import holds_cifar10, load_cifar10, load_image_folder
from keras_vit.labels import cifar10_names_note, labels_and_where

DATA_HELP = (
    "pass --data-dir DIR (an image-folder tree DIR/{train,test}/<class>/*.jpg of the model's classes, or "
    "CIFAR-10's cifar-10-batches-py) or set KERAS_VIT_DATA_DIR"
)


class ExportError(CLIError):
    """Bad input, or a place the export cannot write: the commands print its one-line message and exit 2."""


class ExportFailure(ExportError, RunFailed):
    """The export itself failed, its input being fine (a converter's error, a failed proof): exit status 1."""

    exit_status = RunFailed.exit_status


def use_tensorflow_backend():
    """Makes Keras run on TensorFlow in this process, or says why it cannot.

    Exporting needs TensorFlow whatever backend trained the model (a `.keras`
    file holds backend-independent weights). Before Keras is imported this
    sets `KERAS_BACKEND=tensorflow` (and quiets TensorFlow's C++ start-up
    log); after, it checks the backend Keras has. `run_cli` calls it before a
    command runs, and every function here that imports Keras calls it first.

    Raises:
        ExportError: Keras was already imported with another backend.
    """
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return
    import keras  # already imported: this only looks it up

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ExportError(
            f"Keras was imported with the {backend!r} backend before export.* was; exporting needs "
            "TensorFlow. Set KERAS_BACKEND=tensorflow before importing keras (a .keras file trained on any "
            "backend loads under TensorFlow)."
        )


class Interrupted(BaseException):
    """SIGINT (Ctrl-C) or SIGTERM, raised in the main thread while `run_cli` runs a command.

    A `BaseException`, like `KeyboardInterrupt`: the `except Exception` of a
    conversion does not swallow it, and every `finally` and `atomic_path` on
    the way out runs (the worker process is killed, the temporary files are
    removed, the lock released). The command fills `output` and `published`
    on its way out, for the one line `run_cli` prints.
    """

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.output = None
        self.published = False

    @property
    def exit_status(self):
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM, as a shell reports a killed command."""
        return 128 + self.signum

    def message(self):
        """The line `run_cli` prints: what became of the output."""
        name = signal.Signals(self.signum).name
        if self.output is None:
            return f"interrupted ({name}) before any output was written"
        if self.published:
            return f"interrupted ({name}) after {self.output} was written (it is complete)"
        return (
            f"interrupted ({name}): the export was stopped and its temporary files removed; nothing of "
            f"{self.output} was changed"
        )


# While an output is being published (a rename, a few small files): the signals that arrived, acted on after.
_deferred_signals = None
# Every signal `run_cli`'s handler received: Python drops an exception raised where a signal arrives inside a
# garbage-collector callback or a `__del__` (JAX frees buffers in one), so the export would go on and publish;
# `raise_if_interrupted` raises it again.
_received = []


def _raise_interrupted(signum, frame):
    if _deferred_signals is not None:
        _deferred_signals.append(signum)
        return
    _received.append(signum)
    raise Interrupted(signum)


def raise_if_interrupted():
    """Raises `Interrupted` for a signal received earlier whose exception was dropped (see `_received`). Long work
    calls it between its pieces, and an output is never published after one."""
    if _received:
        raise Interrupted(_received[0])


def _signals_interrupt():
    """SIGINT and SIGTERM raise `Interrupted` in the block (main thread only: Python's rule for handlers)."""
    return signal_handlers({signal.SIGINT: _raise_interrupted, signal.SIGTERM: _raise_interrupted})


class SignalDeferral:
    """Lets a command finish publishing its output before a SIGINT/SIGTERM takes effect.

    Use as a context manager around the block that writes and publishes;
    call `defer()` once only the publication is left: a signal arriving from
    then on raises `Interrupted` when the block ends, after the output is
    complete, rather than halfway through a rename or between a file and its
    labels.
    """

    def defer(self):
        global _deferred_signals
        raise_if_interrupted()  # a signal whose exception was dropped: nothing is published
        _deferred_signals = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        global _deferred_signals
        pending, _deferred_signals = _deferred_signals, None
        if pending:
            raise Interrupted(pending[0])
        return False


def run_cli(main, argv=None):
    """Runs an export command's `main(argv)` on the TensorFlow backend.

    Returns:
        The exit status: `main`'s (0 for `None`); after an `ExportError` (or
        another `CLIError`), printed as one `error: ...` line, its
        `exit_status` (2, or 1 for an `ExportFailure`); 130 on Ctrl-C
        (SIGINT), 143 on SIGTERM, after one `interrupted ...` line.
    """
    _received.clear()
    try:
        with _signals_interrupt():
            use_tensorflow_backend()
            status = console_output(main)(argv) or 0
            if _received:  # dropped after the last check: what was published is complete
                late = Interrupted(_received[0])
                print(f"interrupted ({late}) after the output was written (it is complete)", file=sys.stderr)
                return late.exit_status
            return status
    except Interrupted as e:
        print(e.message(), file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:  # Ctrl-C outside the main thread's handler
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if _received:  # code the signal's exception went through raised another (an import's, a library's)
            late = Interrupted(_received[0])
            print(f"interrupted ({late})", file=sys.stderr)
            return late.exit_status
        if isinstance(e, CLIError):
            print_error(e, one_line=True)
            return e.exit_status
        raise
    finally:
        _received.clear()  # acted on: a later command in this process starts without it


class _Progress(tqdm):
    """tqdm that raises a dropped signal (`raise_if_interrupted`) at each step."""

    def __iter__(self):
        for item in super().__iter__():
            raise_if_interrupted()
            yield item

    def update(self, n=1):
        raise_if_interrupted()
        return super().update(n)


def progress(iterable, **kwargs):
    """A tqdm progress bar on stderr, shown only on a terminal; each step acts on a signal whose exception was
    dropped (`raise_if_interrupted`)."""
    return _Progress(iterable, file=sys.stderr, disable=None, leave=False, **kwargs)


# --------------------------------------------------------------------------
# The model.


@dataclasses.dataclass(frozen=True)
class ModelIO:
    """What an exported file takes and returns.

    Attributes:
        height, width, channels: the image size (all known).
        num_classes: number of logits.
    """

    height: int
    width: int
    channels: int
    num_classes: int

    @property
    def image_size(self):
        return (self.height, self.width)

    @property
    def input_shape(self):
        return (None, self.height, self.width, self.channels)


def check_model_file(path):
    """Cheap checks on a `.keras` path (exists, is a zip), before importing TensorFlow."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ExportError(f"model file {path} does not exist.")
    if os.path.isdir(path):
        raise ExportError(f"{path} is a directory; expected a .keras file.")
    if not zipfile.is_zipfile(path):
        raise ExportError(
            f"{path} is not a .keras file (not a zip archive): it is corrupt or another format."
        )


def load_keras_model(path):
    """Loads a `.keras` ViT (safe mode) under the TensorFlow backend.

    Args:
        path: the `.keras` file, e.g. `model.keras` written by `keras_vit.train`.

    Returns:
        `(model, io)`: the `keras.Model` and its `ModelIO`.

    Raises:
        ExportError: missing, corrupt or unloadable file, or a model whose
            input shape is not fully known.
    """
    check_model_file(path)
    use_tensorflow_backend()  # keras_vit.load_model imports Keras
    try:
        model = keras_vit.load_model(os.fspath(path))
    except keras_vit.ModelFileError as e:  # already one line that names the file
        raise ExportError(str(e)) from None
    except Exception as e:  # Keras raises many types for bad archives.
        raise ExportError(f"cannot load {path}: {first_line(e, with_type=True)}") from None
    from keras_vit.inference import check_finite_weights  # imports Keras: after the backend is set

    try:
        check_finite_weights(model, path)  # a diverged run's model: nothing to export
    except CLIError as e:
        raise ExportError(str(e)) from None
    return model, model_io(model)


def model_io(model):
    """Checks that `model` maps one fixed-size image batch to one logits matrix."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError(
            f"model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; expected one image "
            "input and one logits output."
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise ExportError(f"model input shape {shape} is not (batch, height, width, channels).")
    if any(v is None for v in shape[1:]):
        raise ExportError(
            f"model input shape {shape} has an unknown height, width or channel count; an exported file "
            "needs a fixed image size (rebuild the model for one, e.g. keras_vit.resize_vit(model, 32))."
        )
    out = tuple(model.outputs[0].shape)
    if len(out) != 2 or out[1] is None:
        raise ExportError(f"model output shape {out} is not (batch, num_classes).")
    return ModelIO(int(shape[1]), int(shape[2]), int(shape[3]), int(out[1]))


def keras_logits(model, images, batch_size=128, desc="Keras"):
    """float32 logits of `model` on raw pixel images (inference mode)."""
    images = np.asarray(images, dtype=np.float32)
    chunks = range(0, len(images), batch_size)
    out = [
        np.asarray(model.predict_on_batch(images[i : i + batch_size])) for i in progress(chunks, desc=desc)
    ]
    return (
        np.concatenate(out).astype(np.float32)
        if out
        else np.zeros((0, model.outputs[0].shape[-1]), np.float32)
    )


# --------------------------------------------------------------------------
# Labels.


def labels_with_source(model_path, num_classes, labels_file=None):
    """The class names of a model, found by the rules of `keras_vit.labels`, and where they came from.

    Args:
        model_path: the `.keras` file.
        num_classes: its number of logits.
        labels_file: a file given with `--labels`, or `None`.

    Returns:
        `(labels, source)`: the names (a list) and a sentence saying where
        they came from (a note when they are the CIFAR-10 names).

    Raises:
        ExportError: unreadable or malformed file, a wrong count of names,
            or no labels for a model without 10 outputs.
    """
    try:
        labels, found = labels_and_where(model_path, num_classes, labels_file)
    except (OSError, ValueError) as e:
        raise ExportError(str(e)) from None
    labels = list(labels)
    if found is not None:
        return labels, f"labels from {found}"
    return labels, f"note: {cifar10_names_note(model_path)}"


# --------------------------------------------------------------------------
# Images to check (and calibrate) on.


@dataclasses.dataclass
class Data:
    """Images for the proof, and for int8 calibration.

    Attributes:
        x_eval: uint8 `(n, h, w, c)` test images (or a random batch).
        y_eval: int labels in the model's label order, or `None` when
            they are unknown (random batch, other classes): accuracy is
            then measured against Keras's own top-1.
        x_calib: uint8 training images for calibration, or `None`.
        source: where the images came from.
        real: False for the random fallback batch.
        notes: warnings to print and put in the report.
    """

    x_eval: np.ndarray
    y_eval: np.ndarray | None
    x_calib: np.ndarray | None
    source: str
    real: bool
    notes: list


def _data_root(data_dir):
    if data_dir:
        return os.fspath(data_dir), "--data-dir"
    if os.environ.get("KERAS_VIT_DATA_DIR"):
        return os.environ["KERAS_VIT_DATA_DIR"], "$KERAS_VIT_DATA_DIR"
    return None, None


def check_data_available(data_dir):
    """Raises `ExportError` when a given data dir does not exist (a cheap, early check)."""
    root, origin = _data_root(data_dir)
    if root is not None and not os.path.isdir(root):
        raise ExportError(f"data directory {root} (from {origin}) does not exist.")
    return root


def _load_split(root, origin, io, split, limit, seed):
    """`limit` images (`None`: all) of one split of `root` as a `Splits`, or None: no `root` and no standard
    CIFAR-10 place for a 32x32 model, or no `root` at all for another size."""
    if root is not None:
        if holds_cifar10(root, io.image_size):  # else a tree of other classes, read as such at any size
            # A folder from the environment is left for the loader to find, so that the source names it.
            given = None if origin == "$KERAS_VIT_DATA_DIR" else root
            return load_cifar10(given, limit=limit, seed=seed, download=False, splits=split)
        loaded = load_image_folder(root, image_size=io.image_size, limit=limit, seed=seed, splits=split)
        # Named as load_cifar10 names its folder's origin.
        loaded.source += f" (from {origin if origin != '--data-dir' else 'the data_dir argument'})"
        return loaded
    if io.image_size != (32, 32):
        return None
    try:  # Standard places only; fine if there is nothing.
        return load_cifar10(limit=limit, seed=seed, download=False, splits=split)
    except (OSError, ValueError):
        return None


def load_data(data_dir, io, labels, *, eval_images=2000, calib_images=0, seed=0, fallback_images=256):
    """Loads test images to check on and training images to calibrate on.

    Sources, in order: `data_dir`, `$KERAS_VIT_DATA_DIR` (a CIFAR-10 copy:
    image-folder tree or `cifar-10-batches-py`; for a model that is not
    32x32, an image-folder tree, resized), then the standard local CIFAR-10
    places of `keras_vit.data.load_cifar10` (never a download). If none
    exists, a deterministic random batch stands in, with a loud note; a
    given directory that fails to load is an error.

    Args:
        data_dir: folder, or `None`.
        io: the model's `ModelIO`.
        labels: the model's class names (to map the data's labels).
        eval_images: number of test images (`None`: all).
        calib_images: number of training images for calibration (0: none).
        seed: selection seed (classes stay balanced).
        fallback_images: size of the random batch.

    Returns:
        A `Data`.

    Raises:
        ExportError: a given directory is unusable, or calibration images
            are needed and none were found.
    """
    root, origin = _data_root(data_dir)
    try:  # only the images used: the test images to check on, the training images to calibrate int8 on
        splits = _load_split(root, origin, io, "test", eval_images, seed)
        calibration = (
            _load_split(root, origin, io, "train", calib_images, seed)
            if calib_images and splits is not None
            else None
        )
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot load images from {root} ({origin}): {' '.join(str(e).split())}") from None

    if splits is None:
        if calib_images:
            raise ExportError(
                f"int8 quantization needs real calibration images and none were found: {DATA_HELP}; "
                "without images, export one format at a time (python -m export.tflite MODEL OUT.tflite, "
                "python -m export.onnx MODEL OUT.onnx): those are proven on random images."
            )
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, (fallback_images, io.height, io.width, io.channels), dtype=np.uint8)
        note = (
            f"WARNING: NO REAL IMAGES FOUND ({DATA_HELP}). Parity is checked on {fallback_images} "
            "deterministic random images and accuracy cannot be measured: quantized files are compared "
            "with Keras's top-1 instead."
        )
        return Data(x, None, None, "deterministic random batch (no real images found)", False, [note])

    if splits.image_shape != (io.height, io.width, io.channels):
        raise ExportError(f"images in {root} are {splits.image_shape}, the model takes {io.input_shape[1:]}.")
    notes = []
    names = list(splits.class_names)
    y_test = splits.y_test
    if names == list(labels):
        pass
    elif sorted(names) == sorted(labels):
        y_test = np.asarray([labels.index(names[i]) for i in y_test], np.int32)
    else:
        y_test = None
        notes.append(
            f"note: the data's classes {names[:5]}... are not the model's labels; accuracy is measured "
            "against Keras's top-1."
        )
    n_eval = len(splits.x_test) if eval_images is None else min(int(eval_images), len(splits.x_test))
    if eval_images is not None and n_eval < int(eval_images):
        notes.append(f"note: only {n_eval} test images available (asked for {eval_images}).")
    x_calib = calibration.x_train[:calib_images] if calib_images else None
    if calib_images and len(x_calib) < int(calib_images):
        notes.append(f"note: only {len(x_calib)} calibration images available (asked for {calib_images}).")
    return Data(
        splits.x_test[:n_eval],
        None if y_test is None else y_test[:n_eval],
        x_calib,
        splits.source,
        True,
        notes,
    )


# --------------------------------------------------------------------------
# Output paths: check early, write to a temp path beside, rename when proven.


def check_output_path(path, kind="file", marker=None):
    """Checks (early, before any work) that `path` can be written.

    Creates missing parent directories. For `kind="dir"`, an existing
    directory is only replaced if it is empty or holds `marker` (i.e. it
    is a previous export), never some other folder.

    Returns:
        The absolute path.

    Raises:
        ExportError: the parent cannot be created or written, or the path
            is of the wrong kind.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create output directory {parent}: {e.strerror or e}.") from None
    if kind == "file" and os.path.isdir(path):
        raise ExportError(f"output path {path} is a directory; give a file name.")
    if kind == "dir" and os.path.exists(path):
        if not os.path.isdir(path):
            raise ExportError(f"output path {path} exists and is not a directory.")
        entries = [e for e in os.listdir(path) if not e.startswith(".")]
        if entries and not (marker and os.path.exists(os.path.join(path, marker))):
            raise ExportError(
                f"output directory {path} exists and is not a previous export (no {marker}); remove it or "
                "choose another path."
            )
    try:  # os.access is wrong for root and some file systems: really try.
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ExportError(f"cannot write to {parent}: {e.strerror or e}.") from None
    return path


def discard(path):
    """Removes a file or directory if it exists."""
    if path is None:
        return
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)
