"""keras_vit.models.vit: the ViT owns its config; build_vit, saving in safe mode, legacy files, resize_vit,
class_token_forward, training under ViTTrainer, backends."""

import inspect
import json
import re
import textwrap
import zipfile

import keras
import numpy as np
import pytest
from conftest import run_python

from keras_vit import ViT, build_vit, load_model, resize_vit, vit_arguments
from keras_vit.models.presets import PRESETS
from keras_vit.models.vit import VIT_ARGUMENTS, class_token_forward, patch_grid
from keras_vit.pretrained import model_path
from keras_vit.training.optimizers import make_optimizer
from keras_vit.training.recipes import AUGMENT_RECIPES
from keras_vit.training.trainer import ViTTrainer, make_trainer


def randomize(model, seed=0):
    """Give every weight random values (the head starts at zero)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.trainable:
            w.assign(rng.normal(0, 0.2, w.shape).astype("float32"))
    return model


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


def test_two_vits_stand_in_one_model():
    """Each ViT gets a name of its own (as Keras layers do), so an ensemble or a teacher beside its student
    builds; an explicit name stays."""
    first, second = build_vit("vit_micro"), build_vit("vit_micro")
    assert first.name != second.name and first.name.startswith("vit")
    images = keras.Input((32, 32, 3))
    ensemble = keras.Model(images, keras.layers.Average()([first(images), second(images)]))
    assert ensemble.output_shape == (None, 10)
    assert build_vit("vit_micro", name="student").name == "student"


def test_copies_of_a_vit_get_names_of_their_own():
    """`resize_vit` and `build_vit(**vit_arguments(model))` name their copies anew, so a copy stands beside its
    source in one model; an explicit name stays, and a config round trip keeps the name (as Keras does)."""
    model = build_vit("vit_micro")
    resized, rebuilt = resize_vit(model, 32), build_vit(**vit_arguments(model))
    assert "name" not in vit_arguments(model)
    assert len({model.name, resized.name, rebuilt.name}) == 3
    images = keras.Input((32, 32, 3))
    ensemble = keras.Model(images, keras.layers.Average()([m(images) for m in (model, resized, rebuilt)]))
    assert ensemble.output_shape == (None, 10)
    assert resize_vit(model, 48, name="large").name == "large"
    assert build_vit(**vit_arguments(model), name="copy").name == "copy"
    assert ViT.from_config(model.get_config()).name == model.name


def test_a_resized_file_model_is_not_named_as_its_source():
    """A model loaded from a file keeps its name (the shipped one is `vit`) while this process's count of ViTs
    may be at its start (its next ViT would be `vit` too): the resized copy skips that name."""
    keras.backend.clear_session()  # the count at its start
    legacy = load_model(model_path())
    resized = resize_vit(legacy, 32)
    assert legacy.name == "vit" and resized.name == "vit_1"
    assert "name" not in vit_arguments(legacy)


@pytest.mark.parametrize(
    "arguments,message",
    [
        ({"image_size": 32.0}, "`image_size` must be a positive int or a pair of them, got 32.0."),
        (
            {"image_size": (32, 32.5)},
            "`image_size` must be a positive int or a pair of them, got (32, 32.5).",
        ),
        ({"image_size": True}, "`image_size` must be a positive int or a pair of them, got True."),
        (
            {"image_size": (32, 32, 3)},
            "`image_size` must be a positive int or a pair of them, got (32, 32, 3).",
        ),
        ({"patch_size": 0}, "`patch_size` must be a positive int, got 0."),
        ({"patch_size": 2.5}, "`patch_size` must be a positive int, got 2.5."),
        ({"patch_size": 8.0}, "`patch_size` must be a positive int, got 8.0."),
        ({"patch_size": True}, "`patch_size` must be a positive int, got True."),
    ],
    ids=str,
)
def test_vit_refuses_sizes_that_are_not_positive_ints(arguments, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build_vit("vit_micro", **arguments)


def test_vit_sizes_take_numpy_integers_and_lists():
    """NumPy integers (a size computed with NumPy) and lists (a JSON config's pairs) are sizes: the config
    holds Python ints."""
    model = build_vit("vit_micro", image_size=[np.int64(16), 24], patch_size=np.int32(8))
    assert model.image_size == (16, 24) and type(model.patch_size) is int and model.patch_size == 8
    assert all(type(v) is int for v in model.image_size)
    with pytest.raises(
        ValueError, match=r"^`image_size` must be a positive int or a pair of them, got 32\.0\.$"
    ):
        resize_vit(model, 32.0)
    with pytest.raises(ValueError, match=r"^`patch_size` must be a positive int, got 0\.$"):
        patch_grid((32, 32), 0)
    assert patch_grid(32, np.int64(8)) == (4, 4)


def test_drop_path_is_the_last_blocks_rate_at_every_depth():
    """The last block gets `drop_path`, a single block too; from 2 blocks up it grows linearly from 0 (the rule
    trained checkpoints were made with, unchanged)."""
    model = build_vit(**{**SMALL, "depth": 1, "drop_path": 0.2})
    assert model.get_layer("block_0").drop_path == 0.2
    for depth in range(2, 13):
        model = build_vit(**{**SMALL, "depth": depth, "drop_path": 0.1})
        rates = [model.get_layer(f"block_{i}").drop_path for i in range(depth)]
        assert rates == [0.1 * i / max(depth - 1, 1) for i in range(depth)], depth  # the old rule, exactly
    # The shipped model's blocks: a ViT built from its arguments has the same rates.
    legacy = load_model(model_path())
    rebuilt = build_vit(**vit_arguments(legacy))
    blocks = [layer.name for layer in legacy.layers if layer.name.startswith("block_")]
    assert [legacy.get_layer(n).drop_path for n in blocks] == [rebuilt.get_layer(n).drop_path for n in blocks]
    assert legacy.get_layer(blocks[-1]).drop_path == 0.1


def test_channels_need_their_own_statistics():
    with pytest.raises(ValueError, match=r"one value per channel \(channels=1\), got 3 and 3"):
        build_vit("vit_micro", channels=1)
    gray = build_vit("vit_micro", channels=1, mean=(120.0,), std=(64.0,))
    assert gray(np.zeros((2, 32, 32, 1), "float32")).shape == (2, 10)
    with pytest.raises(ValueError, match="one value per channel"):
        build_vit("vit_micro", channels=4, mean=(0, 0, 0, 0), std=(1, 1, 1))


def test_a_models_config_builds_it_again():
    """`build_vit(**model.get_config())`: the config `get_config` writes (with `trainable`) is accepted."""
    model = build_vit("vit_micro", num_registers=1)
    model.trainable = False
    again = build_vit(**model.get_config())
    assert again.get_config() == model.get_config() and not again.trainable


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
    assert type(loaded) is ViT and config["class_name"] == "ViT" and "layers" not in config["config"]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)), expected)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(load_model(path)(images)), expected)
    assert vit_arguments(loaded) == vit_arguments(model)


def test_resize_vit():
    model = randomize(build_vit("vit_micro", image_size=32, patch_size=8))
    images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    same = resize_vit(model, 32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(same(images)), keras.ops.convert_to_numpy(model(images)), atol=1e-5
    )
    bigger = resize_vit(model, (48, 64))
    assert bigger.input_shape == (None, 48, 64, 3)
    assert bigger.get_layer("patch_encoder").num_patches == 6 * 8
    out = keras.ops.convert_to_numpy(bigger(np.zeros((1, 48, 64, 3), "float32")))
    assert out.shape == (1, 10) and np.all(np.isfinite(out))
    np.testing.assert_array_equal(
        bigger.get_layer("block_0").get_weights()[0], model.get_layer("block_0").get_weights()[0]
    )


def assert_saved_and_resized_alike(model, path):
    """The model's `.keras` file (safe mode), its legacy twin (a plain functional model of the same layers,
    as files saved before `ViT` hold) and `resize_vit(model, 32)` compute what it does.

    Returns `(images, logits)`."""
    images = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(images))
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)), expected)
    assert vit_arguments(loaded) == vit_arguments(model)
    same = resize_vit(model, 32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(same(images)), expected, atol=1e-5)
    legacy = save_legacy_twin(model, path.with_name(f"legacy_{path.name}"))
    assert type(legacy) is not ViT and vit_arguments(legacy) == vit_arguments(model)  # the legacy reader
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(legacy(images)), expected)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(resize_vit(legacy, 32)(images)), expected, atol=1e-5
    )
    return images, expected


def test_registers_build_save_and_resize(tmp_path):
    model = randomize(build_vit("vit_micro", num_registers=1))
    encoder = model.get_layer("patch_encoder")
    assert encoder.num_tokens == 16 + 1 + 1 and vit_arguments(model)["num_registers"] == 1
    images, expected = assert_saved_and_resized_alike(model, tmp_path / "registers.keras")
    # The registers' weights matter (resize_vit carried them over).
    # (A random change: LayerNorm would cancel a constant shift.)
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
    assert (
        all(block.locality_attention for block in blocks)
        and vit_arguments(model)["locality_attention"] is True
    )
    assert (
        model.count_params() == build_vit("vit_micro", shifted_patches=True).count_params() + 2
    )  # a temperature each
    assert_saved_and_resized_alike(model, tmp_path / "lsa.keras")
    assert vit_arguments(build_vit("vit_micro"))["locality_attention"] is False


def test_patch_dropout_build_save_and_resize(tmp_path):
    model = randomize(build_vit("vit_micro", patch_dropout=0.5, num_registers=1))
    dropout = model.get_layer("patch_dropout")
    assert (
        dropout.rate == 0.5
        and dropout.num_prefix_tokens == 2
        and vit_arguments(model)["patch_dropout"] == 0.5
    )
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


def save_legacy_twin(model, path):
    """Saves `model`'s layers as a plain functional model (the format from before `ViT`); loads it."""
    keras.Model(model.input, model.output, name=model.name).save(path)
    return keras.saving.load_model(path, safe_mode=True)


