"""What the converter tests share: random images, the logit comparison and the `.keras` round trip.

`KERAS_VIT_PARITY_LOG=FILE python -m pytest tests/convert` appends every comparison's max |logit difference| to
FILE (JSON lines): the conversion-parity figures of docs/pretrained.md.
"""

import json
import os

import numpy as np

import keras_vit

# float32 parity the converters promise: logits at most this far apart.
TOLERANCE = 1e-4


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


def assert_reloads(model, pixels, tmp_path):
    """Saves `model` to `.keras`, reloads it in safe mode and checks it gives the same logits."""
    path = tmp_path / "converted.keras"
    model.save(path)
    reloaded = keras_vit.load_model(path)
    np.testing.assert_array_equal(model.predict(pixels, verbose=0), reloaded.predict(pixels, verbose=0))
