"""Tests for keras_vit.data.loading: one split of any source at a model's size and class order."""

import numpy as np
import pytest
from data_trees import make_tree, save_image, write_batches

from keras_vit import data


def test_load_split_of_an_image_folder_at_the_model_size(tmp_path):
    root = make_tree(tmp_path / "ds", classes=("cat", "dog"), n_train=3, n_test=2)
    x, y, classes, source, skipped = data.load_split(root, "test", (16, 12), cache_dir=False)
    assert x.shape == (4, 16, 12, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    assert classes == ("cat", "dog") and "image folder" in source and skipped == 0
    x, y, *_ = data.load_split(root, "train", (8, 8), limit=2, cache_dir=False)
    assert len(y) == 2 and sorted(y.tolist()) == [0, 1]


def test_load_split_reads_the_classes_of_its_split_even_where_train_has_more(tmp_path):
    """Evaluation reads the --split folder alone: a test/ without one of train/'s classes was refused ("Missing
    class folder"), while the same test/ without train/ beside it was scored."""
    root = make_tree(tmp_path / "ds", classes=("cat", "dog", "frog"), n_train=1, n_test=2)
    for image in (root / "test" / "dog").iterdir():
        image.unlink()
    (root / "test" / "dog").rmdir()
    x, y, classes, *_ = data.load_split(root, "test", (8, 8), cache_dir=False)
    assert classes == ("cat", "frog") and np.bincount(y).tolist() == [2, 2]
    assert sorted(data.match_labels(y, classes, ("cat", "dog", "frog")).tolist()) == [0, 0, 2, 2]
    # Scoring the training split reads neither val/ nor its class folders (a class there train/ lacks was refused).
    save_image(root / "val" / "newt" / "0.png", 0)
    x, y, classes, *_ = data.load_split(root, "train", (8, 8), cache_dir=False)
    assert classes == ("cat", "dog", "frog") and len(y) == 3
    with pytest.raises(
        ValueError, match=r"train holds class folders \(cat, dog, frog\) but no train/ or test/"
    ):
        data.load_split(root / "train", "test", (8, 8), stream=True)  # said as such when streamed too


def test_match_labels_tells_apart_names_that_differ_in_unicode_form_alone():
    """Two classes whose names differ in form alone (a tree merged from a macOS copy) were merged into one."""
    decomposed, composed = "cafe\u0301", "caf\u00e9"
    assert data.match_labels(
        np.array([0, 1, 2]), (composed, decomposed, "tea"), (composed, decomposed, "tea")
    ).tolist() == [0, 1, 2]


def test_load_split_of_cifar10_batches_resized(tmp_path):
    folder = write_batches(tmp_path / "cifar-10-batches-py")
    x, y, classes, source, _ = data.load_split(folder, "test", (32, 32), cache_dir=False)
    assert x.shape == (10, 32, 32, 3) and classes == data.CIFAR10_CLASSES and "cifar-10-batches-py" in source
    big, y_big, *_ = data.load_split(folder, "test", (48, 48), cache_dir=False)
    assert big.shape == (10, 48, 48, 3)
    np.testing.assert_array_equal(y_big, y)
    np.testing.assert_array_equal(big, data.images.resize_images(x, (48, 48)))


def test_match_labels_by_name():
    labels = np.array([0, 1, 2, 1])
    mapped = data.match_labels(labels, ("a", "b", "c"), ("c", "b", "a", "d"))
    assert mapped.dtype == np.int32 and mapped.tolist() == [2, 1, 0, 1]
    with pytest.raises(ValueError, match="not among the model's classes"):
        data.match_labels(labels, ("a", "b", "z"), ("a", "b", "c"))


def test_match_labels_takes_a_decomposed_name_for_the_composed_one():
    """macOS and zip files store `café` as `cafe` + a combining accent: the same name on screen was refused."""
    decomposed, composed = "cafe\u0301", "caf\u00e9"
    mapped = data.match_labels(np.array([0, 1]), (decomposed, "tea"), ("tea", composed))
    assert mapped.tolist() == [1, 0]


def test_load_split_of_one_class_with_a_symlink_loop(tmp_path):
    """Evaluation may score a model on one class's images; a symbolic-link loop beside the class is skipped."""
    root = make_tree(tmp_path / "ds", classes=("cat",), n_train=1, n_test=2)
    (root / "test" / "loop").symlink_to("loop")
    with pytest.warns(UserWarning, match=r"Skipped 1 entry .*loop"):
        x, y, classes, source, skipped = data.load_split(root, "test", (8, 8), cache_dir=False)
    assert x.shape == (2, 8, 8, 3) and classes == ("cat",) and y.tolist() == [0, 0] and skipped == 0


def test_the_data_folder_variable_is_read_by_the_same_rules_as_a_given_folder(tmp_path, monkeypatch):
    """$KERAS_VIT_DATA_DIR holding an image-folder tree of other classes is read as one, at the model's size,
    as the same folder given as data_dir is (not as CIFAR-10 at 32x32)."""
    root = make_tree(tmp_path / "flowers", classes=("daisy", "rose"), n_train=2, n_test=2)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(root))
    assert data.given_data_dir(None) == str(root) and data.given_data_dir("x") == "x"
    x, y, classes, source, _ = data.load_split(None, "test", (16, 16), cache_dir=False)
    assert x.shape == (4, 16, 16, 3) and classes == ("daisy", "rose") and "image folder" in source


def test_which_loader_reads_a_folder(tmp_path):
    assert data.holds_cifar10(write_batches(tmp_path / "cifar-10-batches-py"))  # not an image-folder tree
    cifar = make_tree(tmp_path / "cifar", classes=data.CIFAR10_CLASSES, n_train=1, n_test=1)
    (cifar / "train" / ".ipynb_checkpoints").mkdir()  # a notebook's dot-folder is not a class
    assert data.holds_cifar10(cifar) and data.image_folder_classes(cifar) == sorted(data.CIFAR10_CLASSES)
    other = make_tree(tmp_path / "other", classes=("cat", "dog"), n_train=1, n_test=1)
    assert not data.holds_cifar10(other) and data.image_folder_classes(other) == ["cat", "dog"]
