"""Tests for keras_vit.data.folders: image-folder trees made with Pillow, no network."""

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_trees import CLASSES, check_labels, make_odd_tree, make_tree, record_decodes, red, save_image

from keras_vit import data


@pytest.fixture
def tree(tmp_path):
    """3 classes; odd modes, a JPEG, a truncated file and non-image files."""
    return make_odd_tree(tmp_path / "ds")


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
    decoded = record_decodes(monkeypatch)

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


def test_test_only_folder_loads_with_splits_test(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ds", n_test=3)
    shutil.rmtree(root / "train")
    with pytest.raises(data.DataNotFoundError, match=r"Missing split folder .*ds.train"):
        data.load_image_folder(root, cache_dir=False)  # Both splits by default.
    decoded = record_decodes(monkeypatch)
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
    decoded = record_decodes(monkeypatch)
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


def test_symlink_loops_are_skipped_and_named(tmp_path):
    """A symbolic-link loop (an image, a class folder, a folder inside a class) aborted the whole load with
    `[Errno 40]`; now each is skipped, and one warning names them."""
    root = make_tree(tmp_path / "ds")
    (root / "train/cat/loop.png").symlink_to("loop.png")
    (root / "train/elsewhere").symlink_to("elsewhere")
    (root / "test/dog/sub").symlink_to("sub")
    (root / "test/dog/gone.png").symlink_to("nothing_here.png")
    with pytest.warns(UserWarning) as caught:
        s = data.load_image_folder(root, cache_dir=False)
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"Skipped 4 entries under {root} that cannot be read: ")
    loop = os.strerror(errno.ELOOP)
    assert f"{root / 'test/dog/gone.png'} (broken symbolic link to nothing_here.png)" in message
    assert f"{root / 'test/dog/sub'} ({loop}); {root / 'train/cat/loop.png'} ({loop}) and 1 more." in message
    assert s.class_names == CLASSES and len(s.y_train) == 12 and len(s.y_test) == 6
    check_labels(s.x_train, s.y_train)


def test_one_class_is_refused_for_training(tmp_path):
    """One class folder trained a 1-class model that scored 100%: refused, unless asked (evaluation)."""
    root = make_tree(tmp_path / "ds", classes=("cat",))
    with pytest.raises(ValueError, match=r"ds has 1 class \(cat\); a classifier needs at least 2"):
        data.load_image_folder(root, cache_dir=False)
    with pytest.raises(ValueError, match=r"`class_names` has 1 class \(cat\)"):
        data.load_image_folder(root, class_names=["cat"], cache_dir=False)
    s = data.load_image_folder(root, cache_dir=False, splits="test", min_classes=1)
    assert s.class_names == ("cat",) and len(s.y_test) == 2


def test_a_class_with_no_readable_image_is_refused(tmp_path):
    """A class whose every image was unreadable trained on with "0 images": refused, naming the class."""
    root = make_tree(tmp_path / "ds")
    for path in (root / "train/dog").iterdir():
        path.write_bytes(b"not a png")
    with pytest.raises(
        ValueError, match=r"None of the 4 images of class 'dog' in .*train.dog could be read; "
    ):
        data.load_image_folder(root, cache_dir=False)
    # A limit that picks only unreadable images of a class which has readable ones left out is not refused.
    save_image(root / "train/dog/zzzz.png", 1)
    with pytest.warns(UserWarning, match="unreadable"):
        s = data.load_image_folder(root, cache_dir=False, limit=3, splits="train")
    assert np.bincount(s.y_train, minlength=3).tolist() == [1, 0, 1]


def test_a_shipped_val_folder_becomes_the_validation_split(tmp_path):
    root = make_tree(tmp_path / "tree")
    for label, name in enumerate(CLASSES):
        for i in range(3):
            save_image(root / "val" / name / f"{i:04d}.png", label, (8, 8), green=200 + i)
    splits = data.load_image_folder(root, cache_dir=False)
    assert len(splits.y_val) == 3 * len(CLASSES) and np.bincount(splits.y_val).tolist() == [3] * len(CLASSES)
    assert len(splits.y_train) == 4 * len(CLASSES)  # the training images stay whole
    assert splits.hold_out(0.25) is splits  # the shipped split is used as it is
    assert "validation" in splits.summary()
    assert data.load_image_folder(make_tree(tmp_path / "plain"), cache_dir=False).y_val is None


def test_every_format_predict_reads_is_a_training_image_too(tmp_path):
    """One list of image files for training, evaluation and prediction: a .webp, .bmp or .tiff in a class folder
    is one of its images."""
    from keras_vit import predict

    root = make_tree(tmp_path / "ds", n_train=1, n_test=1)
    for extension in (".webp", ".bmp", ".tiff", ".gif"):
        save_image(
            root / "train" / CLASSES[0] / f"extra{extension}", 0, fmt="WEBP" if extension == ".webp" else None
        )
    s = data.load_image_folder(root, cache_dir=False)
    assert np.bincount(s.y_train).tolist() == [5, 1, 1]
    assert len(predict.expand_paths([str(root / "train" / CLASSES[0])])) == 5


