"""Running a saved Keras classifier over numpy images: loading, batched logits, test-time augmentation.

Used by `keras_vit.evaluate`, `keras_vit.predict`, the training pipeline's
final scoring and the benchmarks. The views of a test-time augmentation come
from `keras_vit.tta`, the same that the deployment runtime averages.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from keras_vit.cli_utils import CLIError, first_line
from keras_vit.tta import TTA_VIEW_COUNTS, check_tta, tta_views

# Packages whose classes and functions a model file may name: Keras' own (which refuses its non-modeling
# functions itself) and this package's registered layers; "builtins" is how Keras writes its activations.
_KNOWN_PACKAGES = ("keras", "keras_vit", "builtins")
# Legacy HDF5 models: no zip archive to check; Keras reads them.
_LEGACY_SUFFIXES = (".h5", ".hdf5")


class ModelFileError(ValueError):
    """A model file that cannot be loaded; the message is one line that names the file and says why."""


def check_keras_file(path) -> dict | None:
    """Checks a `.keras` file before Keras reads it: a complete zip archive with a JSON config, no code.

    Refuses a `Lambda` layer (even one that Keras would load in safe mode
    because it names a Keras function: keras_vit models never contain one)
    and a pickled Python lambda anywhere in the config.

    Args:
        path: the model file.

    Returns:
        The parsed `config.json`, or `None` for a legacy `.h5`/`.hdf5` file
        (left to Keras).

    Raises:
        ModelFileError: the file is missing, a folder, not a zip archive
            (truncated or not a model), a corrupt archive, has no readable
            `config.json`, or its config holds code.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory; expected a .keras model file")
    if path.suffix.lower() in _LEGACY_SUFFIXES:
        return None
    invalid = f"{path} is not a valid .keras file"
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{invalid}: not a zip archive (truncated, corrupt or another format)")
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()  # reads every member: a damaged one fails its CRC here
            if bad_member is not None:
                raise ModelFileError(f"{invalid}: its zip member {bad_member} is corrupt")
            if "config.json" not in archive.namelist():
                raise ModelFileError(f"{invalid}: the archive has no config.json (not a saved Keras model)")
            text = archive.read("config.json")
    except ModelFileError:
        raise
    except Exception as e:  # zipfile raises BadZipFile, zlib.error, EOFError, ... on damaged archives
        raise ModelFileError(f"{invalid}: corrupt zip archive ({first_line(e, with_type=True)})") from None
    try:
        config = json.loads(text)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ModelFileError(f"{invalid}: its config.json is not JSON ({first_line(e)})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{invalid}: its config.json is not a model config")
    for obj, layer in _objects(config):
        if obj.get("class_name") == "Lambda":
            raise ModelFileError(
                f"{path} was refused: layer '{layer}' is a Lambda layer, which runs arbitrary Python code; "
                "safe mode does not load code from model files"
            )
        if obj.get("class_name") == "__lambda__":
            raise ModelFileError(
                f"{path} was refused: {_where(layer)}holds a pickled Python lambda, arbitrary code that safe "
                "mode does not load"
            )
    return config


def _objects(config, layer=None):
    """Yields `(object_config, name of the layer it belongs to)` for every serialized object in a config."""
    if isinstance(config, dict):
        if "class_name" in config:
            inner = config.get("config")
            name = config.get("name") or (inner.get("name") if isinstance(inner, dict) else None)
            if isinstance(name, str) and isinstance(inner, dict) and "dtype" in inner:  # a layer or model
                layer = name
            yield config, layer
        for value in config.values():
            yield from _objects(value, layer)
    elif isinstance(config, list):
        for value in config:
            yield from _objects(value, layer)


def _where(layer) -> str:
    return f"layer '{layer}' " if layer else "its config "


def _foreign_name(obj) -> str | None:
    """`module.name` of a class or function from outside Keras and keras_vit, else None."""
    module = obj.get("module")
    if not isinstance(module, str) or module.split(".")[0] in _KNOWN_PACKAGES:
        return None
    name = obj.get("config") if obj.get("class_name") == "function" else obj.get("class_name")
    return f"{module}.{name}" if isinstance(name, str) else module


def _innermost(message: str) -> str:
    """The first line of the innermost "Exception encountered:" of a Keras deserialization error."""
    return first_line(Exception(message.rsplit("Exception encountered:", 1)[-1]))


