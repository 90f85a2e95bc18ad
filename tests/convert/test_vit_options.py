"""The ViT options the checkpoints need: defaults equal to the old behaviour, and each option round-trips."""

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit.layers import PatchEncoder, SequencePooling
from keras_vit.models import ViT, resize_vit, vit_arguments

TINY = dict(image_size=32, patch_size=8, projection_dim=32, depth=1, num_heads=2, mlp_dim=64, num_classes=3)
NEW_ARGUMENTS = ("layer_norm_epsilon", "class_token", "distillation_token", "head_norm")


def randomized(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.1, w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_old_configs_build_the_same_network():
    model = randomized(ViT(**TINY))
    config = model.get_config()
    assert [config[name] for name in NEW_ARGUMENTS] == [1e-6, True, False, "tokens"]
    old = ViT.from_config({k: v for k, v in config.items() if k not in NEW_ARGUMENTS})
    assert [w.path for w in old.weights] == [w.path for w in model.weights]
    old.set_weights(model.get_weights())
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(old.predict(images, verbose=0), model.predict(images, verbose=0))


def test_distillation_token_saves_reloads_and_resizes(tmp_path):
    model = randomized(ViT(**TINY, distillation_token=True))
    encoder = model.get_layer("patch_encoder")
    assert encoder.position.shape == (1, 16 + 2, 32) and encoder.num_prefix_tokens == 2
    assert model.get_layer("head").kernel.shape == (64, 3)  # class and distillation tokens side by side
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "deit.keras")
    reloaded = keras_vit.load_model(tmp_path / "deit.keras")
    np.testing.assert_array_equal(reloaded.predict(images, verbose=0), model.predict(images, verbose=0))
    resized = resize_vit(model, 48)
    new_encoder = resized.get_layer("patch_encoder")
    assert new_encoder.position.shape == (1, 36 + 2, 32)
    np.testing.assert_array_equal(new_encoder.dist.numpy(), encoder.dist.numpy())
    np.testing.assert_array_equal(new_encoder.position.numpy()[:, :2], encoder.position.numpy()[:, :2])
    np.testing.assert_allclose(
        resize_vit(model, 32).predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5
    )


def test_pooled_head_norm_and_class_token_with_gap(tmp_path):
    model = randomized(
        ViT(**TINY, pooling="gap", class_token=True, head_norm="pooled", layer_norm_epsilon=1e-12)
    )
    names = [layer.name for layer in model.layers]
    assert "encoder_norm" not in names and names[-3:] == ["pool", "head_norm", "head"]
    assert model.get_layer("patch_encoder").class_token and model.get_layer("head_norm").epsilon == 1e-12
    assert vit_arguments(model)["head_norm"] == "pooled"
    model.save(tmp_path / "gap.keras")
    reloaded = keras_vit.load_model(tmp_path / "gap.keras")
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(reloaded.predict(images, verbose=0), model.predict(images, verbose=0))


def test_layers_refuse_inconsistent_options():
    with pytest.raises(ValueError, match="head_norm"):
        ViT(**TINY, head_norm="both")
    with pytest.raises(ValueError, match="class_token"):
        ViT(**TINY, class_token=False)
    with pytest.raises(ValueError, match="class_token"):
        PatchEncoder(16, 32, class_token=False, distillation_token=True)
    with pytest.raises(ValueError, match="class token"):
        SequencePooling("gap", has_class_token=False, distillation_token=True)


def test_distillation_token_with_registers_keeps_the_order():
    encoder = PatchEncoder(4, 8, distillation_token=True, num_registers=2)
    tokens = keras.ops.convert_to_numpy(encoder(np.zeros((1, 4, 12), "float32")))
    position = encoder.position.numpy()[0]
    np.testing.assert_allclose(tokens[0, 0], encoder.cls.numpy()[0, 0] + position[0], atol=1e-6)
    np.testing.assert_allclose(tokens[0, 1], encoder.dist.numpy()[0, 0] + position[1], atol=1e-6)
    np.testing.assert_allclose(tokens[0, 2:4], encoder.registers.numpy()[0], atol=1e-6)
    assert PatchEncoder.from_config(encoder.get_config()).distillation_token
    pooling = SequencePooling("token", distillation_token=True)
    assert pooling.compute_output_shape((None, 9, 8)) == (None, 16)
    assert SequencePooling.from_config(pooling.get_config()).distillation_token


def test_resize_vit_gives_a_new_head_for_fine_tuning():
    model = randomized(ViT(**TINY, distillation_token=True))
    tuned = resize_vit(model, 48, num_classes=5)
    assert tuned.num_classes == 5 and tuned.image_size == (48, 48)
    assert not np.any(tuned.get_layer("head").kernel.numpy())
    np.testing.assert_array_equal(
        tuned.get_layer("block_0").mlp_hidden.kernel.numpy(),
        model.get_layer("block_0").mlp_hidden.kernel.numpy(),
    )
    kept = resize_vit(model, 32, num_classes=3)
    np.testing.assert_array_equal(
        kept.get_layer("head").kernel.numpy(), model.get_layer("head").kernel.numpy()
    )
