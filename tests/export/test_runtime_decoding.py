"""export.runtime reads images and labels as keras_vit does: the same photo reaches Keras and an exported file as
the same pixels, and the runtime needs neither TensorFlow nor Keras for it."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_models import decompression_bomb
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
        " 'keras_vit.tta', 'keras_vit.data', 'keras_vit.device', 'keras_vit._lazy')\n"
        "assert all(m in allowed or m.startswith('keras_vit.data.') for m in used), used\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(REPO)])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


class FakeExported(FakeModel):
    """What `runtime.main` uses of an `ExportedModel`: 8x8 RGB images, 3 classes."""

    image_size, channels = (8, 8), 3

    def describe(self):
        return "fake: input float32 (batch, 8, 8, 3)"


@pytest.fixture
def fake_runtime(tmp_path, monkeypatch):
    """`python -m export.runtime` in this process on a fake model with labels a, b, c; good and bad images."""
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    monkeypatch.setattr(runtime, "load", lambda path, threads=None: FakeExported(path))
    good = [tmp_path / "red.png", tmp_path / "blue.png"]
    Image.new("RGB", (16, 16), (250, 0, 0)).save(good[0])
    Image.new("RGB", (16, 16), (0, 0, 250)).save(good[1])
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop.name)
    (tmp_path / "garbage.png").write_bytes(b"not an image")
    bad = [
        decompression_bomb(tmp_path / "bomb.png"),
        loop,
        tmp_path / "garbage.png",
        tmp_path / "missing.png",
    ]
    return tmp_path / "model.onnx", good, bad


def test_runtime_says_when_it_names_the_classes_as_cifar10s(tmp_path, monkeypatch, capsys):
    """As predict: a 10-class model without a labels file was shown with CIFAR-10's names without a word."""

    class TenClasses(FakeExported):
        def __init__(self, path):
            super().__init__(path, num_classes=10)

        def predict(self, images):
            return np.tile(np.asarray(images, np.float32).mean(axis=(1, 2)), (1, 4))[:, :10]

    monkeypatch.setattr(runtime, "load", lambda path, threads=None: TenClasses(path))
    image = tmp_path / "red.png"
    Image.new("RGB", (16, 16), (250, 0, 0)).save(image)
    model = tmp_path / "model.onnx"
    assert runtime.main([str(model), str(image), "--top-k", "1"]) == 0
    assert capsys.readouterr().err == (
        f"note: no --labels and no labels.txt beside {model}; the model has 10 outputs, so the CIFAR-10 class "
        "names are used\n"
    )
    (tmp_path / "labels.txt").write_text("\n".join(data.CIFAR10_CLASSES) + "\n")
    assert runtime.main([str(model), str(image), "--top-k", "1"]) == 0
    assert capsys.readouterr().err == ""


def test_runtime_reports_each_bad_image_and_classifies_the_rest(fake_runtime, capsys):
    """A decompression bomb was a 26-line traceback, and one bad image stopped all: now one line an image, the
    others classified, exit status 1 (as `keras_vit.predict`)."""
    model, good, (bomb, loop, garbage, missing) = fake_runtime
    images = [good[0], bomb, loop, garbage, missing, good[1]]
    assert runtime.main([str(model), *map(str, images), "--top-k", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"error: cannot read image {bomb}: DecompressionBombError: Image size (900000000 pixels) exceeds limit "
        f"of {2 * Image.MAX_IMAGE_PIXELS} pixels, could be decompression bomb DOS attack.",
        f"error: cannot read image {loop}: OSError: [Errno {errno.ELOOP}] {os.strerror(errno.ELOOP)}: '{loop}'",
        f"error: cannot read image {garbage}: UnidentifiedImageError: cannot identify image file '{garbage}'",
        f"error: image {missing} does not exist.",
    ]
    assert str(good[0]) in captured.out and str(good[1]) in captured.out and str(bomb) not in captured.out

    # --json: one entry an image, in order; an unreadable image's entry is its error.
    assert runtime.main([str(model), *map(str, images), "--top-k", "1", "--json"]) == 1
    captured = capsys.readouterr()
    entries = json.loads(captured.out)
    assert [e["image"] for e in entries] == list(map(str, images))
    assert [e["top_k"][0]["label"] for e in entries if "top_k" in e] == ["a", "c"]
    assert [e["error"].split(":")[0] for e in entries if "error" in e] == [
        f"cannot read image {bomb}",
        f"cannot read image {loop}",
        f"cannot read image {garbage}",
        f"image {missing} does not exist.",
    ]
    assert len(captured.err.splitlines()) == 4

    # Every image unreadable: the error lines, nothing classified.
    assert runtime.main([str(model), str(bomb)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    # Every image readable: exit status 0.
    assert runtime.main([str(model), *map(str, good)]) == 0


def test_runtime_and_predict_read_the_same_images_the_same_way(fake_runtime, capsys):
    _, good, bad = fake_runtime
    paths = [good[0], *bad, good[1]]
    keras_side, readable, errors = predict.read_images(paths, (8, 8))
    deployed, deployed_readable, deployed_errors = runtime.read_images(paths, (8, 8))
    np.testing.assert_array_equal(keras_side, deployed)
    assert readable == deployed_readable == good
    assert [e["image"] for e in errors] == [e["image"] for e in deployed_errors] == list(map(str, bad))
    assert [f"cannot read image {e['image']}: {e['error']}" for e in errors[:3]] == [
        e["error"] for e in deployed_errors[:3]
    ]
    with pytest.raises(runtime.RuntimeModelError, match="DecompressionBombError"):
        runtime.load_image(bad[0], (8, 8))
    with pytest.raises(runtime.RuntimeModelError, match="Too many levels of symbolic links"):
        runtime.load_images([good[0], bad[1]], (8, 8))


def test_runtime_interrupted_is_one_line(fake_runtime, capsys, monkeypatch):
    model, good, _ = fake_runtime

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runtime, "tta_logits", interrupt)
    try:
        status = runtime.main([str(model), str(good[0])])
    except KeyboardInterrupt:  # caught here: escaping, it would stop the whole test session
        pytest.fail("KeyboardInterrupt escaped main(): a traceback, not one line")
    assert status == 130
    assert capsys.readouterr().err == "error: interrupted\n"