def test_predict_lists_a_folder_as_training_does(tmp_path):
    """A folder copied from a Mac holds `._x.jpg` resource forks: training skipped them, predict read them and
    failed; a broken link is kept, to be reported as unreadable rather than dropped without a word."""
    from keras_vit import predict

    folder = tmp_path / "cats"
    save_image(folder / "a.png", 0)
    (folder / "._a.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (folder / ".DS_Store").write_bytes(b"\x00")
    (folder / "notes.txt").write_text("x")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    assert predict.expand_paths([str(folder)]) == [folder / "a.png", folder / "gone.jpg"]


def test_class_folders_without_train_and_test_say_where_they_belong(tmp_path):
    """`DIR/<class>/*.jpg`, the layout most collections come in, was "CIFAR-10 not found ... no recognised
    dataset layout" or "Missing split folder DIR/train"."""
    root = tmp_path / "photos"
    for label, name in enumerate(CLASSES):
        save_image(root / name / "0.jpg", label, fmt="JPEG")
    expected = (
        rf"^{root} holds class folders \(cat, dog, frog\) but no train/ or test/ folder: .*{root / 'train'}"
    )
    with pytest.raises(ValueError, match=expected):
        data.load_image_folder(root, cache_dir=False)
    with pytest.raises(ValueError, match=expected):
        data.load_cifar10(root, cache_dir=False)
    with pytest.raises(ValueError, match=expected):
        data.load_split(root, "test", (8, 8), cache_dir=False)
    (root / "empty").mkdir()
    shutil.rmtree(root / "cat")
    for name in ("dog", "frog"):
        (root / name / "0.jpg").unlink()
    with pytest.raises(data.DataNotFoundError, match="no recognised dataset layout"):  # no images: as before
        data.load_cifar10(root, cache_dir=False)


@pytest.mark.parametrize("name", ["yak ", " yak", "yak\u2028two"])
def test_a_class_folder_a_labels_file_cannot_name_is_refused_before_decoding(tmp_path, monkeypatch, name):
    """A folder `yak ` trained to the end, then the run could not write labels.txt: model.keras stood without
    its names (predict then showed CIFAR-10's for 10 classes)."""
    root = make_tree(tmp_path / "ds", classes=("ant", name))
    decoded = record_decodes(monkeypatch)
    with pytest.raises(ValueError, match=rf"^{root / 'train'}: Class name .* Rename its folder\.$"):
        data.load_image_folder(root, cache_dir=False)
    assert decoded == []
    with pytest.raises(ValueError, match="given more than once"):
        data.load_image_folder(make_tree(tmp_path / "ok"), class_names=["cat", "cat"], cache_dir=False)


def test_photos_in_a_format_that_is_not_read_are_said(tmp_path):
    """iPhone photos (.heic) beside JPEGs were left out without a word; a folder of them alone said only that it
    held no images. A .jfif is a JPEG: read."""
    root = make_tree(tmp_path / "ds", n_train=2, n_test=1)
    for i in range(3):
        (root / "train" / "cat" / f"IMG_{i}.HEIC").write_bytes(b"ftypheic")
    save_image(root / "train" / "dog" / "extra.jfif", 1, fmt="JPEG")
    avif = ".avif" in data.IMAGE_EXTENSIONS  # where this Pillow reads AVIF: an image like the others
    if avif:
        save_image(root / "train" / "frog" / "extra.avif", 2, fmt="AVIF")
    with pytest.warns(
        UserWarning, match=r"^Left out 3 \.heic files under .*ds.train: a format keras_vit does not"
    ):
        splits = data.load_image_folder(root, cache_dir=False)
    assert np.bincount(splits.y_train).tolist() == [2, 3, 2 + avif]  # cat's PNGs, dog's and the .jfif, frog's
    for image in (root / "train" / "cat").glob("*.png"):
        image.unlink()
    with pytest.raises(
        ValueError, match=r"train.cat contains no images .*; it holds 3 \.heic files, not read: conv"
    ):
        data.load_image_folder(root, cache_dir=False)


def test_a_class_folder_in_val_that_train_lacks_is_refused(tmp_path):
    """It was dropped without a word: its images were neither trained on nor validated."""
    root = make_tree(tmp_path / "ds")
    for label, name in enumerate((*CLASSES, "green")):
        save_image(root / "val" / name / "0.png", label % len(CLASSES))
    with pytest.raises(ValueError, match=r"ds.val has class folders that .*ds.train lacks: \['green'\]"):
        data.load_image_folder(root, cache_dir=False)
    assert data.load_image_folder(root, cache_dir=False, splits="test").y_val is None  # val/ is not read
