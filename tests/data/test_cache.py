"""Tests for keras_vit.data.cache: the decoded-image cache of image folders."""

import os

import numpy as np
import pytest
from data_trees import forbid_decodes, make_odd_tree, make_tree, record_decodes, save_image

from keras_vit import data
from keras_vit.data import cache as data_cache


@pytest.fixture
def tree(tmp_path):
    """3 classes; odd modes, a JPEG, a truncated file and non-image files."""
    return make_odd_tree(tmp_path / "ds")


def test_cache_hit_returns_identical_arrays(tree, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning):
        first = data.load_image_folder(tree, cache_dir=cache, limit=6)
    files = sorted(f.name for f in cache.glob("*.npz"))  # One file per split.
    assert [f.split("-")[1] for f in files] == ["test", "train"]
    assert not list(cache.glob("*.tmp"))

    forbid_decodes(monkeypatch)
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
    decoded = record_decodes(monkeypatch)
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


def test_split_caches_are_shared(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ds")
    cache = tmp_path / "cache"
    full = data.load_image_folder(root, cache_dir=cache)

    forbid_decodes(monkeypatch)
    test = data.load_image_folder(root, cache_dir=cache, splits="test")  # From the full load's cache.
    np.testing.assert_array_equal(test.x_test, full.x_test)
    np.testing.assert_array_equal(test.y_test, full.y_test)
    assert test.y_test.dtype == np.int32 and test.x_train.shape == (0, 8, 8, 3)
    assert "cached" in test.source and "-test-" in test.source

    # A test-only load first, then a full load decodes only train/.
    cache2 = tmp_path / "cache2"
    decoded = record_decodes(monkeypatch)
    data.load_image_folder(root, cache_dir=cache2, splits="test")
    decoded.clear()
    again = data.load_image_folder(root, cache_dir=cache2)
    assert len(set(decoded)) == 12 and all(f"{os.sep}train{os.sep}" in p for p in decoded)
    np.testing.assert_array_equal(again.x_test, full.x_test)
    np.testing.assert_array_equal(again.x_train, full.x_train)


def test_cache_write_is_atomic_and_a_failure_only_warns(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ds")
    cache = tmp_path / "cache"
    data.load_image_folder(root, cache_dir=cache)
    assert sorted(p.name.split("-")[1] for p in cache.iterdir()) == [
        "test",
        "train",
    ]  # no temporary files left
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.warns(UserWarning, match="Could not write the data cache"):
        s = data.load_image_folder(root, cache_dir=blocker / "cache")  # a read-only place: still loads
    assert len(s.y_train) == 12


def test_cache_location_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "env"))
    assert data_cache.default_cache_dir() == tmp_path / "env"
    monkeypatch.delenv(data.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_cache.default_cache_dir() == tmp_path / "xdg" / "keras_vit"
    root = make_tree(tmp_path / "ds")
    paths = sorted(str(p) for p in (root / "test").rglob("*.png"))
    key = dict(root=root, split="test", paths=paths, size=(8, 8), names=("a",), limit=None, seed=0)
    path = data_cache.cache_path(tmp_path / "c", **key)
    assert path.parent == tmp_path / "c" and path.name.startswith("ds-test-") and path.suffix == ".npz"
    assert data_cache.cache_path(False, **key) is None
    for change in (dict(size=(4, 4)), dict(limit=3), dict(seed=1), dict(names=("b",)), dict(paths=paths[1:])):
        assert data_cache.cache_path(tmp_path / "c", **{**key, **change}) != path, change


def test_a_file_replaced_with_its_old_times_and_size_is_decoded_again(tmp_path):
    """`cp -p`, rsync and unpacked archives keep a file's modification time: the key still sees the new file."""
    root = make_tree(tmp_path / "ds")
    cache = tmp_path / "cache"
    first = data.load_image_folder(root, cache_dir=cache, splits="test")
    victim, donor = root / "test/cat/0000.png", root / "test/dog/0000.png"
    before = victim.stat()
    assert before.st_size == donor.stat().st_size  # same-size images: only the contents change
    victim.write_bytes(donor.read_bytes())
    os.utime(
        victim, ns=(before.st_atime_ns, before.st_mtime_ns)
    )  # the old modification time, as cp -p sets it
    again = data.load_image_folder(root, cache_dir=cache, splits="test")
    assert "cached" not in again.source

    # The dog image now stands twice in the test split: one distinct image fewer than before.
    def distinct_images(split):
        return len(np.unique(split.x_test.reshape(len(split.x_test), -1), axis=0))

    assert distinct_images(first) == 6 and distinct_images(again) == 5
