"""build_vit, presets, save/load in safe mode, resolution changes, backends."""

import json
import textwrap
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import cifar10_dir, run_python

from keras_vit import PRESETS, build_vit, get_preset, load_model, resize_vit, vit_arguments

ROOT = Path(__file__).resolve().parents[1]


def randomize(model, seed=0):
    """Give every weight random values (the head starts at zero)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.trainable:
            w.assign(rng.normal(0, 0.2, w.shape).astype("float32"))
    return model


def test_preset_sizes():
    assert {"vit_micro", "vit_tiny", "vit_cifar10"} <= set(PRESETS)
    cifar = build_vit("vit_cifar10")
    assert 2.5e6 <= cifar.count_params() <= 5e6
    assert build_vit("vit_tiny").count_params() < 1e6
    assert cifar.output_shape == (None, 10)


def test_overrides_and_errors():
    model = build_vit("vit_micro", num_classes=7, depth=1, pooling="gap")
    assert model.output_shape == (None, 7)
    assert sum(layer.name.startswith("block_") for layer in model.layers) == 1
    assert not model.get_layer("patch_encoder").class_token
    with pytest.raises(TypeError, match="Unknown build_vit arguments"):
        build_vit("vit_micro", depht=3)
    with pytest.raises(ValueError, match="known presets"):
        build_vit("vit_huge")
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        build_vit("vit_micro", image_size=30)
    assert get_preset("vit_tiny") is not get_preset("vit_tiny")  # a copy


def test_token_count_and_non_square_images():
    model = build_vit("vit_micro", image_size=(16, 40), patch_size=8)
    assert model.get_layer("patch_encoder").num_tokens == 2 * 5 + 1
    assert model(np.zeros((2, 16, 40, 3), "float32")).shape == (2, 10)


def test_no_lambda_layers_and_safe_mode_round_trip(tmp_path):
    model = randomize(build_vit("vit_micro", drop_path=0.1, dropout=0.1))
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(images))
    path = tmp_path / "vit.keras"
    model.save(path)
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    assert "Lambda" not in json.dumps(config)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)), expected)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(load_model(path)(images)), expected)
    assert vit_arguments(loaded) == vit_arguments(model)


def test_resize_vit():
    model = randomize(build_vit("vit_micro", image_size=32, patch_size=8))
    images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    same = resize_vit(model, 32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(same(images)),
                               keras.ops.convert_to_numpy(model(images)), atol=1e-5)
    bigger = resize_vit(model, (48, 64))
    assert bigger.input_shape == (None, 48, 64, 3)
    assert bigger.get_layer("patch_encoder").num_patches == 6 * 8
    out = keras.ops.convert_to_numpy(bigger(np.zeros((1, 48, 64, 3), "float32")))
    assert out.shape == (1, 10) and np.all(np.isfinite(out))
    np.testing.assert_array_equal(bigger.get_layer("block_0").get_weights()[0],
                                  model.get_layer("block_0").get_weights()[0])


def assert_saved_and_resized_alike(model, path):
    """The model's `.keras` file (safe mode) and `resize_vit(model, 32)` compute what it does; returns (images, logits)."""
    images = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(images))
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)), expected)
    assert vit_arguments(loaded) == vit_arguments(model)
    same = resize_vit(model, 32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(same(images)), expected, atol=1e-5)
    return images, expected


def test_registers_build_save_and_resize(tmp_path):
    model = randomize(build_vit("vit_micro", num_registers=1))
    encoder = model.get_layer("patch_encoder")
    assert encoder.num_tokens == 16 + 1 + 1 and vit_arguments(model)["num_registers"] == 1
    images, expected = assert_saved_and_resized_alike(model, tmp_path / "registers.keras")
    # The registers' weights matter (resize_vit carried them over). (a random change: LayerNorm would cancel a constant shift)
    encoder.registers.assign(np.random.default_rng(4).normal(0, 2, encoder.registers.shape).astype("float32"))
    assert not np.allclose(keras.ops.convert_to_numpy(model(images)), expected, atol=1e-3)
    # Old files (no num_registers in their config) still load: the shipped model is one.
    assert build_vit("vit_micro").get_layer("patch_encoder").num_registers == 0


def test_shifted_patches_build_save_and_resize(tmp_path):
    model = randomize(build_vit("vit_micro", shifted_patches=True))
    patches, encoder = model.get_layer("patches"), model.get_layer("patch_encoder")
    assert patches.shifted and encoder.patch_norm and vit_arguments(model)["shifted_patches"] is True
    assert encoder.projection.kernel.shape == (5 * 8 * 8 * 3, 32)  # five stacked copies of each 8x8 patch
    assert encoder.num_tokens == 17  # the same sequence as plain patches
    assert_saved_and_resized_alike(model, tmp_path / "spt.keras")  # resize_vit carries the patch norm over
    assert resize_vit(model, 48)(np.zeros((1, 48, 48, 3), "float32")).shape == (1, 10)
    assert vit_arguments(build_vit("vit_micro"))["shifted_patches"] is False


