"""Tests for keras_vit.data: tiny trees made with Pillow, no network."""

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cifar10_dir
from PIL import Image

from keras_vit import data

CLASSES = ("cat", "dog", "frog")
REAL_READ = data._read_rgb


def red(label):
    """Red-channel value that encodes the label of a generated image."""
    return 50 * label + 10


def save_image(path, label, size=(8, 8), mode="RGB", fmt=None, green=7):
    h, w = size
    value = red(label)
    if mode == "L":
        im = Image.new("L", (w, h), value)
    elif mode == "RGBA":
        im = Image.new("RGBA", (w, h), (value, 7, 9, 128))
    elif mode == "P":
        im = Image.new("P", (w, h), 0)
        im.putpalette([value, 7, 9] + [0, 0, 0] * 255)
    else:
        im = Image.new("RGB", (w, h), (value, green, 9))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt)


def make_tree(root, classes=CLASSES, n_train=4, n_test=2, size=(8, 8)):
    for split, n in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(classes):
            for i in range(n):
                save_image(root / split / name / f"{i:04d}.png", label, size, green=i)
    return root


@pytest.fixture
def tree(tmp_path):
    """3 classes; odd modes, a JPEG, a truncated file and non-image files."""
    root = make_tree(tmp_path / "ds")
    save_image(root / "train/cat/gray.png", 0, mode="L")
    save_image(root / "train/cat/alpha.png", 0, mode="RGBA")
    save_image(root / "train/dog/palette.png", 1, mode="P")
    save_image(root / "train/frog/photo.JPG", 2, fmt="JPEG")
    good = (root / "train/dog/0000.png").read_bytes()
    (root / "train/dog/broken.png").write_bytes(good[: len(good) // 2])
    (root / "train/frog/notes.txt").write_text("not an image")
    (root / "train/frog/.DS_Store").write_bytes(b"\0\1\2")
    (root / "train/stray.txt").write_text("not a class")
    return root


def check_labels(x, y):
    # JPEG is lossy, hence the tolerance.
    np.testing.assert_allclose(x[:, 0, 0, 0], red(y), atol=8)


def test_image_folder_shapes_dtypes_labels(tree):
    with pytest.warns(UserWarning, match=r"Skipped 1 unreadable.*broken\.png"):
        s = data.load_image_folder(tree, cache_dir=False)
    assert s.class_names == CLASSES
    assert s.x_train.shape == (3 * 4 + 4, 8, 8, 3) and s.x_train.dtype == np.uint8
    assert s.y_train.shape == (16,) and s.y_train.dtype == np.int32
    assert s.x_test.shape == (6, 8, 8, 3) and s.y_test.dtype == np.int32
    assert np.bincount(s.y_train).tolist() == [6, 5, 5]
    check_labels(s.x_train, s.y_train)
    check_labels(s.x_test, s.y_test)
    # Only the truncated PNG is skipped; .txt/.DS_Store are ignored silently.
    assert [Path(p).name for p, _ in s.skipped] == ["broken.png"]
    assert "Skipped" not in data.describe(s) and "1 unreadable" in data.describe(s)
    assert "16 train" in repr(s) and "3 classes" in repr(s)


def test_gray_rgba_palette_become_rgb(tree):
    with pytest.warns(UserWarning):
        s = data.load_image_folder(tree, cache_dir=False)
    pixels = {tuple(p) for p in s.x_train[:, 0, 0].tolist()}
    assert (10, 10, 10) in pixels  # grayscale cat
    assert (10, 7, 9) in pixels  # RGBA cat, alpha dropped
    assert (60, 7, 9) in pixels  # palette dog


def test_arrays_are_shuffled_deterministically(tmp_path):
    root = make_tree(tmp_path / "ds", n_train=10)
    a = data.load_image_folder(root, cache_dir=False, seed=0)
    b = data.load_image_folder(root, cache_dir=False, seed=0)
    c = data.load_image_folder(root, cache_dir=False, seed=1)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.y_train, np.sort(a.y_train))
    assert not np.array_equal(a.y_train, c.y_train)


def test_explicit_class_names_order(tree):
    s = data.load_image_folder(tree, class_names=["frog", "cat"], cache_dir=False)
    assert s.class_names == ("frog", "cat")
    assert np.bincount(s.y_train).tolist() == [5, 6]
    # frog (label 0) images were generated with label 2's colour.
    expected = np.where(s.y_train == 0, red(2), red(0))
    np.testing.assert_allclose(s.x_train[:, 0, 0, 0], expected, atol=8)


def test_cifar10_folder_names_use_official_order(tmp_path):
    root = make_tree(tmp_path / "c", classes=data.CIFAR10_CLASSES[::-1], n_train=1, n_test=1)
    s = data.load_image_folder(root, cache_dir=False)
    assert s.class_names == data.CIFAR10_CLASSES
    assert len(data.CIFAR10_CLASSES) == 10 and data.CIFAR10_CLASSES[0] == "airplane"


def test_empty_class_folder_is_an_error(tree):
    save_image(tree / "test/empty/0000.png", 0)
    (tree / "train/empty").mkdir()
    (tree / "train/empty/readme.txt").write_text("only non-images here")
    with pytest.raises(ValueError, match=r"train.empty contains no images"):
        data.load_image_folder(tree, cache_dir=False)


def test_missing_split_is_an_error(tmp_path):
    root = make_tree(tmp_path / "ds")
    shutil.rmtree(root / "test")
    with pytest.raises(data.DataNotFoundError, match=r"Missing split folder .*ds.test"):
        data.load_image_folder(root, cache_dir=False)


def test_missing_class_in_test_is_an_error(tmp_path):
    root = make_tree(tmp_path / "ds")
    shutil.rmtree(root / "test/dog")
    with pytest.raises(data.DataNotFoundError, match=r"Missing class folder .*test.dog"):
        data.load_image_folder(root, cache_dir=False)


def test_mixed_sizes_need_image_size(tmp_path):
    root = make_tree(tmp_path / "ds")
    save_image(root / "train/dog/big.png", 1, size=(12, 10))
    with pytest.raises(ValueError, match=r"differ in size.*image_size"):
        data.load_image_folder(root, cache_dir=False)
    s = data.load_image_folder(root, image_size=16, cache_dir=False)
    assert s.x_train.shape == (13, 16, 16, 3) and s.x_test.shape == (6, 16, 16, 3)
    check_labels(s.x_train, s.y_train)
    s = data.load_image_folder(root, image_size=(6, 10), cache_dir=False)
    assert s.x_train.shape[1:] == (6, 10, 3)


def test_limit_is_stratified_deterministic_and_cheap(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ds", n_train=10, n_test=4)
    decoded = []
    monkeypatch.setattr(data, "_read_rgb", lambda p, s: decoded.append(p) or REAL_READ(p, s))

    def load(**kwargs):
        return data.load_image_folder(root, image_size=8, cache_dir=False, **kwargs)

    def picked(s):  # (label, image index) pairs, encoded in R and G.
        return sorted(map(tuple, s.x_train[:, 0, 0, :2].tolist()))

    a = load(limit=6, seed=0)
    assert len(decoded) == 12  # Only the selected files are decoded.
    assert np.bincount(a.y_train).tolist() == [2, 2, 2]
    assert np.bincount(a.y_test).tolist() == [2, 2, 2]
    check_labels(a.x_train, a.y_train)
    b = load(limit=6, seed=0)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert picked(a) != picked(load(limit=6, seed=1))
    assert len(load(limit=30, seed=1).y_train) == 30  # limit >= size: everything.
    assert sorted(np.bincount(load(limit=7).y_train).tolist()) == [2, 2, 3]
    with pytest.raises(ValueError, match="limit"):
        data.load_image_folder(root, limit=0, cache_dir=False)


def test_stratified_indices():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 2)
    idx = data.stratified_indices(labels, 9, seed=3)
    assert len(set(idx.tolist())) == 9
    assert np.bincount(labels[idx]).tolist() in ([4, 3, 2], [3, 4, 2])  # class 2 short
    np.testing.assert_array_equal(idx, data.stratified_indices(labels, 9, seed=3))
    assert sorted(data.stratified_indices(labels, None, 0).tolist()) == list(range(22))
    assert sorted(data.stratified_indices(labels, 100, 0).tolist()) == list(range(22))


def test_cache_hit_returns_identical_arrays(tree, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning):
        first = data.load_image_folder(tree, cache_dir=cache, limit=6)
    files = sorted(f.name for f in cache.glob("*.npz"))  # One file per split.
    assert [f.split("-")[1] for f in files] == ["test", "train"]
    assert not list(cache.glob("*.tmp"))

    def no_decode(*args):
        raise AssertionError("cache miss: decoded an image")

    monkeypatch.setattr(data, "_read_rgb", no_decode)
    with pytest.warns(UserWarning, match="Skipped"):
        second = data.load_image_folder(tree, cache_dir=cache, limit=6)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
        assert getattr(first, field).dtype == getattr(second, field).dtype
    assert second.class_names == first.class_names
    assert second.skipped == first.skipped
    assert "cached" in second.source

    # The env var sets the default cache dir; a new file invalidates the
    # cache of its split only.
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(cache))
    decoded = []
    monkeypatch.setattr(data, "_read_rgb", lambda p, s: decoded.append(p) or REAL_READ(p, s))
    save_image(tree / "train/cat/new.png", 0)
    with pytest.warns(UserWarning):
        third = data.load_image_folder(tree, limit=6)
    assert len(set(decoded)) == 6 and all(f"{os.sep}train{os.sep}" in p for p in decoded)
    assert "test-" in third.source and "train-" not in third.source
    np.testing.assert_array_equal(third.x_test, first.x_test)
    assert len(list(cache.glob("*.npz"))) == 3


