"""The on-device augmentation layers: what each does, and that it stays out of inference."""

import importlib.util

import keras
import numpy as np
import pytest
from conftest import run_python
from scipy import stats

from keras_vit.training.augment import (
    COLOR_OPS,
    MixUpCutMix,
    RandAugment,
    RandomCropFlip,
    RandomErasing,
    bilinear_warp,
    build_augmentation,
    symmetric_beta,
)
from keras_vit.training.recipes import AUGMENT_RECIPES

IMAGES = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype("float32")


def np_(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize(
    "layer", [RandomCropFlip(4, seed=1), RandAugment(2, 9, seed=1), RandomErasing(1.0, seed=1)]
)
def test_identity_at_inference_and_round_trip(layer):
    np.testing.assert_array_equal(np_(layer(IMAGES)), IMAGES)
    out = np_(layer(IMAGES, training=True))
    assert out.shape == IMAGES.shape and out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, IMAGES)
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_layers_compute_in_float32_under_mixed_bfloat16(mixed_bfloat16):
    # Built directly too, not only through make_trainer: under mixed_bfloat16 the
    # TensorFlow backend refused RandAugment's bfloat16 x float32 products.
    layers = [
        RandomCropFlip(4, seed=1),
        RandAugment(2, 9, seed=1),
        RandomErasing(1.0, seed=1),
        MixUpCutMix(1.0, 1.0, seed=1),
        RandAugment(2, 9, seed=1, dtype="mixed_bfloat16"),
    ]
    assert [layer.compute_dtype for layer in layers] == ["float32"] * 4 + ["bfloat16"]
    for layer in layers[:3]:
        out = layer(IMAGES.astype("float32"), training=True)
        assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_crop_flip_is_a_window_of_the_reflect_padded_image():
    out = np_(RandomCropFlip(4, flip=True, seed=3)(IMAGES, training=True))
    padded = np.pad(IMAGES, [(0, 0), (4, 4), (4, 4), (0, 0)], mode="reflect")
    for i in range(len(IMAGES)):
        windows = [padded[i, y : y + 32, x : x + 32] for y in range(9) for x in range(9)]
        candidates = windows + [w[:, ::-1] for w in windows]
        assert any(np.array_equal(out[i], c) for c in candidates), i


