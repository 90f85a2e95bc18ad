"""Shared helpers of the exporters: backend, model loading, labels, data, atomic writes.

Importing this module selects the TensorFlow backend for Keras (unless Keras
is already imported) and imports nothing heavy: TensorFlow, Keras and
`keras_vit` are imported inside the functions, so a CLI can reject bad
arguments in well under a second.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import zipfile

import numpy as np

from export.runtime import LABELS_FILENAME, RuntimeModelError, default_threads, read_labels

# Exporting needs TensorFlow whatever backend trained the model (the `.keras`
# file holds backend-independent weights). Must happen before `import keras`.
if "keras" not in sys.modules:
    os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter.

DATA_HELP = (
    "pass --data-dir DIR (a CIFAR-10 image-folder tree DIR/{train,test}/<class>/*.jpg, "
    "or cifar-10-batches-py) or set KERAS_VIT_DATA_DIR"
)


class ExportError(Exception):
    """A user-facing failure: the CLIs print its one-line message and exit 1."""


def require_tf_backend():
    """Raises `ExportError` if Keras was already imported with another backend."""
    if "keras" in sys.modules:
        import keras

        backend = keras.backend.backend()
        if backend != "tensorflow":
            raise ExportError(
                f"Keras was imported with the {backend!r} backend before export.* was; exporting needs "
                "TensorFlow. Set KERAS_BACKEND=tensorflow before importing keras (a .keras file trained "
                "on any backend loads under TensorFlow)."
            )


def run_cli(main, argv=None):
    """Runs a CLI `main(argv)`, turning `ExportError` into `error: ...` and exit status 1."""
    try:
        return main(argv) or 0
    except ExportError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def machine_info():
    """CPU model, cores and software versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores_available": default_threads(),
        "cores_total": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:  # other jobs on the machine make the numbers noisy: record how busy it was
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    for module in ("tensorflow", "keras", "ai_edge_litert", "onnxruntime"):
        try:
            from importlib.metadata import version

            info[module] = version(module.replace("_", "-"))
        except Exception:  # not installed, or no metadata
            pass
    return info


@functools.lru_cache(maxsize=None)
def proof_machine():
    """Where files are converted and proven: CPU, cores, platform, Python and runtime versions.

    A quantized file's score moves by hundredths of a point between CPUs (their
    kernels round differently), so model cards and the report name the machine.
    Fixed for the process, so read once: an export writes several cards.
    """
    return {key: value for key, value in machine_info().items()
            if key in ("cpu", "cores_available", "platform", "python", "ai_edge_litert", "onnxruntime")}


def progress(iterable, **kwargs):
    """A tqdm progress bar on stderr, shown only on a terminal."""
    from tqdm import tqdm

    return tqdm(iterable, file=sys.stderr, disable=None, leave=False, **kwargs)


def first_line(error):
    """`TypeName: first line of the message` of an exception."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:400]


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
        raise ExportError(f"{path} is not a .keras file (not a zip archive): it is corrupt or another format.")


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
    require_tf_backend()
    import keras_vit

    try:
        model = keras_vit.load_model(os.fspath(path))
    except Exception as e:  # Keras raises many types for bad archives.
        raise ExportError(f"cannot load {path}: {first_line(e)}") from None
    return model, model_io(model)


def model_io(model):
    """Checks that `model` maps one fixed-size image batch to one logits matrix."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError(
            f"model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; expected one image input "
            "and one logits output."
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise ExportError(f"model input shape {shape} is not (batch, height, width, channels).")
    if any(v is None for v in shape[1:]):
        raise ExportError(
            f"model input shape {shape} has an unknown height, width or channel count; an exported file needs "
            "a fixed image size (rebuild the model for one, e.g. keras_vit.resize_vit(model, 32))."
        )
    out = tuple(model.outputs[0].shape)
    if len(out) != 2 or out[1] is None:
        raise ExportError(f"model output shape {out} is not (batch, num_classes).")
    return ModelIO(int(shape[1]), int(shape[2]), int(shape[3]), int(out[1]))


