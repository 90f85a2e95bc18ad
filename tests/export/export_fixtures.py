"""Fixtures of the export tests: the toy image tree, a tiny trained ViT, its all-formats export.

A tiny ViT (`vit_micro`) is trained for a few seconds on a generated 10-class
image tree (one colour per class, plus noise), so its logits are far from
zero and its top-1 is confident: parity and quantized-accuracy checks are
meaningful, and stable.

Test modules load these fixtures with `pytest_plugins = ["export_fixtures"]`
(and import helpers from export_helpers.py). This is not a `conftest.py`: a
second `conftest.py` would take the module name `conftest` from
tests/conftest.py, whose helpers other test modules import (`from conftest
import run_python`).

The data tree, the trained model and the all-formats export are built once
per test run, even when pytest-xdist spreads the modules over workers: the
first worker that needs one builds it, under a file lock in the run's shared
temporary folder; the others wait for it and reuse it.
"""

import fcntl
import os
import shutil
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
from export_helpers import CLASSES, N_TEST, N_TRAIN, explain, make_images, run
from PIL import Image

import keras_vit


def build_once(path, build):
    """Runs `build(path)` unless a worker of this test run already built `path`; returns `path`.

    A failed build leaves no `.done` mark: the next caller starts over.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done = path.with_name(path.name + ".done")
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            build(path)
            done.touch()
    return path


# --------------------------------------------------------------------------
# Fixtures: data tree, trained model, the all-formats export.


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """A folder every pytest-xdist worker of this run sees (the run's base temp folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "export_shared"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="session")
def data_tree(shared):
    """shared/data/{train,test}/<CIFAR class>/*.png and the same arrays in memory."""
    arrays = {"train": make_images(N_TRAIN, 0), "test": make_images(N_TEST, 1)}

    def build(root):
        for split, (x, y) in arrays.items():
            for i, (image, label) in enumerate(zip(x, y)):
                folder = root / split / CLASSES[label]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(folder / f"{i:04d}.png")

    return build_once(shared / "data", build), arrays


@pytest.fixture(scope="session")
def trained(shared, data_tree):
    """vit_micro trained on the tree; `model.keras`, `labels.txt` and its test logits in shared/model."""
    _, arrays = data_tree
    x_test, y_test = arrays["test"]

    def build(folder):
        x, y = arrays["train"]
        keras.utils.set_random_seed(0)
        model = keras_vit.build_vit("vit_micro")
        model.compile(
            keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        model.fit(x.astype("float32"), y, epochs=25, batch_size=32, verbose=0)
        logits = np.asarray(model.predict(x_test.astype("float32"), verbose=0))
        assert (logits.argmax(1) == y_test).mean() >= 0.95, "the test model did not learn the toy task"
        folder.mkdir()
        model.save(folder / "model.keras")
        (folder / "labels.txt").write_text("\n".join(CLASSES) + "\n")
        np.save(folder / "test_logits.npy", logits)

    folder = build_once(shared / "model", build)
    return {
        "model": keras_vit.load_model(folder / "model.keras"),
        "path": folder / "model.keras",
        "x_test": x_test,
        "y_test": y_test,
        "logits": np.load(folder / "test_logits.npy"),
    }


@pytest.fixture(scope="session")
def export_dir(shared, data_tree, trained):
    """`python -m export MODEL OUT` on the toy data: all formats, proven."""
    root, _ = data_tree

    def build(out):
        proc = run(
            ["export", trained["path"], out, "--data-dir", root, "--calib-images", "64"],
            env={"KERAS_VIT_CACHE_DIR": str(shared / "cache")},
        )
        assert proc.returncode == 0, explain(proc)

    return build_once(shared / "out", build)


@pytest.fixture(scope="module")
def odd_models(work):
    """A corrupt .keras (zip, wrong content), garbage bytes, and a model with unknown input size."""
    folder = work / "odd"
    folder.mkdir()
    with zipfile.ZipFile(folder / "corrupt.keras", "w") as z:
        z.writestr("config.json", "{not json")
    (folder / "garbage.keras").write_bytes(b"\x00garbage" * 10)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(10)(x)).save(folder / "any_size.keras")
    return folder


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs mounted for one test (root on Linux); the test is skipped where mounting is not allowed."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    if not sys.platform.startswith("linux"):
        pytest.skip("a tmpfs needs Linux")
    try:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True, text=True
        )
    except OSError as e:
        pytest.skip(f"cannot run mount: {e}")
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {proc.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
