"""Tests for keras_vit.inference: loading a saved classifier, batched logits, test-time augmentation."""

import io
import json
import re
import sys
import zipfile
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
        np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-4)  # batch size changes the kernels
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


def test_view_logits_in_chunks_reads_a_chunk_at_a_time_with_the_same_logits(saved):
    """A streamed split is decoded a chunk (whole batches) at a time, never whole; the views are those of one call."""
    model, _ = saved
    x = np.random.default_rng(2).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)

    class Slices:  # an array-like that decodes a slice on np.asarray, as FileImages
        def __init__(self):
            self.read = []

        def __len__(self):
            return len(x)

        def __getitem__(self, key):
            self.read.append((key.start, key.stop))
            return x[key]

    images = Slices()
    views = inference.view_logits_in_chunks(model, images, "flip", batch_size=2, chunk=3, progress=False)
    assert images.read == [(0, 4), (4, 8), (8, 12)]  # 3 rounded up to two whole batches of 2
    whole = inference.view_logits(model, x, "flip", 2, progress=False)
    assert len(views) == 2 and all(v.shape == (10, 10) for v in views)
    for chunked, at_once in zip(views, whole):
        np.testing.assert_allclose(chunked, at_once, rtol=1e-5, atol=1e-5)
    mean = inference.tta_logits_in_chunks(model, images, "flip", batch_size=2, chunk=3, progress=False)
    np.testing.assert_allclose(
        mean, inference.tta_logits(model, x, "flip", 2, progress=False), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="tta"):
        inference.view_logits_in_chunks(model, images, "rotate")
    with pytest.raises(ValueError, match="No images"):
        inference.view_logits_in_chunks(model, x[:0])


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


# --- Loading: every refusal's exact line (a message is the interface of these functions) ---


def _keras_zip(path, config_text):
    """A zip archive holding only `config.json` (the checks before Keras read nothing else)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", config_text)
    return path


def _refusal(path):
    """The one line `load_keras_model` refuses `path` with."""
    with pytest.raises(keras_vit.ModelFileError) as error:
        inference.load_keras_model(path)
    return str(error.value)


def _with_dense(change):
    """A `rewrite_config` change applied to the config of every Dense layer of a functional model."""

    def rewrite(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Dense":
                change(layer["config"])

    return rewrite


def test_damaged_archive_and_config_messages(tmp_path):
    """A member whose deflate stream is broken (zlib raises, not the CRC check), a config.json that is not JSON
    and one that is JSON but no config: each its own line, with the library's own words."""
    path = tmp_path / "deflate.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", json.dumps({"padding": "x" * 1000}))
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("config.json")
    content = bytearray(path.read_bytes())
    content[info.header_offset + 30 + len(info.filename) + len(info.extra)] = 0xFF  # reserved block type
    path.write_bytes(bytes(content))
    assert _refusal(path) == (
        f"{path} is not a valid .keras file: corrupt zip archive "
        "(error: Error -3 while decompressing data: invalid block type)"
    )
    not_json = _keras_zip(tmp_path / "not_json.keras", "not json")
    assert _refusal(not_json) == (
        f"{not_json} is not a valid .keras file: its config.json is not JSON "
        "(Expecting value: line 1 column 1 (char 0))"
    )
    a_list = _keras_zip(tmp_path / "list.keras", "[1, 2]")
    assert _refusal(a_list) == f"{a_list} is not a valid .keras file: its config.json is not a model config"


def test_lambda_and_non_modeling_messages_in_full(tmp_path):
    path = save_lambda_model(tmp_path / "lambda.keras")
    assert _refusal(path) == (
        f"{path} was refused: layer 'scale' is a Lambda layer, which runs arbitrary Python code; "
        "safe mode does not load code from model files"
    )

    def get_file(config):
        config["activation"] = {
            "module": "keras.utils",
            "class_name": "function",
            "config": "get_file",
            "registered_name": None,
        }

    cnn = save_cnn(tmp_path / "cnn.keras", (8, 8, 3))
    path = rewrite_config(cnn, tmp_path / "get_file.keras", _with_dense(get_file))
    assert _refusal(path) == (
        f"{path} was refused: its config calls keras.utils.get_file, which is not a modeling function; "
        "safe mode loads only layers, operations, losses and metrics"
    )