def keras_logits(model, images, batch_size=128, desc="Keras"):
    """float32 logits of `model` on raw pixel images (inference mode)."""
    images = np.asarray(images, dtype=np.float32)
    chunks = range(0, len(images), batch_size)
    out = [np.asarray(model.predict_on_batch(images[i:i + batch_size])) for i in progress(chunks, desc=desc)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.outputs[0].shape[-1]), np.float32)


# --------------------------------------------------------------------------
# Labels.


def resolve_labels(model_path, num_classes, labels_file=None):
    """Finds the class names of a model.

    Order: `labels_file`, else `labels.txt` beside the model (written by
    `keras_vit.train`), else its `<name>.labels.txt` twin (as the shipped
    `keras_vit/pretrained/vit_cifar10.keras` has), else the CIFAR-10 names
    when the model has 10 outputs (returned with a note to print).

    Returns:
        `(labels, source)`: the names and a sentence saying where they came from.

    Raises:
        ExportError: unreadable file, wrong count, or no source.
    """
    model_path = os.path.abspath(os.fspath(model_path))
    folder, stem = os.path.dirname(model_path), os.path.splitext(os.path.basename(model_path))[0]
    for beside in (os.path.join(folder, LABELS_FILENAME), os.path.join(folder, f"{stem}.labels.txt")):
        if labels_file is None and os.path.isfile(beside):
            labels_file = beside
    if labels_file is not None:
        try:
            labels = read_labels(labels_file)
        except RuntimeModelError as e:
            raise ExportError(str(e)) from None
        source = f"labels from {labels_file}"
    elif num_classes == 10:
        from keras_vit.data import CIFAR10_CLASSES

        labels = list(CIFAR10_CLASSES)
        source = (
            f"note: no --labels and no {LABELS_FILENAME} beside {model_path}; the model has 10 outputs, "
            "so the CIFAR-10 class names are used"
        )
    else:
        raise ExportError(
            f"no class names for a model with {num_classes} outputs: pass --labels FILE (one class per line) "
            f"or put {LABELS_FILENAME} beside {model_path}."
        )
    if len(labels) != num_classes:
        raise ExportError(f"{labels_file} has {len(labels)} labels but the model has {num_classes} outputs.")
    if len(set(labels)) != len(labels):
        raise ExportError(f"{labels_file} has duplicate class names.")
    return labels, source


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
    from keras_vit import data as kdata

    root, origin = _data_root(data_dir)
    limit = None if eval_images is None else max(int(eval_images), int(calib_images))
    splits = None
    try:
        if root is not None:
            if io.image_size == (32, 32):
                splits = kdata.load_cifar10(root, limit=limit, seed=seed, download=False)
            else:
                splits = kdata.load_image_folder(root, image_size=io.image_size, limit=limit, seed=seed)
        elif io.image_size == (32, 32):
            try:  # Standard places only; fine if there is nothing.
                splits = kdata.load_cifar10(limit=limit, seed=seed, download=False)
            except (OSError, ValueError):
                splits = None
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot load images from {root} ({origin}): {' '.join(str(e).split())}") from None

    if splits is None:
        if calib_images:
            raise ExportError(f"int8 quantization needs real calibration images and none were found: {DATA_HELP}.")
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
    x_calib = splits.x_train[:calib_images] if calib_images else None
    if calib_images and len(x_calib) < int(calib_images):
        notes.append(f"note: only {len(x_calib)} calibration images available (asked for {calib_images}).")
    return Data(
        splits.x_test[:n_eval], None if y_test is None else y_test[:n_eval], x_calib, splits.source, True, notes
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


def temp_path(path, suffix=""):
    """A fresh hidden path in the same directory as `path` (so `os.replace` is atomic)."""
    path = os.path.abspath(os.fspath(path))
    # Keep the extension last: runtimes pick the file type by it.
    stem, extension = os.path.splitext(os.path.basename(path))
    name = f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(3)}{suffix}{extension}"
    return os.path.join(os.path.dirname(path), name)


