"""Helpers of the export tests: the toy images, the command runner, what `python -m export` writes.

The fixtures built on them are in export_fixtures.py.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_vit.data import CIFAR10_CLASSES

REPO = Path(__file__).resolve().parents[2]
CLASSES = CIFAR10_CLASSES
PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (128, 128, 128),
    ],
    np.float32,
)
N_TRAIN, N_TEST = 24, 10  # per class
# What `python -m export` writes, in its order.
FILES = [
    "savedmodel",
    "model_fp32.tflite",
    "model_fp16.tflite",
    "model_dynamic.tflite",
    "model_int8.tflite",
    "model.onnx",
]


def make_images(per_class, seed):
    """Class k: palette colour k, random brightness, pixel noise. uint8 NHWC, int32 labels."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), per_class)
    base = PALETTE[y][:, None, None, :] * rng.uniform(0.8, 1.2, (len(y), 1, 1, 1))
    x = base + rng.normal(0, 25, (len(y), 32, 32, 3))
    return np.clip(x, 0, 255).round().astype(np.uint8), y.astype(np.int32)


def run(args, *, env=None, cwd=REPO, timeout=600):
    """Runs `python -m ...args` and returns the CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def explain(proc):
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"


def error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def no_data_env(tmp):
    """An environment in which no CIFAR-10 copy can be found (and nothing downloaded)."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home),
        "KERAS_HOME": str(home / ".keras"),
        "TFDS_DATA_DIR": str(home / "tfds"),
        "KERAS_VIT_CACHE_DIR": str(tmp / "cache"),
        "KERAS_VIT_DATA_DIR": "",
    }


needs_tf_keras = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="in-process conversion needs Keras on TensorFlow"
)