def test_vit_owns_its_config():
    model = build_vit("vit_micro", num_registers=1, dropout=0.1)
    assert isinstance(model, ViT) and isinstance(model, keras.Model)
    config = model.get_config()
    assert set(config) == set(VIT_ARGUMENTS) | {"trainable"}
    assert config["num_registers"] == 1 and config["dropout"] == 0.1 and config["image_size"] == (32, 32)
    preset = dict(PRESETS["vit_micro"]["config"], image_size=(32, 32))
    assert {key: config[key] for key in preset} == preset
    clone = ViT.from_config(config)
    assert clone.get_config() == config and clone.count_params() == model.count_params()
    names = ["images", "normalize", "patches", "patch_encoder", "embedding_dropout", "block_0", "block_1"]
    names += ["encoder_norm", "pool", "head"]
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers] == names
    # The config through JSON (as in a .keras file) builds the same network.
    assert ViT.from_config(json.loads(json.dumps(config))).get_config() == config
    assert keras.saving.get_registered_name(ViT) == "keras_vit>ViT"
    assert vit_arguments(model) == {key: config[key] for key in VIT_ARGUMENTS if key not in ("name", "dtype")}
    with pytest.raises(TypeError, match="Unknown ViT arguments"):
        ViT(depht=3)


def test_vit_arguments_and_defaults_come_from_the_constructor():
    parameters = inspect.signature(ViT.__init__).parameters
    assert dict(VIT_ARGUMENTS) == {
        name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty
    }
    # build_vit with no preset is the constructor's defaults; a preset replaces them, arguments override it.
    without_name = lambda model: {k: v for k, v in model.get_config().items() if k != "name"}  # noqa: E731
    assert without_name(build_vit()) == without_name(ViT())
    model = build_vit("vit_tiny", depth=1)
    assert (model.depth, model.projection_dim, model.num_heads) == (1, 128, 4)