def test_a_pickled_lambda_outside_a_lambda_layer_is_refused_and_located(tmp_path):
    """A lambda loss is pickled bytecode in the compile config: refused even though loading does not compile.
    A Sequential model's config is a layer's (it has a dtype): the line names it; a functional model's is
    not: "its config"."""
    import warnings

    import keras

    def loss(y, p):
        return keras.ops.mean((y - p) ** 2)

    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="seq")
    inputs = keras.Input((4,))
    functional = keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs), name="net")
    for model in (sequential, functional):
        model.compile(optimizer="sgd", loss=lambda y, p: loss(y, p))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns that it serializes a lambda: that is the point
            model.save(tmp_path / f"{model.name}.keras")
    for name, where in (("seq", "layer 'seq' "), ("net", "its config ")):
        path = tmp_path / f"{name}.keras"
        assert _refusal(path) == (
            f"{path} was refused: {where}holds a pickled Python lambda, arbitrary code that safe mode does "
            "not load"
        )


def test_the_layer_named_for_a_lambda_in_a_hand_written_config(tmp_path):
    """The layer of a serialized object: an object with `dtype` in its config and a name, the outer one (the
    functional graph's) when the inner config has none; objects in lists inside a layer belong to it."""
    pickled = {"class_name": "__lambda__", "config": {"value": ["AAAA", None, None]}}
    outer_name_only = {
        "class_name": "Functional",
        "config": {
            "layers": [
                {"class_name": "Dense", "name": "head", "config": {"dtype": "float32", "activation": pickled}}
            ]
        },
    }
    path = _keras_zip(tmp_path / "outer.keras", json.dumps(outer_name_only))
    assert _refusal(path) == (
        f"{path} was refused: layer 'head' holds a pickled Python lambda, arbitrary code that safe mode does "
        "not load"
    )
    in_a_list = {
        "class_name": "Functional",
        "config": {
            "layers": [
                {"class_name": "Dense", "config": {"name": "body", "dtype": "float32", "hooks": [[pickled]]}}
            ]
        },
    }
    path = _keras_zip(tmp_path / "list.keras", json.dumps(in_a_list))
    assert _refusal(path).startswith(f"{path} was refused: layer 'body' holds a pickled Python lambda")


@pytest.mark.parametrize(
    "key, foreign, named",
    [
        ("activation", {"class_name": "function", "module": "os", "config": "path.join"}, "os.path.join"),
        ("activation", {"class_name": "function", "module": "numpy", "config": "dtype"}, "numpy.dtype"),
        ("activation", {"class_name": "function", "module": "evil", "config": {"x": 1}}, "evil"),
        (
            "kernel_initializer",
            {"class_name": "Popen", "module": "subprocess.evil", "config": {"name": "p"}},
            "subprocess.evil.Popen",
        ),
    ],
    ids=["dotted function", "function named dtype", "function without a name", "class with a name"],
)
def test_foreign_code_is_named_with_its_layer(tmp_path, key, foreign, named):
    """A function or class from outside Keras and keras_vit: the line names it as `module.name` (a function's
    name may hold dots; one without a string name is named by its module; a class's name is its class_name)
    and the layer it is in, not the object itself (a name in its config without a dtype is no layer's)."""
    cnn = save_cnn(tmp_path / "cnn.keras", (8, 8, 3))
    change = _with_dense(lambda config: config.update({key: {**foreign, "registered_name": None}}))
    path = rewrite_config(cnn, tmp_path / "foreign.keras", change)
    assert _refusal(path) == (
        f"{path} was refused: layer 'logits' names {named}, code from outside Keras and keras_vit that safe "
        "mode does not load"
    )


