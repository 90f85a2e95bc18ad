"""What the converter tests share: random images, the logit comparison and the `.keras` round trip.

`KERAS_VIT_PARITY_LOG=FILE python -m pytest tests/convert` appends every comparison's max |logit difference| to
FILE (JSON lines): the conversion-parity figures of docs/pretrained.md.
"""

import json
import os
from pathlib import Path

import keras
import numpy as np

import keras_vit.models  # noqa: F401  (registers keras_vit's layers for `keras.saving.load_model`)

# float32 parity the converters promise: logits at most this far apart.
TOLERANCE = 1e-4
# Tiny random timm models, one folder per family: state dict, architecture and timm's logits
# (benchmarks/pretrained_timm_parity.py make, run where timm is installed).
TIMM_DATA = Path(__file__).parent / "data" / "timm"
# The families docs/pretrained.md says timm's state dicts convert in; each has a folder under TIMM_DATA.
TIMM_FAMILIES = (
    "deit_distilled",
    "vit_avg_fc_norm",
    "vit_avg_no_class",
    "vit_layerscale",
    "vit_no_qkv_bias",
    "vit_non_square",
    "vit_token",
)


def random_pixels(size, batch=4, seed=0):
    """Random 0..255 float32 images `(batch, height, width, 3)`; `size` is an int or `(height, width)`."""
    height, width = (size, size) if isinstance(size, int) else size
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, 3)).astype("float32")


def normalized_nchw(pixels, mean, std):
    """What the source library sees: `(pixels / 255 - mean) / std`, channels first (mean, std: 0..1)."""
    x = (pixels / 255.0 - np.asarray(mean, "float32")) / np.asarray(std, "float32")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def assert_same_logits(expected, actual):
    """At most `TOLERANCE` apart and the same top-1; returns the max |difference|."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    assert expected.shape == actual.shape
    diff = float(np.max(np.abs(expected - actual)))
    log = os.environ.get("KERAS_VIT_PARITY_LOG")
    if log:  # the conversion-parity figures of docs/pretrained.md: one JSON line per comparison
        record = {"test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0], "max_abs_diff": diff}
        record["max_abs_logit"] = float(np.max(np.abs(expected)))
        with open(log, "a") as file:
            file.write(json.dumps(record) + "\n")
    assert diff <= TOLERANCE, diff
    np.testing.assert_array_equal(expected.argmax(-1), actual.argmax(-1))
    return diff


def assert_reloads(model, pixels, tmp_path, name="converted"):
    """Saves `model` to `tmp_path/NAME.keras`, reloads it with `keras.saving.load_model(path, safe_mode=True)`
    and checks the reloaded model has the same input shape and gives the same logits, bit for bit."""
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert type(reloaded) is type(model) and reloaded.input_shape == model.input_shape
    np.testing.assert_array_equal(model.predict(pixels, verbose=0), reloaded.predict(pixels, verbose=0))


def timm_fixture(family):
    """`(state dict, config, pixels as float32, timm's logits)` of one family's folder."""
    from safetensors.numpy import load_file  # here: the other helpers need no safetensors

    folder = TIMM_DATA / family
    config = json.loads((folder / "config.json").read_text())
    reference = np.load(folder / "reference.npz")
    return (
        load_file(str(folder / "model.safetensors")),
        config,
        reference["pixels"].astype("float32"),
        reference["logits"],
    )


def convert_timm_fixture(family, **kwargs):
    """`from_timm` of one family's state dict, with its architecture, mean and std (`kwargs` override them)."""
    from keras_vit.convert import from_timm

    state, config, _, _ = timm_fixture(family)
    options = dict(architecture=config["architecture"], mean=config["mean"], std=config["std"])
    return from_timm(state, **{**options, **kwargs})
