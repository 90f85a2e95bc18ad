"""A tiny image tree and a saved vit_micro with a random head: what the evaluate and predict tests run on.

Every expected number is recomputed in the tests from `model.predict`.
"""

import os

import numpy as np
from PIL import Image

from keras_vit import build_vit, labels
from keras_vit.data import folders

CLASSES = tuple(f"shape{i}" for i in range(10))
PER_CLASS = 3


def make_tree(root, classes, per_class=PER_CLASS, seed=0):
    """root/{train,test}/<class>/*.png of 32x32 noisy images tinted by class."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                base = np.array([25 * label, 255 - 25 * label, 120], "float32")
                pixels = np.clip(base + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def save_model(folder, seed=0, label_names=None):
    model = build_vit("vit_micro")
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.path.startswith("head/"):  # zero-initialised: make predictions vary
            w.assign(rng.normal(0.0, 1.0, w.shape).astype("float32"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.keras"
    model.save(path)
    if label_names is not None:
        labels.write_labels(folder / "labels.txt", label_names)
    return model, path


def read_split(root, split, model_classes):
    """Independent loader: every image of a split and its label in the model's order."""
    images, y = [], []
    for name in sorted(os.listdir(root / split)):
        for file in sorted(os.listdir(root / split / name)):
            with Image.open(root / split / name / file) as im:
                images.append(np.asarray(im.convert("RGB")))
            y.append(model_classes.index(name))
    return np.stack(images).astype("float32"), np.array(y)


def make_setup(base):
    """A 10-class test tree and a saved vit_micro whose labels.txt lists the classes in another order than the
    folders (labels must be matched by name): the `setup` fixture of the evaluate and predict tests."""
    tree = make_tree(base / "data", CLASSES)
    model_classes = list(reversed(CLASSES))
    model, model_path = save_model(base / "run", label_names=model_classes)
    return dict(base=base, tree=tree, model=model, model_path=model_path, classes=model_classes)


def error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error message on stderr"
    return err[-1]


def record_decodes(monkeypatch):
    """The list of image files the image-folder loader decodes from now on (it still decodes them)."""
    decoded, real = [], folders.decode_image
    monkeypatch.setattr(folders, "decode_image", lambda path, size: decoded.append(path) or real(path, size))
    return decoded
