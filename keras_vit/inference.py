"""Running a saved Keras classifier over numpy images: loading, batched logits, test-time augmentation.

Used by `keras_vit.evaluate`, `keras_vit.predict`, the training pipeline's
final scoring and the benchmarks. The views of a test-time augmentation come
from `keras_vit.tta`, the same that the deployment runtime averages.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

import keras_vit
from keras_vit.cli_utils import CLIError, first_line
from keras_vit.tta import TTA_VIEW_COUNTS, tta_views


def load_model_checked(path):
    """Loads a `.keras` classifier in safe mode, with one-line errors.

    Args:
        path: path of the `.keras` file.

    Returns:
        The `keras.Model`.

    Raises:
        CLIError: if the file is missing, unreadable, or not a model taking
            `(batch, height, width, channels)` images to `(batch,
            num_classes)` logits.
    """
    path = Path(path)
    if not path.exists():
        raise CLIError(f"model file {path} does not exist")
    if path.is_dir():
        raise CLIError(f"{path} is a directory; expected a .keras model file")
    try:
        model = keras_vit.load_model(path)
    except Exception as e:  # Keras raises many types for bad files.
        raise CLIError(f"could not load model {path}: {first_line(e, with_type=True)}") from None
    if len(model.inputs) != 1 or len(model.input_shape) != 4 or len(model.output_shape) != 2:
        raise CLIError(
            f"{path} is not an image classifier: input shape {model.input_shape}, "
            f"output shape {model.output_shape}"
        )
    if None in model.input_shape[1:]:
        raise CLIError(f"{path} has no fixed input size: {model.input_shape}")
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