def test_locality_attention_build_save_and_resize(tmp_path):
    model = randomize(build_vit("vit_micro", locality_attention=True, shifted_patches=True))
    blocks = [model.get_layer(f"block_{i}") for i in range(2)]
    assert all(block.locality_attention for block in blocks) and vit_arguments(model)["locality_attention"] is True
    assert model.count_params() == build_vit("vit_micro", shifted_patches=True).count_params() + 2  # a temperature each
    assert_saved_and_resized_alike(model, tmp_path / "lsa.keras")
    assert vit_arguments(build_vit("vit_micro"))["locality_attention"] is False


def test_patch_dropout_build_save_and_resize(tmp_path):
    model = randomize(build_vit("vit_micro", patch_dropout=0.5, num_registers=1))
    dropout = model.get_layer("patch_dropout")
    assert dropout.rate == 0.5 and dropout.num_prefix_tokens == 2 and vit_arguments(model)["patch_dropout"] == 0.5
    assert model.count_params() == build_vit("vit_micro", num_registers=1).count_params()  # no weights
    images, expected = assert_saved_and_resized_alike(model, tmp_path / "patch_dropout.keras")
    # Inference sees every token: the same logits as the model without the layer, given the same weights.
    plain = build_vit("vit_micro", num_registers=1)
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(images)), expected, atol=1e-5)
    # Training sees 1 + 1 + 8 tokens: a different forward pass.
    trained_view = keras.ops.convert_to_numpy(model(images, training=True))
    assert trained_view.shape == expected.shape and not np.allclose(trained_view, expected, atol=1e-3)
    assert "patch_dropout" not in [layer.name for layer in build_vit("vit_micro").layers]  # no layer at 0
    assert vit_arguments(build_vit("vit_micro"))["patch_dropout"] == 0.0


def test_pretrained_model_loads():
    from keras_vit import load_pretrained
    from keras_vit.pretrained import labels_path, metrics, model_path

    assert model_path().stat().st_size < 20 * 2**20
    model = load_pretrained()
    assert model.output_shape == (None, 10)
    assert labels_path().read_text().split()[0] == "airplane"
    assert metrics()["test_accuracy"] > 0.5


@pytest.mark.skipif(cifar10_dir() is None, reason="no real CIFAR-10 copy")
def test_pretrained_model_scores_what_its_metrics_say():
    """The shipped file, scored here on all 10,000 real test images, gives the accuracy its metrics.json records
    (measured on a GPU under JAX at the end of its run; the CPU rounds differently, by a few images): a stale
    metrics file or a swapped or damaged model fails."""
    from keras_vit import data, load_pretrained
    from keras_vit.pretrained import labels_path, metrics

    splits = data.load_cifar10(cifar10_dir(), splits="test", download=False)
    assert list(splits.class_names) == labels_path().read_text().split()
    logits = load_pretrained().predict(splits.x_test, batch_size=500, verbose=0)
    accuracy = float(np.mean(logits.argmax(-1) == splits.y_test))
    assert len(splits.y_test) == metrics()["test_images"] == 10_000
    assert accuracy == pytest.approx(metrics()["test_accuracy"], abs=0.0015)


BACKEND_SCRIPT = textwrap.dedent("""
    import numpy as np, keras, sys
    from keras_vit import build_vit, Patches, PatchEncoder, TransformerBlock
    assert keras.backend.backend() == sys.argv[1]
    for policy in ["float32", "mixed_bfloat16"]:
        keras.mixed_precision.set_global_policy(policy)
        model = build_vit("vit_micro", drop_path=0.1, patch_dropout=0.5)
        x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
        y = keras.ops.convert_to_numpy(model(x, training=True))
        assert y.shape == (4, 10) and np.isfinite(y).all(), policy
    keras.mixed_precision.set_global_policy("float32")
    model = build_vit("vit_micro")
    for w in model.trainable_weights:
        w.assign(np.random.default_rng(1).normal(0, 0.2, w.shape).astype("float32"))
    model.save(sys.argv[2])
    print("ok", float(keras.ops.sum(model(x))))
""")


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_runs_and_saves_on_each_backend(backend, tmp_path):
    pytest.importorskip(backend)
    path = tmp_path / f"{backend}.keras"
    result = run_python(BACKEND_SCRIPT, backend, path, backend=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok" in result.stdout
    # A file saved under another backend loads here (TF) and computes the same.
    total = float(result.stdout.split()[-1])
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    loaded = load_model(path)
    assert abs(float(np.sum(keras.ops.convert_to_numpy(loaded(x)))) - total) < 1e-3 * max(1, abs(total))