def test_corrupt_cache_is_decoded_again(tmp_path):
    root = make_tree(tmp_path / "ds")
    cache = tmp_path / "cache"
    first = data.load_image_folder(root, cache_dir=cache, splits="test")
    (path,) = cache.glob("*.npz")
    path.write_bytes(b"not an npz")
    again = data.load_image_folder(root, cache_dir=cache, splits="test")
    assert "cached" not in again.source
    np.testing.assert_array_equal(again.x_test, first.x_test)
    assert "cached" in data.load_image_folder(root, cache_dir=cache, splits="test").source


# --------------------------------------------------------------------------
# Loading only some splits.


def test_test_only_folder_loads_with_splits_test(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ds", n_test=3)
    shutil.rmtree(root / "train")
    with pytest.raises(data.DataNotFoundError, match=r"Missing split folder .*ds.train"):
        data.load_image_folder(root, cache_dir=False)  # Both splits by default.
    decoded = []
    monkeypatch.setattr(data, "_read_rgb", lambda p, s: decoded.append(p) or REAL_READ(p, s))
    for splits in ("test", ["test"], ("test",)):
        s = data.load_image_folder(root, cache_dir=False, splits=splits)
        assert s.class_names == CLASSES  # From test/ since there is no train/.
        assert s.x_test.shape == (9, 8, 8, 3) and s.y_test.dtype == np.int32
        check_labels(s.x_test, s.y_test)
        # The train split is empty but keeps the image shape.
        assert s.x_train.shape == (0, 8, 8, 3) and s.x_train.dtype == np.uint8
        assert s.y_train.shape == (0,) and s.y_train.dtype == np.int32
        assert s.image_shape == (8, 8, 3)
        assert s.summary().startswith("0 train + 9 test (3/class) images of 8x8x3")
    assert len(set(decoded)) == 9 and all(f"{os.sep}test{os.sep}" in p for p in decoded)


def test_only_requested_split_is_decoded(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ds", n_train=5, n_test=2)
    decoded = []
    monkeypatch.setattr(data, "_read_rgb", lambda p, s: decoded.append(p) or REAL_READ(p, s))
    test = data.load_image_folder(root, cache_dir=False, splits="test")
    assert len(set(decoded)) == 6 and all(f"{os.sep}test{os.sep}" in p for p in decoded)
    decoded.clear()
    train = data.load_image_folder(root, cache_dir=False, splits="train")
    assert len(set(decoded)) == 15 and all(f"{os.sep}train{os.sep}" in p for p in decoded)
    assert len(train.y_train) == 15 and train.x_test.shape == (0, 8, 8, 3)

    # Same arrays and labels as a full load (same seed/limit).
    both = data.load_image_folder(root, cache_dir=False)
    for field in ("x_test", "y_test"):
        np.testing.assert_array_equal(getattr(test, field), getattr(both, field))
    for field in ("x_train", "y_train"):
        np.testing.assert_array_equal(getattr(train, field), getattr(both, field))
    limited = data.load_image_folder(root, cache_dir=False, splits="test", limit=3)
    np.testing.assert_array_equal(
        limited.y_test, data.load_image_folder(root, cache_dir=False, limit=3).y_test
    )


def test_test_only_load_uses_train_class_order(tmp_path):
    # Labels of a test-only load follow train/'s class folders, as in a full
    # load, not test/'s own (here test/ lacks "dog" at first).
    root = make_tree(tmp_path / "ds", classes=("cat", "frog"), n_train=1, n_test=2)
    save_image(root / "train/dog/0000.png", 2)
    with pytest.raises(data.DataNotFoundError, match=r"Missing class folder .*test.dog"):
        data.load_image_folder(root, cache_dir=False, splits="test")
    save_image(root / "test/dog/0000.png", 2)
    s = data.load_image_folder(root, cache_dir=False, splits="test")
    assert s.class_names == ("cat", "dog", "frog")
    assert np.bincount(s.y_test).tolist() == [2, 1, 2]
    # cat, dog, frog images were drawn with the colours of labels 0, 2, 1.
    expected = np.array([red(0), red(2), red(1)])[s.y_test]
    np.testing.assert_array_equal(s.x_test[:, 0, 0, 0], expected)
    full = data.load_image_folder(root, cache_dir=False)
    np.testing.assert_array_equal(full.y_test, s.y_test)


def test_missing_requested_split_is_an_error_unrequested_is_fine(tmp_path):
    root = make_tree(tmp_path / "ds")
    shutil.rmtree(root / "test")
    with pytest.raises(data.DataNotFoundError, match=r"Missing split folder .*ds.test") as info:
        data.load_image_folder(root, cache_dir=False, splits="test")
    assert str(root / "test") in str(info.value)
    s = data.load_image_folder(root, cache_dir=False, splits="train")
    assert len(s.y_train) == 12 and len(s.y_test) == 0

    # An unrequested split is not scanned: an empty class folder in train/
    # breaks a full load but not a test-only one.
    root = make_tree(tmp_path / "ds2")
    for f in (root / "train/dog").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=r"train.dog contains no images"):
        data.load_image_folder(root, cache_dir=False)
    assert len(data.load_image_folder(root, cache_dir=False, splits="test").y_test) == 6
    # An empty train/ (no class folders): the classes come from test/.
    shutil.rmtree(root / "train")
    (root / "train").mkdir()
    assert data.load_image_folder(root, cache_dir=False, splits="test").class_names == CLASSES
    with pytest.raises(data.DataNotFoundError, match=r"ds2.train has no class sub-folders"):
        data.load_image_folder(root, cache_dir=False)


def test_bad_splits_argument(tmp_path):
    root = make_tree(tmp_path / "ds")
    for bad in ("val", (), ["train", "validation"]):
        with pytest.raises(ValueError, match="splits"):
            data.load_image_folder(root, cache_dir=False, splits=bad)
        with pytest.raises(ValueError, match="splits"):
            data.load_cifar10(root, cache_dir=False, splits=bad)


def test_split_caches_are_shared(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ds")
    cache = tmp_path / "cache"
    full = data.load_image_folder(root, cache_dir=cache)

    def no_decode(*args):
        raise AssertionError("cache miss: decoded an image")

    monkeypatch.setattr(data, "_read_rgb", no_decode)
    test = data.load_image_folder(root, cache_dir=cache, splits="test")  # From the full load's cache.
    np.testing.assert_array_equal(test.x_test, full.x_test)
    np.testing.assert_array_equal(test.y_test, full.y_test)
    assert test.y_test.dtype == np.int32 and test.x_train.shape == (0, 8, 8, 3)
    assert "cached" in test.source and "-test-" in test.source

    # A test-only load first, then a full load decodes only train/.
    cache2 = tmp_path / "cache2"
    decoded = []
    monkeypatch.setattr(data, "_read_rgb", lambda p, s: decoded.append(p) or REAL_READ(p, s))
    data.load_image_folder(root, cache_dir=cache2, splits="test")
    decoded.clear()
    again = data.load_image_folder(root, cache_dir=cache2)
    assert len(set(decoded)) == 12 and all(f"{os.sep}train{os.sep}" in p for p in decoded)
    np.testing.assert_array_equal(again.x_test, full.x_test)
    np.testing.assert_array_equal(again.x_train, full.x_train)


def test_load_cifar10_test_only(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    # An image-folder tree with only test/ (also nested under cifar10-jpeg/).
    root = make_tree(tmp_path / "c" / "cifar10-jpeg", data.CIFAR10_CLASSES, n_train=1, n_test=2,
                     size=(32, 32))
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


def test_finish_empties_unrequested_split():
    x = np.zeros((4, 32, 32, 3), np.uint8)
    y = np.arange(4) % 2
    s = data._finish(x, y, x[:2], y[:2], ("a", "b"), "arrays", None, 0, ("test",))
    assert s.x_train.shape == (0, 32, 32, 3) and s.y_train.shape == (0,)
    assert s.x_test.shape == (2, 32, 32, 3) and s.y_test.dtype == np.int32



def write_batches(folder, n=10):
    """A tiny fake `cifar-10-batches-py` in the official pickle format."""
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        labels = [(k + i) % 10 for i in range(n)]
        x = np.zeros((n, 3, 32, 32), np.uint8)
        x[:, 0] = np.array(labels)[:, None, None] * 20  # R encodes the label
        x[:, 1], x[:, 2] = 1, 2
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": x.reshape(n, 3072)}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in data.CIFAR10_CLASSES]}, f)
    return folder


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

    monkeypatch.setattr(data, "_network_available", lambda *a, **k: calls.append("net") or False)
    monkeypatch.setattr(data, "_load_tfds", fail("tfds"))
    monkeypatch.setattr(data, "_load_keras_datasets", fail("keras"))
    return calls


def test_nothing_found_lists_every_source(offline, monkeypatch):
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_cifar10()
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for expected in (".keras/datasets/cifar-10-batches-py", "data/cifar10", "tensorflow_datasets",
                     "keras.datasets.cifar10", "no network", "--data-dir", data.DATA_DIR_ENV,
                     "cifar-10-batches-py"):
        assert expected in msg
    assert "tfds" not in offline and "keras" not in offline

    # With a (fake) network, download failures are reported too.
    monkeypatch.setattr(data, "_network_available", lambda *a, **k: True)
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


@pytest.mark.skipif(cifar10_dir() is None,
                    reason=f"no real CIFAR-10 copy (${data.DATA_DIR_ENV} unset, no shared copy)")
def test_real_cifar10_limit(tmp_path):
    s = data.load_cifar10(cifar10_dir(), limit=200, cache_dir=tmp_path)
    assert s.class_names == data.CIFAR10_CLASSES
    assert s.x_train.shape == (200, 32, 32, 3) and s.x_test.shape == (200, 32, 32, 3)
    assert np.bincount(s.y_train, minlength=10).tolist() == [20] * 10
    assert np.bincount(s.y_test, minlength=10).tolist() == [20] * 10
    assert s.skipped == []


def test_module_needs_no_tensorflow():
    # The JAX training path has no TensorFlow: importing data.py must not need it.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('kv_data', {data.__file__!r})\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules['kv_data'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "bad = [m for m in ('tensorflow', 'keras', 'tensorflow_datasets') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