def test_vit_dtype_policy_is_part_of_its_config(tmp_path):
    model = build_vit("vit_micro", dtype="mixed_bfloat16")
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("block_0").compute_dtype == "bfloat16"
    assert model.get_layer("head").compute_dtype == "float32"  # float32 logits
    logits = model(np.zeros((2, 32, 32, 3), "float32"))
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    model.save(tmp_path / "bf16.keras")
    loaded = load_model(tmp_path / "bf16.keras")
    assert (
        loaded.get_layer("block_0").compute_dtype == "bfloat16" and loaded.get_config() == model.get_config()
    )
    # vit_arguments leaves the policy out: a copy built from them takes the caller's.
    assert "dtype" not in vit_arguments(model)
    assert build_vit(**vit_arguments(model)).get_layer("block_0").compute_dtype == "float32"


def test_legacy_file_loads_and_converts():
    """The shipped model was saved as a plain functional model: it loads as one, the legacy reader recovers
    its arguments, and a ViT built from them with its weights computes the same."""
    legacy = load_model(model_path())
    assert type(legacy) is not ViT and legacy.name == "vit"
    arguments = vit_arguments(legacy)
    assert set(arguments) == set(VIT_ARGUMENTS) - {"name", "dtype"}
    assert (
        arguments["num_heads"] == 12
        and arguments["num_registers"] == 1
        and arguments["image_size"] == (32, 32)
    )
    model = build_vit(**arguments)
    model.set_weights(legacy.get_weights())
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(legacy(images))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(images)), expected)
    resized = resize_vit(legacy, 32)
    assert type(resized) is ViT
    np.testing.assert_allclose(keras.ops.convert_to_numpy(resized(images)), expected, atol=1e-4)