def _load_failure(path: Path, config: dict | None, error: Exception) -> str:
    """The one line that says why Keras could not load `path`."""
    message = str(error)
    innermost = _innermost(message)
    if "Requested the deserialization of a" in message and "lambda" in message:  # a legacy .h5 file's Lambda
        return f"{path} was refused: it holds a Python lambda (a Lambda layer), code that safe mode does not load"
    non_modeling = re.search(r"Cannot deserialize `([\w.]+)` because it is not a modeling function", message)
    if non_modeling:
        return (
            f"{path} was refused: its config calls {non_modeling.group(1)}, which is not a modeling function; "
            "safe mode loads only layers, operations, losses and metrics"
        )
    if re.search(r"could not be deserialized|Could not locate|Cannot deserialize", message, re.IGNORECASE):
        for obj, layer in _objects(config or {}):
            foreign = _foreign_name(obj)
            if (
                foreign and foreign.rsplit(".", 1)[-1] in message
            ):  # the name Keras could not (or would not) load
                return (
                    f"{path} was refused: {_where(layer)}names {foreign}, code from outside Keras and keras_vit "
                    "that safe mode does not load"
                )
        return f"could not load model {path}: {innermost}"
    return f"could not load model {path}: {type(error).__name__}: {innermost}"


def load_keras_model(path, compile: bool = False):
    """Loads a model file in safe mode (`keras_vit.load_model`), every failure one line.

    Args:
        path: a `.keras` file (a legacy `.h5` file is left to Keras).
        compile: whether to restore the training configuration.

    Returns:
        The `keras.Model`.

    Raises:
        ModelFileError: the file is missing, truncated, corrupt, not a Keras
            model, or its config holds or names code that safe mode does not
            load (a `Lambda` layer, a pickled lambda, a function or class from
            outside Keras and keras_vit); the message names the file.
    """
    path = Path(path)
    config = check_keras_file(path)
    importlib.import_module("keras_vit.models.vit")  # registers the custom layers and ViT
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:  # Keras raises many types for bad files.
        raise ModelFileError(_load_failure(path, config, e)) from e


def check_finite_weights(model, path=None) -> None:
    """Refuses a model with a NaN or infinite weight (a diverged training): it cannot classify anything.

    Args:
        model: a `keras.Model`.
        path: the file it came from, for the message.

    Raises:
        CLIError: some weights are not finite; the message names the first
            such variable and how many there are.
    """
    bad, total = [], 0
    for variable in model.weights:
        value = np.asarray(keras.ops.convert_to_numpy(variable))
        total += 1
        if value.dtype.kind in "biu":  # integer and boolean state (seeds, counters) is always finite
            continue
        if not np.isfinite(value.astype(np.float32, copy=False)).all():
            bad.append(variable.path)
    if bad:
        raise CLIError(
            f"{path or 'the model'} has weights that are not finite (NaN or infinity) in {len(bad)} of "
            f"{total} variables, the first {bad[0]}: it cannot classify (did its training diverge?)"
        )


def load_model_checked(path, channels: int = 3, check_weights: bool = True):
    """Loads a `.keras` classifier in safe mode, with one-line errors.

    Args:
        path: path of the `.keras` file.
        channels: the image channels the caller feeds (RGB: 3).
        check_weights: whether to refuse a model with non-finite weights
            (`check_finite_weights`).

    Returns:
        The `keras.Model`.

    Raises:
        CLIError: if the file is missing, unreadable or refused
            (`load_keras_model`), not a model taking `(batch, height, width,
            channels)` images of a fixed size to `(batch, num_classes)`
            logits, or has non-finite weights.
    """
    path = Path(path)
    try:
        model = load_keras_model(path)
    except ModelFileError as e:
        raise CLIError(str(e)) from None
    if len(model.inputs) != 1 or len(model.input_shape) != 4 or len(model.output_shape) != 2:
        raise CLIError(
            f"{path} is not an image classifier: input shape {model.input_shape}, "
            f"output shape {model.output_shape}"
        )
    if None in model.input_shape[1:]:
        raise CLIError(f"{path} has no fixed input size: {model.input_shape}")
    height, width, model_channels = model.input_shape[1:]
    if model_channels != channels:
        raise CLIError(
            f"{path} takes {height}x{width}x{model_channels} images ({model_channels} channel(s)); the images "
            f"here are {height}x{width}x{channels} ({'RGB, ' if channels == 3 else ''}after resizing), which "
            "this model cannot take"
        )
    if check_weights:
        check_finite_weights(model, path)
    return model


def predict_logits(model, images, batch_size: int = 256, progress: bool = True, desc: str = "predict"):
    """Runs the model over `images` in batches and returns the logits.

    The last, partial batch is padded to `batch_size` so the compiled
    prediction function is not traced a second time for a new shape.

    Args:
        model: a `keras.Model` taking float images 0..255.
        images: array `(n, height, width, channels)`, uint8 or float.
        batch_size: images per call.
        progress: whether to show a tqdm progress bar (only on a terminal).
        desc: progress bar label.

    Returns:
        float32 numpy array `(n, num_classes)`.

    Raises:
        ValueError: if `images` is empty.
    """
    images = np.asarray(images)
    n = len(images)
    batch_size = max(1, int(batch_size))
    logits = None
    with tqdm(total=n, desc=desc, unit="img", disable=None if progress else True, file=sys.stderr) as bar:
        for start in range(0, n, batch_size):
            batch = images[start : start + batch_size].astype("float32")
            size = len(batch)
            if size < batch_size and n > batch_size:
                pad = np.zeros((batch_size - size, *batch.shape[1:]), "float32")
                batch = np.concatenate([batch, pad])
            out = np.asarray(model.predict_on_batch(batch), dtype="float32")[:size]
            if logits is None:
                logits = np.empty((n, out.shape[-1]), "float32")
            logits[start : start + size] = out
            bar.update(size)
    if logits is None:
        raise ValueError("No images to predict.")
    return logits


