"""A tiny image tree and a saved vit_micro with a random head: what the evaluate and predict tests run on.

Every expected number is recomputed in the tests from `model.predict`.
"""

import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

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


def save_lambda_model(path, function=None):
    """A small Keras classifier (32x32x3 -> 10 logits) with a `Lambda` layer, saved at `path`: what every loader
    and command line must refuse (issue 45). `function` defaults to a Python lambda (pickled bytecode)."""
    import keras

    inputs = keras.Input((32, 32, 3))
    scaled = keras.layers.Lambda(function or (lambda t: t / 255.0), name="scale")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(scaled)
    keras.Model(inputs, keras.layers.Dense(10)(pooled)).save(path)
    return path


def save_cnn(path, input_shape=(28, 28, 1), num_classes=10):
    """A tiny CNN of another input shape (an MNIST-like 28x28x1 model by default), saved at `path`."""
    import keras

    inputs = keras.Input(input_shape)
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="conv")(inputs))
    keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(features)).save(path)
    return path


def rewrite_config(source, path, change):
    """Copies the `.keras` file `source` to `path`, its config.json passed through `change(config)` first."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(path, "w") as out:
        for item in archive.infolist():
            content = archive.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(content)
                change(config)
                content = json.dumps(config).encode()
            out.writestr(item, content)
    return path


def save_os_system_model(path):
    """A `.keras` file whose config points a Dense layer's activation at `os.system` (a hostile edit)."""
    cnn = save_cnn(Path(path).with_name(f".{Path(path).stem}-cnn.keras"), (32, 32, 3))

    def point_at_os_system(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Dense":
                layer["config"]["activation"] = {
                    "module": "os",
                    "class_name": "function",
                    "config": "system",
                    "registered_name": "function",
                }

    rewrite_config(cnn, path, point_at_os_system)
    cnn.unlink()
    return path


def save_non_finite_model(folder, label_names=None):
    """A vit_micro whose class token holds a NaN and one head weight an infinity (a diverged run), with
    labels.txt; returns the model file."""
    model, path = save_model(folder, label_names=label_names)
    token = next(w for w in model.weights if w.path.endswith("class_token"))
    head = next(w for w in model.weights if w.path.startswith("head/") and w.path.endswith("kernel"))
    for variable, bad in ((token, np.nan), (head, np.inf)):
        value = np.array(variable.numpy())
        value.flat[0] = bad
        variable.assign(value)
    model.save(path)
    return path


def bad_model_files(folder, good_model):
    """Model files every command line must refuse with one line: `{name: (path, words the line must hold)}`.

    `good_model` is a working `.keras` file (the truncated and bit-flipped copies come from it).
    """
    folder.mkdir(parents=True, exist_ok=True)
    content = Path(good_model).read_bytes()
    truncated = folder / "truncated.keras"
    truncated.write_bytes(content[: len(content) // 2])
    garbage = folder / "garbage.keras"
    garbage.write_bytes(b"GIF89a not a model at all" * 40)
    no_config = folder / "no_config.keras"
    with zipfile.ZipFile(good_model) as archive, zipfile.ZipFile(no_config, "w") as out:
        for item in archive.infolist():
            if item.filename != "config.json":
                out.writestr(item, archive.read(item.filename))
    return {
        "truncated": (truncated, f"{truncated} is not a valid .keras file: not a zip archive"),
        "garbage": (garbage, f"{garbage} is not a valid .keras file: not a zip archive"),
        "no config": (no_config, f"{no_config} is not a valid .keras file: the archive has no config.json"),
        "lambda": (
            save_lambda_model(folder / "lambda.keras"),
            "lambda.keras was refused: layer 'scale' is a Lambda layer, which runs arbitrary Python code",
        ),
        "os.system": (
            save_os_system_model(folder / "os_system.keras"),
            "os_system.keras was refused: layer 'logits' names os.system, code from outside Keras and keras_vit",
        ),
        "28x28x1": (
            save_cnn(folder / "mnist_cnn.keras"),
            "mnist_cnn.keras takes 28x28x1 images (1 channel(s)); the images here are 28x28x3",
        ),
        "NaN": (
            save_non_finite_model(folder / "diverged", label_names=list(reversed(CLASSES))),
            "model.keras has weights that are not finite (NaN or infinity) in 2 of",
        ),
    }


def decompression_bomb(path, side=30000):
    """A PNG whose header claims side x side pixels (past Pillow's decompression-bomb limit); nothing else."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path
