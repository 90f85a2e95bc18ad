"""export.runtime reads images and labels as keras_vit does: the same photo reaches Keras and an exported file as
the same pixels, and the runtime needs neither TensorFlow nor Keras for it."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export import runtime
from keras_vit import data, predict

REPO = Path(__file__).resolve().parents[2]


def photo(width, height, seed=0):
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    waves = [np.sin(x / rng.uniform(5, 40) + y / rng.uniform(5, 40) + c) for c in range(3)]
    return ((np.stack(waves, -1) + 1) * 127.5).astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A 16-bit PNG, a large JPEG, a palette GIF and a grayscale PNG, none at the model's size."""
    folder = tmp_path_factory.mktemp("photos")
    values = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    Image.fromarray(values).save(folder / "depth16.png")
    Image.fromarray(photo(1024, 768)).save(folder / "large.jpg", quality=92)
    Image.fromarray(photo(50, 40, 1)).convert("P", palette=Image.Palette.ADAPTIVE).save(
        folder / "palette.gif"
    )
    Image.fromarray(photo(40, 30, 2)).convert("L").save(folder / "gray.png")
    return [folder / name for name in ("depth16.png", "large.jpg", "palette.gif", "gray.png")]


@pytest.mark.parametrize("size", [(32, 32), (48, 40)])
def test_predict_and_runtime_decode_the_same_pixels(images, size):
    keras_side, readable, errors = predict.read_images(images, size)
    deployed = runtime.load_images(images, size)
    assert errors == [] and readable == images
    assert keras_side.dtype == deployed.dtype == np.uint8 and keras_side.shape == (4, *size, 3)
    np.testing.assert_array_equal(keras_side, deployed)
    for i, path in enumerate(images):
        np.testing.assert_array_equal(runtime.load_image(path, size), data.decode_image(path, size))
        assert keras_side[i].std() > 0, path  # a real picture, not a blank
    # 16 bits: the high byte, not values clipped to white.
    assert keras_side[0].max() < 255 and keras_side[0].mean() > 60


def test_training_loader_decodes_the_same_pixels(images, tmp_path):
    """An image-folder tree (PNG and JPEG) gives the training data loader the pixels the runtime gets."""
    for label, path in enumerate(images[:2] + images[3:]):
        folder = tmp_path / "ds" / "test" / f"class{label}"
        folder.mkdir(parents=True)
        (folder / path.name).write_bytes(path.read_bytes())
    loaded = data.load_image_folder(tmp_path / "ds", image_size=(32, 32), splits="test", cache_dir=False)
    for image, label in zip(loaded.x_test, loaded.y_test):
        path = (images[:2] + images[3:])[label]
        np.testing.assert_array_equal(image, runtime.load_image(path, (32, 32)))


def test_runtime_image_and_label_errors(tmp_path):
    with pytest.raises(runtime.RuntimeModelError, match="does not exist"):
        runtime.load_image(tmp_path / "missing.png", (8, 8))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(runtime.RuntimeModelError, match="cannot read image"):
        runtime.load_image(tmp_path / "bad.png", (8, 8))
    assert runtime.load_images([], (8, 8)).shape == (0, 8, 8, 3)
    with pytest.raises(runtime.RuntimeModelError, match="labels file .* does not exist"):
        runtime.read_labels(tmp_path / "none.txt")
    (tmp_path / "dup.txt").write_text("cat\ncat\n")
    with pytest.raises(runtime.RuntimeModelError, match="twice"):  # refused here as in keras_vit.labels
        runtime.read_labels(tmp_path / "dup.txt")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    assert runtime.read_labels(runtime.default_labels_path(tmp_path / "m.tflite")) == ["a", "b"]


class FakeModel:
    """What `runtime.model_labels` and `runtime.classify` use of an `ExportedModel`."""

    def __init__(self, path, num_classes=3):
        self.path, self.num_classes = str(path), num_classes

    def predict(self, images):
        return np.asarray(images, np.float32).mean(axis=(1, 2))[:, : self.num_classes]


def test_runtime_finds_labels_by_keras_vits_rules(tmp_path):
    model = FakeModel(tmp_path / "model_int8.tflite")
    with pytest.raises(runtime.RuntimeModelError, match="--labels"):
        runtime.model_labels(model)
    assert runtime.model_labels(FakeModel(tmp_path / "m.onnx", 10)) == list(data.CIFAR10_CLASSES)
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    assert runtime.model_labels(model) == ["a", "b", "c"]
    (tmp_path / "model_int8.labels.txt").write_text("p\nq\nr\n")
    assert runtime.model_labels(model) == ["p", "q", "r"]
    (tmp_path / "two.txt").write_text("x\ny\n")
    with pytest.raises(runtime.RuntimeModelError, match="has 2 names but the model has 3"):
        runtime.model_labels(model, tmp_path / "two.txt")


def test_classify_softmax_and_tta(tmp_path):
    model = FakeModel(tmp_path / "m.onnx")
    colours = np.random.default_rng(0).integers(0, 256, (2, 1, 1, 3), dtype=np.uint8)
    x = np.ascontiguousarray(
        np.broadcast_to(colours, (2, 4, 4, 3))
    )  # one colour an image: every view the same
    top = runtime.classify(model, x, ["r", "g", "b"], top_k=3, tta="flip-shift")
    probabilities = runtime.softmax(model.predict(x))
    assert [[t["index"] for t in row] for row in top] == np.argsort(-probabilities, 1, kind="stable").tolist()
    np.testing.assert_allclose([row[0]["probability"] for row in top], probabilities.max(1), rtol=1e-5)
    with pytest.raises(runtime.RuntimeModelError, match="tta"):
        runtime.classify(model, x, ["r", "g", "b"], tta="rotate")
    with pytest.raises(runtime.RuntimeModelError, match="2 labels"):
        runtime.classify(model, x, ["r", "g"])


def test_runtime_imports_neither_tensorflow_nor_keras(tmp_path):
    blocked = tmp_path / "blocked"
    for module in ("tensorflow", "keras", "tf_keras", "jax", "torch"):
        (blocked / module).mkdir(parents=True)
        (blocked / module / "__init__.py").write_text(
            f"raise ImportError('{module} is blocked in this test')\n"
        )
    code = (
        "import sys, export.runtime\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'jax')]\n"
        "assert not heavy, heavy\n"
        "used = sorted(m for m in sys.modules if m.startswith('keras_vit'))\n"
        "allowed = ('keras_vit', 'keras_vit.cli_utils', 'keras_vit.files', 'keras_vit.labels', 'keras_vit.metrics',"
        " 'keras_vit.tta', 'keras_vit.data')\n"
        "assert all(m in allowed or m.startswith('keras_vit.data.') for m in used), used\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(REPO)])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
