"""Tiny datasets made with Pillow for the tests of keras_vit.data: image trees and fake CIFAR-10 batches."""

import pickle

import numpy as np
from PIL import Image

from keras_vit.data import CIFAR10_CLASSES, folders

CLASSES = ("cat", "dog", "frog")
REAL_DECODE = folders.decode_image


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


def make_odd_tree(root):
    """3 classes; odd modes, a JPEG, a truncated file and non-image files."""
    root = make_tree(root)
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


def record_decodes(monkeypatch):
    """The list of files the image-folder loader decodes from now on (it still decodes them)."""
    decoded = []
    monkeypatch.setattr(folders, "decode_image", lambda p, s: decoded.append(p) or REAL_DECODE(p, s))
    return decoded


def forbid_decodes(monkeypatch):
    """Makes any image decode by the image-folder loader fail the test (everything must come from the cache)."""

    def no_decode(*args):
        raise AssertionError("cache miss: decoded an image")

    monkeypatch.setattr(folders, "decode_image", no_decode)


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
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, f)
    return folder