def test_flip_only():
    out = np_(RandomCropFlip(0, flip=True, seed=4)(IMAGES, training=True))
    flipped = [np.array_equal(o, x[:, ::-1]) for o, x in zip(out, IMAGES)]
    kept = [np.array_equal(o, x) for o, x in zip(out, IMAGES)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_rand_augment_magnitude_zero_is_identity():
    np.testing.assert_array_equal(np_(RandAugment(2, 0.0)(IMAGES, training=True)), IMAGES)
    with pytest.raises(ValueError):
        RandAugment(2, 11)


def test_bilinear_warp_matches_keras_affine_transform():
    rng = np.random.default_rng(8)
    angle = rng.uniform(-0.6, 0.6, 16)
    transform = np.stack(
        [
            np.cos(angle) + rng.uniform(-0.2, 0.2, 16),
            -np.sin(angle) + rng.uniform(-0.3, 0.3, 16),
            rng.uniform(-9, 9, 16),
            np.sin(angle),
            np.cos(angle),
            rng.uniform(-9, 9, 16),
        ],
        1,
    )
    transform[0] = [1, 0, 0, 0, 1, 0]  # identity
    transform[1] = [-1, 0, 31, 0, 1, 0]  # mirror
    transform[2] = [1, 0, 3, 0, 1, -2]  # whole-pixel shift: the edge fills
    transform = transform.astype("float32")
    ours = np_(bilinear_warp(IMAGES, transform, fill_value=128.0))
    full = np.concatenate([transform, np.zeros((16, 2), "float32")], 1)
    reference = np_(
        keras.ops.image.affine_transform(
            IMAGES, full, interpolation="bilinear", fill_mode="constant", fill_value=128.0
        )
    )
    np.testing.assert_allclose(ours, reference, atol=2e-3)
    np.testing.assert_allclose(ours[0], IMAGES[0], atol=1e-4)
    np.testing.assert_allclose(ours[1], IMAGES[1][:, ::-1], atol=1e-4)
    # Output (x, y) reads input (x + 3, y - 2): rows 0-1 and columns 29-31 come from outside.
    np.testing.assert_allclose(ours[2][2:, :29], IMAGES[2][:30, 3:], atol=1e-4)
    assert np.all(ours[2][:2] == 128.0) and np.all(ours[2][:, 29:] == 128.0)


def test_sharpness_matches_pil():
    from PIL import Image, ImageEnhance

    sharpness = COLOR_OPS[-1]
    assert sharpness.__name__ == "_sharpness"
    images = IMAGES[:4].round()
    strength = np.array([0.2, 0.5, 0.8, 1.0], "float32").reshape(4, 1, 1, 1)
    sign = np.array([1, -1, 1, -1], "float32").reshape(4, 1, 1, 1)
    # Tensors, as RandAugment passes them (a private op: under PyTorch it does not mix NumPy arrays in).
    tensors = [keras.ops.convert_to_tensor(array) for array in (images, strength, sign)]
    ours = np.clip(np_(sharpness(*tensors)), 0, 255)
    for i in range(4):
        factor = 1.0 + 0.9 * strength[i, 0, 0, 0] * sign[i, 0, 0, 0]
        pil = ImageEnhance.Sharpness(Image.fromarray(images[i].astype("uint8"))).enhance(factor)
        # PIL rounds the smoothed image to uint8 (up to 0.5 x |1 - factor| <= 0.45 here), then the blend (< 1).
        assert np.abs(ours[i] - np.asarray(pil, "float32")).max() < 1.5


def test_autocontrast_matches_pil_and_leaves_a_flat_channel():
    """Each channel stretched to 0..255 as PIL's `ImageOps.autocontrast`; a flat channel (green and blue here)
    is left as it is, not set to 0."""
    from PIL import Image, ImageOps

    autocontrast = COLOR_OPS[6]
    assert autocontrast.__name__ == "_autocontrast"
    image = np.stack(
        [(IMAGES[0][..., 0] * 0.5 + 40).round(), np.full((32, 32), 200.0), np.full((32, 32), 37.0)], -1
    ).astype("float32")
    tensors = [
        keras.ops.convert_to_tensor(array) for array in (image[None], np.ones((1, 1, 1, 1), "float32"))
    ]
    ours = np_(autocontrast(tensors[0], tensors[1], tensors[1]))[0]
    pil = np.asarray(ImageOps.autocontrast(Image.fromarray(image.astype("uint8"))), "float32")
    assert np.abs(ours - pil).max() < 1.0  # PIL truncates to uint8
    assert ours[..., 1].min() == 200.0 and ours[..., 2].max() == 37.0


def test_rand_augment_composes_geometric_rounds_into_one_warp():
    """Two translation rounds compose into their sum (one warp, no double resampling)."""
    layer = RandAugment(2, 9.0, seed=0)
    shift = len(COLOR_OPS) + 3  # translate_x
    op = np.full(16, shift, "int32")
    strength, sign = np.full(16, 0.5, "float32"), np.ones(16, "float32")
    first = np_(layer._affine(IMAGES, op, strength, sign))
    both = first @ first
    np.testing.assert_allclose(both[:, 0, 2], 2 * 0.5 * 0.3 * 32, atol=1e-5)
    colour = np_(layer._affine(IMAGES, np.ones(16, "int32"), strength, sign))
    np.testing.assert_allclose(colour, np.broadcast_to(np.eye(3), (16, 3, 3)), atol=1e-6)


def test_random_erasing_changes_one_rectangle():
    out = np_(RandomErasing(1.0, seed=5)(IMAGES, training=True))
    for o, x in zip(out, IMAGES):
        rows, cols = np.nonzero(np.any(o != x, axis=-1))
        assert len(rows) > 0
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert len(rows) > 0.9 * box  # the changed pixels fill their bounding box
    np.testing.assert_array_equal(np_(RandomErasing(0.0)(IMAGES, training=True)), IMAGES)


def test_cutmix_label_weight_is_the_pasted_area():
    targets = np.eye(10, dtype="float32")[np.arange(16) % 10]
    images, mixed = MixUpCutMix(mixup_alpha=0.0, cutmix_alpha=1.0, seed=6)(IMAGES, targets)
    images, mixed = np_(images), np_(mixed)
    np.testing.assert_allclose(mixed.sum(1), 1.0, atol=1e-6)
    partner = IMAGES[::-1]
    for i in range(16):
        from_partner = np.mean(np.all(images[i] == partner[i], -1) & np.any(IMAGES[i] != partner[i], -1))
        own = targets[i] @ mixed[i] if not np.array_equal(targets[i], targets[15 - i]) else None
        if own is not None:
            assert abs((1 - own) - from_partner) < 1e-6


def test_mixup_is_a_convex_combination():
    targets = np.eye(10, dtype="float32")[np.arange(16) % 10]
    images, mixed = MixUpCutMix(mixup_alpha=0.8, cutmix_alpha=0.0, seed=7)(IMAGES, targets)
    lam = np_(mixed)[0] @ targets[0] if targets[0].argmax() != targets[15].argmax() else None
    np.testing.assert_allclose(np_(images)[0], lam * IMAGES[0] + (1 - lam) * IMAGES[15], rtol=1e-4, atol=1e-3)


PER_BATCH_KEYS = ("mixup_alpha", "cutmix_alpha", "mix_prob", "repeats")


def test_recipes_build():
    assert set(AUGMENT_RECIPES) == {"none", "basic", "cutout", "strong", "lee2021"}
    for name in ("strong", "lee2021"):
        layers = build_augmentation(
            **{k: v for k, v in AUGMENT_RECIPES[name].items() if k not in PER_BATCH_KEYS}
        )
        assert [layer.name for layer in layers] == ["rand_augment", "crop_flip", "random_erasing"]
    layers = build_augmentation(
        **{k: v for k, v in AUGMENT_RECIPES["cutout"].items() if k not in PER_BATCH_KEYS}
    )
    assert [layer.name for layer in layers] == ["crop_flip", "random_erasing"]


def test_cutout_erases_one_rectangle_in_every_image():
    """The teacher's cutout recipe: every image loses one rectangle of 2% to 12.5% of its area."""
    recipe = AUGMENT_RECIPES["cutout"]
    erasing = RandomErasing(recipe["erasing"], area=(0.02, recipe["erasing_max_area"]), seed=5)
    flat = np.full((64, 32, 32, 3), -1.0, "float32")  # noise is drawn from 0..255: -1 marks what was kept
    erased = np_(erasing(flat, training=True)) >= 0.0
    pixels = erased[..., 0].reshape(64, -1).sum(1) / (32 * 32)
    assert np.all(pixels > 0.0) and np.all(pixels <= 0.125 + 2 * 33 / 1024), (
        pixels
    )  # rounding to whole pixels
    assert np.array_equal(erased[..., 0], erased[..., 2])  # whole pixels, every channel
    assert (
        build_augmentation(**{k: v for k, v in AUGMENT_RECIPES["none"].items() if k not in PER_BATCH_KEYS})
        == []
    )


def test_mix_prob_leaves_some_batches_clean_and_round_trips():
    targets = np.eye(10, dtype="float32")[np.arange(16) % 10]
    layer = MixUpCutMix(mixup_alpha=1.0, cutmix_alpha=1.0, mix_prob=0.5, seed=3)
    clean = 0
    for _ in range(40):
        images, mixed = layer(IMAGES, targets)
        if np.array_equal(np_(mixed), targets):
            clean += 1
            np.testing.assert_array_equal(np_(images), IMAGES)  # an unmixed batch is untouched
        else:
            np.testing.assert_allclose(np_(mixed).sum(1), 1.0, atol=1e-6)
    assert 8 <= clean <= 32, clean  # about half of 40 (binomial; 8..32 is over 4 sigma)
    assert MixUpCutMix.from_config(layer.get_config()).get_config() == layer.get_config()
    assert not MixUpCutMix(1.0, 1.0, mix_prob=0.0).enabled
    with pytest.raises(ValueError, match="mix_prob"):
        MixUpCutMix(mix_prob=1.5)


@pytest.mark.parametrize("alpha", [0.4, 0.8, 1.0, 2.0])
def test_symmetric_beta_has_the_beta_distribution(alpha):
    samples = np_(symmetric_beta((20000,), alpha, seed=keras.random.SeedGenerator(11)))
    assert samples.dtype == np.float32 and samples.min() >= 0 and samples.max() <= 1
    # Kolmogorov-Smirnov against scipy's Beta; the second check shows that 20,000 samples tell a 15% error in alpha.
    assert stats.kstest(samples, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    wrong = stats.beta(alpha * 1.15, alpha * 1.15).cdf
    assert stats.kstest(samples, wrong).pvalue < 1e-3  # the test can tell a near miss
    with pytest.raises(ValueError, match="positive"):
        symmetric_beta((), 0.0)


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_symmetric_beta_small_alpha_stays_finite(alpha):
    # The gamma samples of so small a shape underflow float32 (a ratio of them would be 0/0); in logarithms
    # they do not. Float32 rounds most samples to 0 or 1 here, so the check is the variance, 1 / (4 (2a + 1)).
    samples = np_(symmetric_beta((20000,), alpha, seed=keras.random.SeedGenerator(5)))
    assert np.isfinite(samples).all() and samples.min() >= 0 and samples.max() <= 1
    np.testing.assert_allclose(samples.var(), 1 / (4 * (2 * alpha + 1)), rtol=0.03)
    assert abs(samples.mean() - 0.5) < 0.02


LOOP_CHECK = """
import jax, keras
from keras_vit.training.augment import MixUpCutMix
import numpy as np
images = np.zeros((4, 8, 8, 3), "float32"); targets = np.eye(4, dtype="float32")
for alphas in [(1.0, 1.0), (0.8, 1.0), (0.2, 0.0)]:
    layer = MixUpCutMix(*alphas, mix_prob=0.5, seed=1)
    layer.build(images.shape)
    state = [v.value for v in layer.non_trainable_variables]
    program = str(jax.make_jaxpr(lambda s: layer.stateless_call([], s, images, targets))(state))
    print(alphas, "random_gamma" in program, "while" in program)
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
def test_mixing_weight_needs_no_rejection_loop_under_jax():
    """jax.random.beta's gamma sampler loops until it accepts: a device sync on a GPU, every step."""
    result = run_python(LOOP_CHECK)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:3] == [
        "(1.0, 1.0) False False",
        "(0.8, 1.0) False False",
        "(0.2, 0.0) False False",
    ]
