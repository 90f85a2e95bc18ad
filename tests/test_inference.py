"""Tests for keras_vit.inference: loading a saved classifier, batched logits, test-time augmentation."""

import json
from pathlib import Path

import numpy as np
import pytest
from cli_models import (
    bad_model_files,
    rewrite_config,
    save_cnn,
    save_lambda_model,
    save_model,
    save_non_finite_model,
)

import keras_vit
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
    with pytest.raises(CLIError, match=r"corrupt.keras is not a valid .keras file: not a zip archive"):
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


@pytest.fixture(scope="module")
def bad_files(saved, tmp_path_factory):
    return bad_model_files(tmp_path_factory.mktemp("bad_models"), saved[1])


@pytest.mark.parametrize("case", ["truncated", "garbage", "no config", "lambda", "os.system"])
def test_load_model_says_what_is_wrong_with_a_file(bad_files, case):
    """A truncated or garbage file was "File not found", a Lambda layer or an os.system reference Keras'
    generic "could not be deserialized": each is now one line naming the file and the fault."""
    path, expected = bad_files[case]
    with pytest.raises(keras_vit.ModelFileError) as error:
        keras_vit.load_model(path)
    message = str(error.value)
    assert expected in message and "\n" not in message and "File not found" not in message
    with pytest.raises(CLIError) as checked:
        inference.load_model_checked(path)
    assert str(checked.value) == message


def test_load_model_damaged_archives(saved, tmp_path):
    _, path = saved
    content = bytearray(path.read_bytes())
    middle = len(content) // 2
    content[middle : middle + 4] = bytes(b ^ 0xFF for b in content[middle : middle + 4])
    (tmp_path / "flipped.keras").write_bytes(bytes(content))
    with pytest.raises(
        keras_vit.ModelFileError, match=r"flipped.keras is not a valid .keras file: .*corrupt"
    ):
        keras_vit.load_model(tmp_path / "flipped.keras")
    rewrite_config(path, tmp_path / "empty_config.keras", lambda config: config.clear())
    with pytest.raises(keras_vit.ModelFileError, match="could not load model .*empty_config.keras"):
        keras_vit.load_model(tmp_path / "empty_config.keras")
    with pytest.raises(keras_vit.ModelFileError, match="does not exist"):
        keras_vit.load_model(tmp_path / "missing.keras")


def test_every_lambda_layer_is_refused(tmp_path):
    """Issue 45: a Lambda layer is refused even when it names a Keras function that safe mode would load, and
    in a legacy .h5 file."""
    import keras

    for name, function in (("python_lambda", None), ("keras_function", keras.activations.relu)):
        path = save_lambda_model(tmp_path / f"{name}.keras", function)
        with pytest.raises(keras_vit.ModelFileError, match=r"was refused: layer 'scale' is a Lambda layer"):
            keras_vit.load_model(path)
    legacy = save_lambda_model(tmp_path / "legacy.h5")
    with pytest.raises(keras_vit.ModelFileError, match=r"legacy.h5 was refused: it holds a Python lambda"):
        keras_vit.load_model(legacy)


def test_a_non_modeling_keras_function_is_refused_by_name(tmp_path):
    def download(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Dense":
                layer["config"]["activation"] = {
                    "module": "keras.utils",
                    "class_name": "function",
                    "config": "get_file",
                    "registered_name": None,
                }

    path = rewrite_config(
        save_cnn(tmp_path / "cnn.keras", (32, 32, 3)), tmp_path / "get_file.keras", download
    )
    with pytest.raises(
        keras_vit.ModelFileError, match=r"refused: .*keras.utils.get_file, which is not a modeling"
    ):
        keras_vit.load_model(path)


def test_load_model_checked_refuses_another_channel_count(tmp_path):
    path = save_cnn(tmp_path / "mnist.keras")
    with pytest.raises(
        CLIError, match=r"mnist.keras takes 28x28x1 images \(1 channel\(s\)\); the images here"
    ):
        inference.load_model_checked(path)
    assert inference.load_model_checked(path, channels=1).input_shape == (None, 28, 28, 1)


def test_check_finite_weights(saved, tmp_path):
    model, _ = saved
    inference.check_finite_weights(model, "fine.keras")  # no error
    path = save_non_finite_model(tmp_path / "diverged")
    diverged = keras_vit.load_model(path)  # the library loads it, for inspection
    with pytest.raises(CLIError) as error:
        inference.check_finite_weights(diverged, path)
    assert str(error.value).startswith(f"{path} has weights that are not finite (NaN or infinity) in 2 of ")
    assert "class_token" in str(error.value)
    with pytest.raises(CLIError, match="^the model has weights that are not finite"):
        inference.check_finite_weights(diverged)
    with pytest.raises(CLIError, match="not finite"):
        inference.load_model_checked(path)
    assert inference.load_model_checked(path, check_weights=False).count_params() == model.count_params()
