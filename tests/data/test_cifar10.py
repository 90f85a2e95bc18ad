"""Tests for keras_vit.data.cifar10: every CIFAR-10 source, in order, offline."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cifar10_dir
from data_trees import make_tree, write_batches

from keras_vit import data
from keras_vit.data import cifar10


def test_load_cifar10_test_only(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    # An image-folder tree with only test/ (also nested under cifar10-jpeg/).
    root = make_tree(
        tmp_path / "c" / "cifar10-jpeg", data.CIFAR10_CLASSES, n_train=1, n_test=2, size=(32, 32)
    )
    shutil.rmtree(root / "train")
    for where in (root, root.parent):
        s = data.load_cifar10(where, cache_dir=False, splits="test")
        assert s.x_test.shape == (20, 32, 32, 3) and s.x_train.shape == (0, 32, 32, 3)
        assert s.class_names == data.CIFAR10_CLASSES
    with pytest.raises(data.DataNotFoundError, match=r"Missing split folder .*cifar10-jpeg.train"):
        data.load_cifar10(root, cache_dir=False)

    # The official batches: only test_batch is needed (and read).
    folder = write_batches(tmp_path / "cifar-10-batches-py")
    for i in range(1, 6):
        (folder / f"data_batch_{i}").unlink()
    s = data.load_cifar10(folder, splits="test")
    assert s.x_test.shape == (10, 32, 32, 3) and s.y_test.dtype == np.int32
    assert s.x_train.shape == (0, 32, 32, 3) and s.y_train.shape == (0,)
    np.testing.assert_array_equal(s.x_test[:, 5, 7, 0], s.y_test * 20)
    assert data.load_cifar10(folder, splits="test", limit=5).y_test.shape == (5,)
    with pytest.raises(data.DataNotFoundError, match=r"lacks data_batch_1"):
        data.load_cifar10(folder)
    with pytest.raises(data.DataNotFoundError, match=r"lacks data_batch_1"):
        data.load_cifar10(folder, splits="train")
    (folder / "test_batch").unlink()
    write_batches(tmp_path / "b2")
    (tmp_path / "b2/test_batch").unlink()
    s = data.load_cifar10(tmp_path / "b2", splits=("train",))
    assert s.x_train.shape == (50, 32, 32, 3) and s.x_test.shape == (0, 32, 32, 3)


def test_cifar_batches_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    folder = write_batches(tmp_path / "cifar-10-batches-py")
    for where in (folder, tmp_path):  # The folder itself or its parent.
        s = data.load_cifar10(where)
        assert s.x_train.shape == (50, 32, 32, 3) and s.x_test.shape == (10, 32, 32, 3)
        assert s.x_train.dtype == np.uint8 and s.y_train.dtype == np.int32
        assert s.class_names == data.CIFAR10_CLASSES
        np.testing.assert_array_equal(s.x_train[:, 5, 7, 0], s.y_train * 20)  # HWC, not CHW
        assert (s.x_train[..., 1] == 1).all() and (s.x_train[..., 2] == 2).all()
    s = data.load_cifar10(folder, limit=10)
    assert len(s.y_train) == 10 and np.bincount(s.y_train).tolist() == [1] * 10
    (folder / "batches.meta").unlink()  # Optional: names default to CIFAR-10's.
    assert data.load_cifar10(folder).class_names == data.CIFAR10_CLASSES
    (folder / "data_batch_3").unlink()
    with pytest.raises(data.DataNotFoundError, match="data_batch_3"):
        data.load_cifar10(folder)


def test_env_var_is_used(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ds", data.CIFAR10_CLASSES, n_train=2, n_test=1, size=(32, 32))
    monkeypatch.setenv(data.DATA_DIR_ENV, str(root))
    s = data.load_cifar10(cache_dir=tmp_path / "cache")
    assert s.x_train.shape == (20, 32, 32, 3) and s.class_names == data.CIFAR10_CLASSES
    assert data.DATA_DIR_ENV in s.source


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No env, empty HOME/cwd, and every download path made to fail."""
    for var in (data.DATA_DIR_ENV, "KERAS_HOME", "TFDS_DATA_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    calls = []

    def fail(name):
        def f(*args, **kwargs):
            calls.append(name)
            raise RuntimeError(f"{name} boom")

        return f

    monkeypatch.setattr(cifar10, "_network_available", lambda *a, **k: calls.append("net") or False)
    monkeypatch.setattr(cifar10, "_load_tfds", fail("tfds"))
    monkeypatch.setattr(cifar10, "_load_keras_datasets", fail("keras"))
    return calls


def test_nothing_found_lists_every_source(offline, monkeypatch):
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_cifar10()
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for expected in (
        ".keras/datasets/cifar-10-batches-py",
        "data/cifar10",
        "tensorflow_datasets",
        "keras.datasets.cifar10",
        "no network",
        "--data-dir",
        data.DATA_DIR_ENV,
        "cifar-10-batches-py",
    ):
        assert expected in msg
    assert "tfds" not in offline and "keras" not in offline

    # With a (fake) network, download failures are reported too.
    monkeypatch.setattr(cifar10, "_network_available", lambda *a, **k: True)
    with pytest.raises(data.DataNotFoundError, match=r"keras.datasets.cifar10: RuntimeError"):
        data.load_cifar10()


def test_broken_standard_place_is_reported(offline, tmp_path):
    (tmp_path / "data/cifar10").mkdir(parents=True)
    with pytest.raises(data.DataNotFoundError, match=r"data/cifar10 .*no recognised dataset"):
        data.load_cifar10(download=False)


def test_standard_place_is_found(offline, tmp_path):
    write_batches(tmp_path / "home/.keras/datasets/cifar-10-batches-py")
    s = data.load_cifar10()
    assert len(s.y_train) == 50 and ".keras" in s.source


def test_explicit_wrong_dir_fails_fast(offline, tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    with pytest.raises(data.DataNotFoundError, match=r"nope does not exist") as info:
        data.load_cifar10(missing)
    assert "train/<class>" in str(info.value) and "cifar-10-batches-py" in str(info.value)
    (tmp_path / "other").mkdir()
    (tmp_path / "other/readme.md").write_text("x")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "other"))
    with pytest.raises(data.DataNotFoundError, match=r"other \(from \$KERAS_VIT_DATA_DIR\)"):
        data.load_cifar10()
    assert offline == []  # No fallback, not even a network probe.


@pytest.mark.skipif(
    cifar10_dir() is None, reason=f"no real CIFAR-10 copy (${data.DATA_DIR_ENV} unset, no shared copy)"
)
def test_real_cifar10_limit(tmp_path):
    s = data.load_cifar10(cifar10_dir(), limit=200, cache_dir=tmp_path)
    assert s.class_names == data.CIFAR10_CLASSES
    assert s.x_train.shape == (200, 32, 32, 3) and s.x_test.shape == (200, 32, 32, 3)
    assert np.bincount(s.y_train, minlength=10).tolist() == [20] * 10
    assert np.bincount(s.y_test, minlength=10).tolist() == [20] * 10
    assert s.skipped == []


def test_package_needs_no_tensorflow():
    # The JAX training path and the deployment runtime have no TensorFlow: importing keras_vit.data (and the
    # other Keras-free modules the runtime uses) must not need it; tfds and keras.datasets are last resorts.
    code = (
        "import sys\n"
        "import keras_vit.data, keras_vit.data.loading, keras_vit.labels, keras_vit.files, keras_vit.metrics\n"
        "import keras_vit.tta, keras_vit.cli_utils\n"
        "bad = [m for m in ('tensorflow', 'keras', 'tensorflow_datasets', 'jax', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)
