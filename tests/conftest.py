"""Shared test settings: the TF backend in the suite's own process (the other backends' tests start
subprocesses), a private cache, and as many workers as the CPUs the process may run on."""

import json
import os
import subprocess
import sys
from pathlib import Path

# A subprocess that imports this file for its helpers keeps the backend it was started with;
# the suite's own process is set in pytest_configure.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def cifar10_dir():
    """The real CIFAR-10 copy named by `$KERAS_VIT_DATA_DIR` (any layout `keras_vit.data.load_cifar10` reads; a
    wrong one fails the test, never skips it), or None: the tests that need it skip (`.ci/run` sets it)."""
    return os.environ.get("KERAS_VIT_DATA_DIR") or None


# The slowest test files (minutes each, mostly child processes), slowest first: the workers are handed whole
# files in collection order (`--dist loadfile`), and a long file handed out last would run on alone.
SLOW_FILES = (
    "tests/test_benchmarks.py",
    "tests/test_train_faults.py",
    "tests/test_train_processes.py",
    "tests/training/test_distribute.py",
    "tests/export/test_cli.py",
    "tests/training/test_trainer.py",
    "tests/convert/test_export_converted.py",
    "tests/test_train.py",
    "tests/test_train_finetune.py",
    "tests/test_notebooks.py",
    "tests/test_pretrained.py",
    "tests/models/test_vit.py",
)


def pytest_configure(config):
    """The suite's process runs TensorFlow, whatever the shell says: a KERAS_BACKEND left there made the tests
    that assume TensorFlow fail or skip. (Keras is not imported yet: collection comes after.)"""
    os.environ["KERAS_BACKEND"] = "tensorflow"


def pytest_collection_modifyitems(config, items):
    """Starts the slow files first; the order within a file, and of the other files, is kept."""
    rank = {path: i for i, path in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(SLOW_FILES)))


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: a worker per CPU this process may run on (xdist counts physical cores: one on a 2-thread VM,
    the host's on a container pinned to fewer)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def pytest_report_header(config):
    """Says at the top of every run whether the tests that need the real CIFAR-10 copy will run."""
    if cifar10_dir():
        return (
            f"real CIFAR-10: {cifar10_dir()} (the shipped model's accuracy and real-data export parity run)"
        )
    return (
        "real CIFAR-10: KERAS_VIT_DATA_DIR is not set: the shipped model's accuracy and the real-data export "
        "parity SKIP (.ci/run sets it, and there a wrong path fails them)"
    )


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # Never write decoded-image caches into the user's home from tests.
    monkeypatch.setenv("KERAS_VIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kv_cache"))


@pytest.fixture
def mixed_bfloat16():
    """The mixed_bfloat16 dtype policy for one test; the previous policy comes back after it."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    yield
    keras.config.set_dtype_policy(previous)


def write_colour_tree(root, classes, size=32, seed=0, counts=(("train", 12), ("test", 4))):
    """Writes a learnable image tree `root/{split}/<class>/NNNN.png`: each class a colour, plus noise.

    Args:
        root: the folder to fill.
        classes: class names, in label order.
        size: the images' side in pixels.
        seed: the colours' and the noise's seed.
        counts: `(split, images per class)` pairs.

    Returns:
        `root`.
    """
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0, 255, (len(classes), 3))
    for split, count in counts:
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(colours[label] + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory):
    """A learnable 10-class image tree: each class is a colour, plus noise."""
    from keras_vit.data import CIFAR10_CLASSES

    return write_colour_tree(tmp_path_factory.mktemp("tiny_cifar"), CIFAR10_CLASSES)


def run_python(code, *args, backend="jax", timeout=300, env=None, **kwargs):
    """Runs `python -c code args...` under Keras backend `backend` (JAX on its CPU), the repository first on
    the path; returns the `CompletedProcess` with text output captured. `env`: more environment variables;
    `kwargs` go to `subprocess.run`."""
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def reference_tta_views(images, tta):
    """The views `export.runtime.tta_views` should give, written with index arithmetic instead of padding:
    a shift by (dy, dx) reads pixel (r + dy, c + dx), reflected at the borders without repeating the edge."""
    images = np.asarray(images)
    height, width = images.shape[1:3]

    def reflect(index, size):
        index = np.abs(index)
        return np.where(index > size - 1, 2 * (size - 1) - index, index)

    views = [images]
    if tta in ("flip", "flip-shift"):
        views.append(images[:, :, ::-1])
    if tta == "flip-shift":
        for dy, dx in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            shifted = images[:, reflect(np.arange(height) + dy, height)][
                :, :, reflect(np.arange(width) + dx, width)
            ]
            views += [shifted, shifted[:, :, ::-1]]
    return views


class Interrupt(Exception):
    """What `run_interrupted` stops a training run with, as a kill would stop it."""


def run_interrupted(main, args, epoch=1):
    """Runs `main(args)` (a training command's `main`) and stops it as epoch `epoch` begins, after the
    checkpoint of the epochs before it; fails if the run was not stopped there."""
    from keras_vit.training.callbacks import EpochTimer

    original = EpochTimer.on_epoch_begin

    def stop(self, begun, logs=None):
        if begun == epoch:
            raise Interrupt()
        return original(self, begun, logs)

    EpochTimer.on_epoch_begin = stop
    try:
        with pytest.raises(Interrupt):
            main(args)
    finally:
        EpochTimer.on_epoch_begin = original


def assert_a_finished_run_is_refused(main, args, out, capsys, monkeypatch):
    """`main(args)` (a training command's `main`) into `out`, the folder of a finished run, without --fresh:
    refused in one line before the data loads, exit 2, the run's files untouched."""
    from keras_vit.training import pipeline

    finished = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    accuracy = json.loads(finished["metrics.json"])["test_accuracy"]
    capsys.readouterr()
    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "load_splits", lambda *args, **kwargs: pytest.fail("the data loaded"))
        assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out} holds a finished run (model.keras, test accuracy {accuracy:.2%}); give --fresh to train "
        "again and replace it when the new run ends, or choose another --output"
    )
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == finished


HEAVY_MODULES = ("keras", "tensorflow", "jax", "torch")
_IMPORTS_AFTER = """
import runpy, sys
sys.argv = [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as exit:
    status = exit.code or 0
else:
    status = 0
print("heavy:", ",".join(m for m in {heavy!r} if m in sys.modules), "status:", status, file=sys.stderr)
"""


def heavy_imports_of(module, *args):
    """Runs `python -m module args...` and returns `(status, stdout, heavy)`: its exit status, what it printed,
    and which of `HEAVY_MODULES` (Keras and its backends) it had imported by the end."""
    result = run_python(_IMPORTS_AFTER.format(heavy=HEAVY_MODULES), module, *args, backend="tensorflow")
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("heavy:"), result.stderr[-2000:]
    heavy, status = lines[-1].removeprefix("heavy: ").split(" status: ")
    return int(status), result.stdout, [name for name in heavy.split(",") if name]


def signal_inside_a_gc_callback(signum):
    """Sends `signum` to this process from inside a garbage-collector callback, where Python drops the exception
    the handler raises (`Exception ignored in ...`): how a Ctrl-C was lost in a training run."""
    import gc

    def send(phase, info):
        if phase == "start":
            os.kill(os.getpid(), signum)

    gc.callbacks.append(send)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(send)
