"""Tests for keras_vit.inference: loading a saved classifier, batched logits, test-time augmentation."""

import json
from pathlib import Path

import numpy as np
import pytest
from cli_models import save_model

from keras_vit import data, inference
from keras_vit.cli_utils import CLIError


def test_tta_variants_benchmark(tiny_tree, tmp_path):
    """benchmarks/tta_variants.py: its flip-shift variant is `--tta flip-shift`, and the other shifts differ."""
    import importlib.util

    from conftest import reference_tta_views

    spec = importlib.util.spec_from_file_location(
        "tta_variants", Path(__file__).resolve().parents[1] / "benchmarks" / "tta_variants.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    model, path = save_model(tmp_path / "m", seed=3)
    output = tmp_path / "variants.json"
    assert (
        script.main([str(path), "--data-dir", str(tiny_tree), "--batch-size", "20", "--output", str(output)])
        == 0
    )
    rows = {row["variant"]: row for row in json.loads(output.read_text())["rows"]}
    test = data.load_cifar10(str(tiny_tree), splits=("test",))
    x, y = test.x_test, test.y_test
    views = [
        model.predict(view.astype("float32"), verbose=0) for view in reference_tta_views(x, "flip-shift")
    ]
    assert rows["plain"]["accuracy"] == pytest.approx(float(np.mean(views[0].argmax(-1) == y)))
    flip_shift = rows["shift 1, diagonal, reflect (--tta flip-shift)"]
    assert flip_shift["views"] == 10 and rows["shift 1, all 8 directions, reflect"]["views"] == 18
    assert flip_shift["accuracy"] == pytest.approx(float(np.mean(np.mean(views, 0).argmax(-1) == y)))
    # The fill modes and shift sizes really give other images.
    image = x[:1]
    variants = [
        script.shift_images(image, 1, 1, "reflect"),
        script.shift_images(image, 1, 1, "edge"),
        script.shift_images(image, 1, 1, "constant"),
        script.shift_images(image, 2, 2, "reflect"),
    ]
    assert len({v.tobytes() for v in variants}) == 4
    np.testing.assert_array_equal(script.shift_images(image, 1, 1, "reflect")[0, :-1, :-1], image[0, 1:, 1:])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("inference") / "m", seed=5)


def test_load_model_checked(saved, tmp_path):
    import keras

    model, path = saved
    loaded = inference.load_model_checked(path)
    assert loaded.input_shape == model.input_shape and loaded.output_shape == (None, 10)
    with pytest.raises(CLIError, match="does not exist"):
        inference.load_model_checked(tmp_path / "missing.keras")
    with pytest.raises(CLIError, match="is a directory"):
        inference.load_model_checked(tmp_path)
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip")
    with pytest.raises(CLIError, match=r"could not load model .*corrupt.keras: \w+Error"):
        inference.load_model_checked(tmp_path / "corrupt.keras")
    inputs = keras.Input((None, None, 3))
    any_size = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(inputs)))
    any_size.save(tmp_path / "any_size.keras")
    with pytest.raises(CLIError, match="no fixed input size"):
        inference.load_model_checked(tmp_path / "any_size.keras")
    flat = keras.Input((8,))
    keras.Model(flat, keras.layers.Dense(2)(flat)).save(tmp_path / "vector.keras")
    with pytest.raises(CLIError, match="not an image classifier"):
        inference.load_model_checked(tmp_path / "vector.keras")


def test_predict_logits_pads_the_last_batch(saved):
    model, _ = saved
    x = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    expected = model.predict(x.astype("float32"), verbose=0)
    for batch_size in (3, 7, 64):
        logits = inference.predict_logits(model, x, batch_size, progress=False)
        assert logits.shape == (7, 10) and logits.dtype == np.float32
        np.testing.assert_allclose(logits, expected, atol=1e-5)
    with pytest.raises(ValueError, match="No images"):
        inference.predict_logits(model, x[:0], progress=False)


def test_tta_logits_and_view_logits(saved):
    model, _ = saved
    x = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    views = inference.view_logits(model, x, "flip", 4, progress=False)
    assert len(views) == 2
    np.testing.assert_allclose(views[1], model.predict(x[:, :, ::-1].astype("float32"), verbose=0), atol=1e-5)
    np.testing.assert_allclose(
        inference.tta_logits(model, x, "flip", 4, progress=False), np.mean(views, 0), atol=1e-6
    )
    np.testing.assert_allclose(inference.tta_logits(model, x, "none", 4, progress=False), views[0], atol=1e-6)
    with pytest.raises(ValueError, match="tta"):
        inference.view_logits(model, x, "rotate")