def test_foreign_code_in_a_sequential_model_names_the_inner_layer(tmp_path):
    """Sequential configs give a layer's name only inside its config (no outer "name")."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="hidden")], name="seq")
    model.save(tmp_path / "seq.keras")

    def os_system(config):
        config["config"]["layers"][1]["config"]["activation"] = {
            "module": "os",
            "class_name": "function",
            "config": "system",
            "registered_name": None,
        }

    path = rewrite_config(tmp_path / "seq.keras", tmp_path / "seq_os.keras", os_system)
    assert _refusal(path) == (
        f"{path} was refused: layer 'hidden' names os.system, code from outside Keras and keras_vit that safe "
        "mode does not load"
    )


def test_other_load_failures_give_keras_innermost_reason(tmp_path):
    """A failure that is no refusal: the innermost of Keras' nested "Exception encountered:" reasons, with the
    error's type when Keras' message is not a deserialization failure. An argument whose name holds "lambda"
    is no Python lambda."""
    cnn = save_cnn(tmp_path / "cnn.keras", (8, 8, 3))
    path = rewrite_config(
        cnn, tmp_path / "bogus.keras", _with_dense(lambda config: config.update(kernel_lambda=0.01))
    )
    assert _refusal(path) == (
        f"could not load model {path}: Unrecognized keyword arguments passed to Dense: {{'kernel_lambda': 0.01}}"
    )
    path = rewrite_config(cnn, tmp_path / "empty_config.keras", lambda config: config.clear())
    assert _refusal(path) == (
        f"could not load model {path}: ValueError: Expected object to be an instance of `KerasSaveable`, but "
        "got {'compile_config': None} of type <class 'dict'>"
    )


def test_keras_deserialization_errors_are_recognised_in_any_case(tmp_path, monkeypatch):
    """Keras' wording of a deserialization failure is matched whatever its capitalisation."""
    import keras

    path = save_cnn(tmp_path / "cnn.keras", (8, 8, 3))

    def fail(*args, **kwargs):
        raise TypeError("Layer 'logits' COULD NOT BE DESERIALIZED.\n\nException encountered: bad units\nmore")

    monkeypatch.setattr(keras.saving, "load_model", fail)
    assert _refusal(path) == f"could not load model {path}: bad units"


def test_a_legacy_h5_file_is_loaded_in_safe_mode(tmp_path):
    """Safe mode also covers what the checks before Keras do not see: a legacy .h5 file whose StringLookup
    reads its vocabulary from a file outside the model is refused (Keras loads it outside safe mode)."""
    import warnings

    import h5py
    import keras

    (tmp_path / "words.txt").write_text("a\nb\n")
    inputs = keras.Input((1,), dtype="string")
    model = keras.Model(inputs, keras.layers.StringLookup(vocabulary=["a", "b"], name="lookup")(inputs))
    path = tmp_path / "lookup.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    with h5py.File(path, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        config["config"]["layers"][1]["config"]["vocabulary"] = str(tmp_path / "words.txt")
        file.attrs["model_config"] = json.dumps(config)
    message = _refusal(path)
    assert message.startswith(
        f"could not load model {path}: TypeError: Requested the loading of a vocabulary file outside of the "
        "model archive."
    )
    assert "\n" not in message


