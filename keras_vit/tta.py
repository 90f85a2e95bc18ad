"""Test-time augmentation: the views of a batch of images that a prediction averages over.

numpy only (no Keras): `keras_vit.evaluate` / `keras_vit.predict` and the
TF-free deployment runtime (`export.runtime`) average the logits of the same
views, so a test-time augmentation scores alike in Keras and in an exported
file. What each one costs and gains on the shipped model: docs/.
"""

from __future__ import annotations

import numpy as np

from keras_vit.metrics import accuracy

TTA_CHOICES = ("none", "flip", "flip-shift")
# flip-shift's shifts: one pixel in the four diagonal directions (benchmarks/tta_variants.py compares others).
TTA_SHIFTS = ((1, 1), (1, -1), (-1, 1), (-1, -1))
# How many of `tta_views`' views each test-time augmentation averages (the first ones).
TTA_VIEW_COUNTS = {"none": 1, "flip": 2, "flip-shift": 2 + 2 * len(TTA_SHIFTS)}

TTA_HELP = (
    "test-time augmentation: 'flip' averages the logits of each image and its mirror image (twice the cost), "
    "'flip-shift' also both shifted by one pixel in each diagonal direction (ten times the cost; default: none)"
)


def check_tta(tta: str) -> str:
    """Returns `tta` if it is one of `TTA_CHOICES`.

    Raises:
        ValueError: for any other name.
    """
    if tta not in TTA_CHOICES:
        raise ValueError(f"unknown tta {tta!r}; choose one of {', '.join(TTA_CHOICES)}")
    return tta


def shift_images(images, dy: int, dx: int, mode: str = "reflect") -> np.ndarray:
    """Images moved so that pixel `(r, c)` shows `(r + dy, c + dx)`.

    Args:
        images: array `(n, height, width, channels)`.
        dy, dx: the shift in pixels (either sign).
        mode: how numpy's `np.pad` fills the border (`"reflect"`, as the
            training crop pads).

    Returns:
        A contiguous array of the same shape and dtype.
    """
    pad = max(abs(dy), abs(dx))
    height, width = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
    return np.ascontiguousarray(padded[:, pad + dy : pad + dy + height, pad + dx : pad + dx + width])


def tta_views(images, tta: str = "none"):
    """The images a test-time augmentation averages over, in a fixed order.

    Args:
        images: array `(n, height, width, channels)`.
        tta: `"none"`: the images; `"flip"`: the images, then their
            left-right mirror images (the training flip); `"flip-shift"`:
            those two, then for each of `TTA_SHIFTS` the images shifted by
            one pixel with reflect padding (as training's random crop pads)
            and their mirror images: 10 views.

    Yields:
        Contiguous arrays of the same shape as `images`: the plain images
        first, their mirror images second, so that a caller can score
        `"none"` and `"flip"` from the first views of `"flip-shift"`.

    Raises:
        ValueError: for an unknown `tta`, before the first view.
    """
    check_tta(tta)
    return _views(np.asarray(images), tta)


def _views(images, tta):
    yield images
    if tta == "none":
        return
    yield np.ascontiguousarray(images[:, :, ::-1])
    if tta == "flip-shift":
        for dy, dx in TTA_SHIFTS:
            shifted = shift_images(images, dy, dx)
            yield shifted
            yield np.ascontiguousarray(shifted[:, :, ::-1])


def tta_accuracies(view_logits, labels) -> dict:
    """Accuracy of every test-time augmentation that `view_logits` covers.

    Args:
        view_logits: logits `(n, num_classes)` of each view, in the order
            of `tta_views` (e.g. all ten of `"flip-shift"`).
        labels: int array `(n,)`.

    Returns:
        `{tta: accuracy}` for each of `TTA_CHOICES` whose views are among
        the first `len(view_logits)`: one prediction pass scores them all.
    """
    return {
        tta: accuracy(np.mean(view_logits[:count], axis=0), labels)
        for tta, count in TTA_VIEW_COUNTS.items()
        if count <= len(view_logits)
    }


def tta_metric_name(tta: str, prefix: str = "accuracy") -> str:
    """The report key of a test-time augmentation's score.

    Returns:
        `prefix` for `"none"`, else e.g. `accuracy_flip_shift_tta` (the keys
        of train's `metrics.json` and of benchmarks/tta_exports.py).
    """
    return prefix if tta == "none" else f"{prefix}_{tta.replace('-', '_')}_tta"