def discard(path):
    """Removes a file or directory if it exists."""
    if path is None:
        return
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def publish(tmp, final):
    """Moves a finished `tmp` file or directory to `final`.

    Files: one atomic `os.replace`. Directories (no atomic swap on POSIX): the
    old directory is renamed aside, the new one renamed in, the old one
    deleted; readers never see a half-written directory.
    """
    if os.path.isdir(tmp) and os.path.isdir(final):
        old = temp_path(final, ".old")
        os.replace(final, old)
        try:
            os.replace(tmp, final)
        except OSError:
            os.replace(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def write_text(path, text):
    """Writes a text file atomically (temp file beside it, then rename)."""
    tmp = temp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_labels(path, labels):
    """Writes `labels.txt` (one class per line) atomically."""
    write_text(path, "".join(f"{name}\n" for name in labels))


def sidecar_paths(output, is_dir=False):
    """`(labels_path, card_path)` written with an export.

    For a file `X.ext`: `labels.txt` beside it and the model card `X.ext.json`.
    For a directory (SavedModel): `labels.txt` and `model_card.json` inside.
    """
    output = os.path.abspath(os.fspath(output))
    if is_dir:
        return os.path.join(output, LABELS_FILENAME), os.path.join(output, "model_card.json")
    return os.path.join(os.path.dirname(output), LABELS_FILENAME), output + ".json"


# --------------------------------------------------------------------------
# Model card: what the file takes and returns.


def model_card(*, fmt, variant, file, io, labels, source_model, input_dtype="float32", input_quantization=None,
               output_dtype="float32", output_quantization=None, extra=None):
    """The documentation of one exported file, as a JSON-ready dict."""
    import keras
    import tensorflow as tf

    import keras_vit

    image_input = {
        "name": "images",
        "shape": list(io.input_shape),
        "dtype": input_dtype,
        "layout": "NHWC (batch, height, width, channels), any batch size",
        "values": "raw RGB pixel values 0..255 (no normalization: the model normalizes inside)",
    }
    if input_quantization is not None:
        scale, zero_point = input_quantization
        image_input["quantization"] = {"scale": scale, "zero_point": zero_point}
        image_input["values"] += (
            "; uint8 pixels go in as they are (scale 1, zero point 0: exact)" if (scale, zero_point) == (1.0, 0)
            else f"; quantize as q = round(pixel / {scale:g} + ({zero_point}))"
        )
    logits = {
        "name": "logits",
        "shape": [None, io.num_classes],
        "dtype": output_dtype,
        "values": "logits (unnormalized scores); softmax(logits) gives probabilities; argmax gives the class",
    }
    if output_quantization is not None:
        scale, zero_point = output_quantization
        logits["quantization"] = {"scale": scale, "zero_point": zero_point}
        logits["values"] = (
            f"int8 quantized logits: logit = {scale:g} * {_minus(zero_point)}; argmax over q gives the class "
            "directly; softmax the dequantized logits for probabilities"
        )
    card = {
        "format": fmt,
        "variant": variant,
        "file": os.path.basename(os.fspath(file)),
        "input": image_input,
        "output": logits,
        "labels_file": LABELS_FILENAME,
        "labels": list(labels),
        "source_model": os.path.abspath(os.fspath(source_model)),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"keras_vit": keras_vit.__version__, "keras": keras.__version__, "tensorflow": tf.__version__},
        "machine": proof_machine(),
    }
    card.update(extra or {})
    return card


def _minus(zero_point):
    """`(q - z)` written without a double sign."""
    return f"(q - {zero_point})" if zero_point >= 0 else f"(q + {-zero_point})"


def describe_card(card):
    """Two lines for the terminal: input and output of an exported file."""
    i, o = card["input"], card["output"]
    shape = lambda s: "(" + ", ".join("batch" if v is None else str(v) for v in s) + ")"  # noqa: E731
    return (
        f"  input  '{i['name']}': {i['dtype']} {shape(i['shape'])}, {i['values']}\n"
        f"  output '{o['name']}': {o['dtype']} {shape(o['shape'])}, {o['values']}"
    )