def view_logits(
    model, images, tta: str = "none", batch_size: int = 256, progress: bool = True, desc: str = "predict"
):
    """`predict_logits` of each view of a test-time augmentation.

    Args:
        model: as `predict_logits`.
        images: as `predict_logits`.
        tta: one of `keras_vit.tta.TTA_CHOICES`; its views
            (`keras_vit.tta.tta_views`, the images the deployment runtime
            averages): `"none"` the images; `"flip"` also their mirror
            images (the training flip); `"flip-shift"` also both shifted by
            one pixel in each diagonal direction (reflect padding, as the
            training crop): 10 views.
        batch_size, progress, desc: as `predict_logits`.

    Returns:
        A list of float32 arrays `(n, num_classes)`, plain images first,
        mirror images second (`keras_vit.tta.tta_accuracies` scores every
        augmentation the list covers).

    Raises:
        ValueError: for an unknown `tta`, before any prediction.
    """
    return [
        predict_logits(
            model,
            view,
            batch_size,
            progress,
            desc if tta == "none" else f"{desc} (view {i}/{TTA_VIEW_COUNTS[tta]})",
        )
        for i, view in enumerate(tta_views(images, tta), 1)
    ]


def view_logits_in_chunks(
    model,
    images,
    tta: str = "none",
    batch_size: int = 256,
    chunk: int = 4096,
    progress: bool = True,
    desc: str = "predict",
):
    """`view_logits`, reading `images` `chunk` at a time (rounded up to whole batches).

    A streamed split (`keras_vit.data.streaming.FileImages`) is then never
    decoded whole, nor its views (ten per image for `"flip-shift"`) held for
    all of it at once: only their logits are.

    Args:
        model, tta, batch_size, desc: as `view_logits`.
        images: array `(n, height, width, channels)`, or an array-like that
            decodes a slice on `np.asarray` (`FileImages`).
        chunk: images read at a time.
        progress: one progress bar over the images (only on a terminal).

    Returns:
        As `view_logits`: a list of float32 arrays `(n, num_classes)`.

    Raises:
        ValueError: for an unknown `tta`, or no images, before any prediction.
    """
    parts = list(_chunk_view_logits(model, images, tta, batch_size, chunk, progress, desc))
    return [np.concatenate(logits) for logits in zip(*parts)]


def tta_logits_in_chunks(
    model,
    images,
    tta: str = "none",
    batch_size: int = 256,
    chunk: int = 4096,
    progress: bool = True,
    desc: str = "predict",
):
    """`tta_logits`, reading `images` as `view_logits_in_chunks` does and averaging each chunk's views at once:
    one array of logits is held for the whole split, whatever `tta`.

    Returns:
        float32 logits `(n, num_classes)`.

    Raises:
        ValueError: for an unknown `tta`, or no images, before any prediction.
    """
    parts = _chunk_view_logits(model, images, tta, batch_size, chunk, progress, desc)
    return np.concatenate([np.mean(views, axis=0) for views in parts])


def _chunk_view_logits(model, images, tta, batch_size, chunk, progress, desc):
    """Yields `view_logits` of each chunk of `images` in turn (see `view_logits_in_chunks`)."""
    check_tta(tta)
    if not len(images):
        raise ValueError("No images to predict.")
    step = max(1, -(-int(chunk) // batch_size)) * batch_size
    with tqdm(
        total=len(images), desc=desc, unit="img", disable=None if progress else True, file=sys.stderr
    ) as bar:
        for start in range(0, len(images), step):
            part = np.asarray(images[start : start + step])
            yield view_logits(model, part, tta, batch_size, progress=False)
            bar.update(len(part))


def tta_logits(
    model, images, tta: str = "none", batch_size: int = 256, progress: bool = True, desc: str = "predict"
):
    """`predict_logits`, or its mean over the views of a test-time augmentation.

    Args:
        model, images, batch_size, progress, desc: as `predict_logits`.
        tta: `"none"`, `"flip"` (twice the prediction cost) or `"flip-shift"`
            (ten times; see `view_logits`).

    Returns:
        float32 logits `(n, num_classes)`.

    Raises:
        ValueError: for an unknown `tta`, before any prediction.
    """
    return np.mean(view_logits(model, images, tta, batch_size, progress, desc), axis=0)
