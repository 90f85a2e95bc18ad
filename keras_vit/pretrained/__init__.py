"""Trained models shipped inside the package.

`vit_cifar10`: a ViT of the `vit_cifar10` preset's shape (4x4 patches,
width 192, 9 blocks, MLP 384) but for two arguments: `num_heads=12` (12
heads of 16 where the preset has 3 of 64: the same weight shapes) and
`num_registers=1` (one register token). It was trained on CIFAR-10 by
`python -m keras_vit.train --recipe cifar10_gpu --registers 1 --teacher
TEACHER.keras --distillation soft` (the recipe takes `vit_cifar10` with 12
heads), distilled from a ConvNet teacher. Saved before `ViT` existed, it loads as a
plain functional model of a ViT's layers; `vit_arguments(load_pretrained())`
reads its arguments back. How it was trained and what it scores (test
accuracy, epochs, wall-clock, the device, the exact arguments) are in
`vit_cifar10.metrics.json` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

from keras_vit import load_model  # imports Keras only when called

HERE = Path(__file__).resolve().parent
AVAILABLE = ("vit_cifar10",)


def _check(name):
    if name not in AVAILABLE:
        raise ValueError(f"No shipped model {name!r}; available: {', '.join(AVAILABLE)}.")


def model_path(name="vit_cifar10"):
    """Path of the shipped `.keras` file (its `labels.txt` twin is beside it)."""
    _check(name)
    return HERE / f"{name}.keras"


def labels_path(name="vit_cifar10"):
    """Path of the shipped model's `labels.txt` (one class name a line, in the order of its logits)."""
    _check(name)
    return HERE / f"{name}.labels.txt"


def metrics(name="vit_cifar10"):
    """The training metrics recorded when the shipped model was made."""
    _check(name)
    return json.loads((HERE / f"{name}.metrics.json").read_text())


def load_pretrained(name="vit_cifar10"):
    """Loads a shipped trained model (safe mode) ready for evaluation or export.

    Args:
        name: one of `AVAILABLE`.

    Returns:
        The float32 `keras.Model` (images 0..255 -> logits).
    """
    return load_model(model_path(name), compile=False)