SMALL = dict(image_size=16, patch_size=4, projection_dim=16, depth=2, num_heads=2, mlp_dim=32)


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"distillation_token": True},
        {"num_registers": 2},
        {"locality_attention": True},
        {"head_norm": "pooled"},
        {"patch_dropout": 0.25, "drop_path": 0.1, "dropout": 0.1},
    ],
    ids=str,
)
def test_class_token_forward_computes_the_models_logits(arguments):
    """The export's pass (the last block cut to the class token, and the distillation token with one) gives the
    model's inference logits."""
    model = randomize(build_vit(**SMALL, **arguments))
    images = np.random.default_rng(1).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    forward = class_token_forward(model)
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    assert np.abs(expected).max() > 0.1  # not a vacuous comparison
    np.testing.assert_allclose(keras.ops.convert_to_numpy(forward(images)), expected, atol=1e-4, rtol=1e-5)


def test_class_token_forward_cuts_only_a_class_token_head():
    """A head that reads every token (mean, learned pooling) gets no cut pass; the shipped legacy model (a
    functional model of a ViT's layers, with a register token) gets one."""
    for pooling in ("gap", "seqpool"):
        assert class_token_forward(build_vit(**SMALL, pooling=pooling)) is None
    assert class_token_forward(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])) is None
    legacy = load_model(model_path())
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(class_token_forward(legacy)(images)),
        keras.ops.convert_to_numpy(legacy(images, training=False)),
        atol=1e-4,
    )


def test_vit_trains_under_the_trainer_and_saves(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 32, 32, 3)).astype("uint8")
    labels = rng.integers(0, 10, 16).astype("int32")
    model = randomize(build_vit("vit_micro", drop_path=0.1, patch_dropout=0.5))
    trainer = make_trainer(model, AUGMENT_RECIPES["lee2021"], label_smoothing=0.1, seed=0)
    trainer.compile(optimizer=make_optimizer("adamw", 1e-3))
    before = [w.copy() for w in model.get_weights()]
    history = trainer.fit({"images": images, "labels": labels}, labels, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    # The trainer's config carries the ViT's: from_config rebuilds a ViT of the same arguments.
    again = ViTTrainer.from_config(trainer.get_config())
    assert type(again.model) is ViT and again.model.get_config() == model.get_config()
    x = images[:4].astype("float32")
    expected = keras.ops.convert_to_numpy(model(x))
    model.save(tmp_path / "trained.keras")
    loaded = keras.saving.load_model(tmp_path / "trained.keras", safe_mode=True)
    assert type(loaded) is ViT
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), expected)


BACKEND_SCRIPT = textwrap.dedent("""
    import numpy as np, keras, sys
    from keras_vit import ViT, build_vit, load_model
    from keras_vit.training.recipes import AUGMENT_RECIPES
    from keras_vit.training.optimizers import make_optimizer
    from keras_vit.training.trainer import make_trainer
    assert keras.backend.backend() == sys.argv[1]
    for policy in ["float32", "mixed_bfloat16"]:
        keras.mixed_precision.set_global_policy(policy)
        model = build_vit("vit_micro", drop_path=0.1, patch_dropout=0.5)
        x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
        y = keras.ops.convert_to_numpy(model(x, training=True))
        assert y.shape == (4, 10) and np.isfinite(y).all(), policy
    keras.mixed_precision.set_global_policy("float32")
    model = build_vit("vit_micro", drop_path=0.1)
    for w in model.trainable_weights:
        w.assign(np.random.default_rng(1).normal(0, 0.2, w.shape).astype("float32"))
    # A step of fit under the trainer, then saved and loaded in safe mode as a ViT.
    trainer = make_trainer(model, AUGMENT_RECIPES["lee2021"], label_smoothing=0.1, seed=0)
    trainer.compile(optimizer=make_optimizer("adamw", 1e-3))
    labels = np.arange(4) % 10
    history = trainer.fit({"images": x, "labels": labels}, labels, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    model.save(sys.argv[2])
    loaded = load_model(sys.argv[2])
    assert type(loaded) is ViT
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)),
                               atol=1e-5)
    print("ok", float(keras.ops.sum(model(x))))
""")


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_runs_and_saves_on_each_backend(backend, tmp_path):
    pytest.importorskip(backend)
    path = tmp_path / f"{backend}.keras"
    # The script's own logits of its trained model, every one of them, for the comparison below.
    script = BACKEND_SCRIPT + "np.save(sys.argv[2] + '.npy', keras.ops.convert_to_numpy(model(x)))\n"
    result = run_python(script, backend, path, backend=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok" in result.stdout
    # A file saved under another backend loads here (TF) and computes the same logits, image by image.
    expected = np.load(f"{path}.npy")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    loaded = load_model(path)
    assert type(loaded) is ViT
    logits = keras.ops.convert_to_numpy(loaded(x))
    assert logits.shape == expected.shape == (4, 10)
    np.testing.assert_allclose(
        logits, expected, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(expected).max()))
    )
