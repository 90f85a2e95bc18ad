"""keras_vit.models.teachers: ResNet-9 and airbench (shapes, initialisation, safe-mode files), dtype policies,
loading and averaging teachers."""

import keras
import numpy as np
import pytest

from keras_vit.models import teachers
from keras_vit.models.flops import forward_flops_per_image


def test_resnet9_shape_parameters_and_safe_mode_round_trip(tmp_path):
    model = teachers.build_resnet9((32, 32), num_classes=10, width=64)
    # Page's ResNet-9: 6.57 M parameters (batch-norm statistics included).
    assert 6_500_000 < model.count_params() < 6_600_000
    small = teachers.build_resnet9((32, 32), num_classes=7, width=4)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    logits = small.predict(images, verbose=0)
    assert logits.shape == (3, 7) and logits.dtype == np.float32
    path = tmp_path / "teachers.keras"
    small.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # built-in layers only: no Lambda
    np.testing.assert_allclose(loaded.predict(images, verbose=0), logits, atol=1e-5)
    with pytest.raises(ValueError, match="divide by 8"):
        teachers.build_resnet9((30, 30))


def _correlated_images(n=64, seed=0):
    """Images whose neighbouring pixels and channels are strongly correlated, as in photographs."""
    rng = np.random.default_rng(seed)
    smooth = rng.normal(size=(n, 8, 8, 1)).repeat(4, axis=1).repeat(4, axis=2)
    return np.clip(128 + 40 * smooth + 10 * rng.normal(size=(n, 32, 32, 3)), 0, 255).astype("float32")


def test_whitening_kernel_decorrelates_the_patches():
    images = _correlated_images() / 255.0
    kernel = teachers.whitening_kernel(images, kernel_size=2, epsilon=0.0)
    assert kernel.shape == (2, 2, 3, 24)
    # The first 12 filters map each 2x2x3 patch (in a Keras kernel's order) to unit-variance, uncorrelated
    # outputs.
    windows = np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(1, 2))
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12).astype("float64")
    outputs = patches @ kernel.reshape(12, 24)
    covariance = outputs[:, :12].T @ outputs[:, :12] / len(outputs)
    np.testing.assert_allclose(covariance, np.eye(12), atol=1e-3)
    # The second half is the first, negated (GELU keeps both signs of each component).
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])
    # Strongest component first: before whitening the first filter's direction carries the most variance.
    raw = patches @ (kernel.reshape(12, 24)[:, :12] / np.linalg.norm(kernel.reshape(12, 24)[:, :12], axis=0))
    assert raw[:, 0].var() == pytest.approx(raw.var(axis=0).max())


def test_airbench_shape_initialisation_and_safe_mode_round_trip(tmp_path):
    # airbench94's network: 1.97 M parameters (batch-norm statistics included), 0.24 GFLOP an image.
    model = teachers.build_airbench((32, 32), num_classes=10, width=64)
    assert 1_950_000 < model.count_params() < 2_000_000
    w = 64
    convolutions = 31 * 31 * 3 * 24 * 4 + 9 * (
        31 * 31 * 24 * w
        + 15 * 15 * w * w
        + 15 * 15 * w * 4 * w
        + 7 * 7 * (4 * w) ** 2
        + 7 * 7 * (4 * w) ** 2
        + 3 * 3 * (4 * w) ** 2
    )
    assert forward_flops_per_image(model) == 2 * convolutions + 2 * 4 * w * 10
    images = _correlated_images(n=200)
    small = teachers.build_airbench((32, 32), num_classes=7, width=4, images=images)
    whiten = small.get_layer("whiten")
    assert not whiten.trainable and not whiten.trainable_weights
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(whiten.kernel),
        teachers.whitening_kernel((images - images.mean((0, 1, 2))) / images.std((0, 1, 2))),
        rtol=1e-4,
        atol=1e-4,
    )
    # Identity initialisation: a block's second convolution passes its input through; the first passes its
    # input to its first filters.
    second = keras.ops.convert_to_numpy(small.get_layer("block2_conv2").kernel)
    np.testing.assert_array_equal(second[1, 1], np.eye(16))
    assert not second[0].any() and not second[2].any()
    first = keras.ops.convert_to_numpy(small.get_layer("block2_conv1").kernel)  # 4 -> 16 channels
    np.testing.assert_array_equal(first[1, 1, :, :4], np.eye(4))
    assert np.abs(first[..., 4:]).sum() > 0  # the other filters keep their random start
    logits = small.predict(images[:3], verbose=0)
    assert logits.shape == (3, 7) and logits.dtype == np.float32
    path = tmp_path / "airbench.keras"
    small.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # built-in layers only: no Lambda
    np.testing.assert_allclose(loaded.predict(images[:3], verbose=0), logits, atol=1e-5)
    with pytest.raises(ValueError, match="at least 16"):
        teachers.build_airbench((8, 8))
    with pytest.raises(ValueError, match="Unknown teacher arch"):
        teachers.build_teacher("resnet50")
    assert teachers.build_teacher("airbench", width=4).name == "airbench_teacher"


def test_with_dtype_policy_keeps_the_weights_and_float32_logits():
    model = teachers.build_resnet9(width=4)
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    copy = teachers.with_dtype_policy(model, "mixed_bfloat16")
    assert copy.get_layer("prep_conv").compute_dtype == "bfloat16"
    assert copy.layers[-1].compute_dtype == "float32"
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(copy.predict(images, verbose=0), model.predict(images, verbose=0), atol=0.15)


def test_load_teacher_checks_the_data_and_freezes(tmp_path):
    path = tmp_path / "t.keras"
    teachers.build_resnet9(width=4).save(path)
    loaded = teachers.load_teacher(path, (32, 32), 10)
    assert not loaded.trainable and not loaded.trainable_weights
    with pytest.raises(ValueError, match="outputs"):
        teachers.load_teacher(path, (32, 32), 5)
    with pytest.raises(ValueError, match="images"):
        teachers.load_teacher(path, (64, 64), 10)


def test_load_teacher_averages_several_teachers(tmp_path):
    images = np.random.default_rng(2).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    members = [
        teachers.build_resnet9(width=4),
        teachers.build_airbench(width=4),
        teachers.build_resnet9(width=4),
    ]
    paths = []
    for index, member in enumerate(members):
        paths.append(tmp_path / f"t{index}.keras")
        member.save(paths[-1])
    ensemble = teachers.load_teacher(paths, (32, 32), 10)
    assert not ensemble.trainable and not ensemble.trainable_weights
    expected = np.mean([member.predict(images, verbose=0) for member in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(images, verbose=0), expected, atol=1e-5)
    assert forward_flops_per_image(ensemble) == sum(forward_flops_per_image(m) for m in members)
    # One path, or a list of one: the teacher itself.
    assert teachers.load_teacher([paths[0]], (32, 32), 10).name == "resnet9_teacher"
    # The ensemble serialises with the trainer (built-in layers only) and comes back with the same outputs.
    config = keras.saving.serialize_keras_object(ensemble)
    again = keras.saving.deserialize_keras_object(config, safe_mode=True)
    again.set_weights(ensemble.get_weights())
    np.testing.assert_allclose(again.predict(images, verbose=0), expected, atol=1e-5)
    teachers.build_resnet9(num_classes=3, width=4).save(tmp_path / "three.keras")
    with pytest.raises(ValueError, match="3 outputs"):
        teachers.load_teacher([paths[0], tmp_path / "three.keras"], (32, 32), 10)