def test_load_keras_model_compiles_only_when_asked(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    model.save(tmp_path / "compiled.keras")
    assert not inference.load_keras_model(tmp_path / "compiled.keras").compiled
    assert inference.load_keras_model(tmp_path / "compiled.keras", compile=True).compiled


def test_load_model_checked_messages_in_full(saved, tmp_path):
    import keras

    _, rgb = saved
    with pytest.raises(CLIError) as error:
        inference.load_model_checked(rgb, channels=1)
    assert str(error.value) == (
        f"{rgb} takes 32x32x3 images (3 channel(s)); the images here are 32x32x1 (after resizing), which this "
        "model cannot take"
    )
    mnist = save_cnn(tmp_path / "mnist.keras")
    with pytest.raises(CLIError) as error:
        inference.load_model_checked(mnist)
    assert str(error.value) == (
        f"{mnist} takes 28x28x1 images (1 channel(s)); the images here are 28x28x3 (RGB, after resizing), "
        "which this model cannot take"
    )
    inputs = keras.Input((None, 8, 3))  # only the height is free
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    keras.Model(inputs, keras.layers.Dense(2)(features)).save(tmp_path / "free_height.keras")
    with pytest.raises(CLIError) as error:
        inference.load_model_checked(tmp_path / "free_height.keras")
    assert str(error.value) == f"{tmp_path / 'free_height.keras'} has no fixed input size: (None, None, 8, 3)"


def test_non_finite_weights_message_counts_every_variable(tmp_path):
    path = save_non_finite_model(tmp_path / "diverged")
    diverged = keras_vit.load_model(path)
    values = [np.asarray(w.numpy()) for w in diverged.weights]
    first = next(w.path for w, v in zip(diverged.weights, values) if not np.isfinite(v).all())
    expected = (
        f"has weights that are not finite (NaN or infinity) in 2 of {len(values)} variables, the first {first}: "
        "it cannot classify (did its training diverge?)"
    )
    for check in (
        lambda: inference.check_finite_weights(diverged, path),
        lambda: inference.load_model_checked(path),
    ):
        with pytest.raises(CLIError) as error:
            check()
        assert str(error.value) == f"{path} {expected}"


def test_check_finite_weights_skips_integer_state_and_reads_on(tmp_path):
    """Integer and boolean variables (seeds, counters) are finite by nature; the variables after them are still
    checked, and a bfloat16 infinity is found."""
    import types

    import keras

    weights = [
        keras.Variable(np.array([3, 4], "int32"), name="step"),
        keras.Variable(np.array([True]), name="flag", dtype="bool"),
        keras.Variable(np.array([1.0, np.nan], "float32"), name="kernel"),
        keras.Variable(np.array([np.inf], "float32"), name="scale", dtype="bfloat16"),
    ]
    with pytest.raises(CLIError) as error:
        inference.check_finite_weights(types.SimpleNamespace(weights=weights))
    assert str(error.value) == (
        "the model has weights that are not finite (NaN or infinity) in 2 of 4 variables, the first kernel: "
        "it cannot classify (did its training diverge?)"
    )
    inference.check_finite_weights(types.SimpleNamespace(weights=weights[:2]))  # no error


# --- Batched logits: a stand-in model records every batch it is given ---


class RecordingModel:
    """Stands in for a `keras.Model`: logits = flattened image @ a fixed random kernel (float64, so the float32
    result is the function's own cast); keeps a copy of every batch."""

    def __init__(self, features, classes=3, seed=0):
        self.kernel = np.random.default_rng(seed).normal(size=(features, classes))
        self.batches = []

    def predict_on_batch(self, batch):
        self.batches.append(np.array(batch))
        return batch.reshape(len(batch), -1).astype("float64") @ self.kernel

    def reference(self, images):
        return (np.asarray(images).reshape(len(images), -1).astype("float64") @ self.kernel).astype("float32")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _bars(text):
    """The final state of each progress bar tqdm drew."""
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n") if line.strip()]


def _images(n, shape=(2, 2, 1), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def test_predict_logits_batches_pads_with_zeros_and_casts():
    x = _images(7)
    for batch_size, sizes in ((3, [3, 3, 3]), (1, [1] * 7), (0, [1] * 7), (7, [7]), (64, [7])):
        model = RecordingModel(4)
        logits = inference.predict_logits(model, x, batch_size, progress=False)
        assert logits.dtype == np.float32
        np.testing.assert_array_equal(logits, model.reference(x))
        assert [len(b) for b in model.batches] == sizes
        assert all(b.dtype == np.float32 for b in model.batches)
        np.testing.assert_array_equal(np.concatenate(model.batches)[:7], x.astype("float32"))
        assert not np.concatenate(model.batches)[7:].any()  # the padding is black images
    with pytest.raises(ValueError, match=r"^No images to predict\.$"):
        inference.predict_logits(RecordingModel(4), x[:0], progress=False)


def test_defaults_batch_256_one_view_and_a_labelled_bar(monkeypatch):
    """The default batch size is 256, the default test-time augmentation none, the default bar "predict" in
    images, shown on a terminal."""
    x = _images(300)
    for run in (inference.predict_logits, inference.view_logits, inference.tta_logits):
        terminal = _Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        model = RecordingModel(4)
        result = run(model, x)
        logits = result[0] if run is inference.view_logits else result
        if run is inference.view_logits:
            assert len(result) == 1
        np.testing.assert_array_equal(logits, model.reference(x))
        assert [len(b) for b in model.batches] == [256, 256]
        [bar] = _bars(terminal.getvalue())
        assert re.fullmatch(r"predict: 100%\|#+\| 300/300 \[[^\]]*img/s\]", bar), bar


def test_progress_bar_only_when_asked_and_on_a_terminal(monkeypatch):
    x = _images(7)
    for stream, progress, shown in (
        (_Terminal(), True, True),
        (_Terminal(), False, False),
        (io.StringIO(), True, False),
    ):
        monkeypatch.setattr(sys, "stderr", stream)
        inference.predict_logits(RecordingModel(4), x, 3, progress=progress, desc="scoring")
        bars = _bars(stream.getvalue())
        if shown:
            assert len(bars) == 1 and re.fullmatch(r"scoring: 100%\|#+\| 7/7 \[[^\]]*img/s\]", bars[0]), bars
        else:
            assert bars == []


def test_view_logits_and_tta_logits_label_each_view(monkeypatch):
    """Every view of a test-time augmentation is predicted in batches of `batch_size`, its bar labelled with
    the view's number ("none" keeps the plain label); tta_logits is their mean; progress=False draws nothing."""
    from conftest import reference_tta_views

    x = _images(5, (4, 4, 3), seed=2)
    for tta, count in (("none", 1), ("flip", 2), ("flip-shift", 10)):
        terminal = _Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        model = RecordingModel(48)
        views = inference.view_logits(model, x, tta, 2, True, "eval")
        references = [model.reference(view) for view in reference_tta_views(x, tta)]
        assert len(views) == count
        for got, expected in zip(views, references):
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, expected)
        assert [len(b) for b in model.batches] == [2, 2, 2] * count
        labels = [bar.split(": 100%")[0] for bar in _bars(terminal.getvalue())]
        assert labels == (
            ["eval"] if tta == "none" else [f"eval (view {i}/{count})" for i in range(1, count + 1)]
        )
        terminal = _Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        model = RecordingModel(48)
        mean = inference.tta_logits(model, x, tta, 4, True, "score")
        np.testing.assert_array_equal(mean, np.mean(references, axis=0))
        assert [len(b) for b in model.batches] == [4, 4] * count
        labels = [bar.split(": 100%")[0] for bar in _bars(terminal.getvalue())]
        assert labels == (
            ["score"] if tta == "none" else [f"score (view {i}/{count})" for i in range(1, count + 1)]
        )
        for quiet in (
            lambda: inference.view_logits(model, x, tta, 2, False, "eval"),
            lambda: inference.tta_logits(model, x, tta, 2, False, "eval"),
        ):
            terminal = _Terminal()
            monkeypatch.setattr(sys, "stderr", terminal)
            quiet()
            assert terminal.getvalue() == ""
