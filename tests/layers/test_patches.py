"""keras_vit.layers.patches: patch order against a numpy reference, Shifted Patch Tokenization."""

import re

import keras
import numpy as np
import pytest

from keras_vit.layers import Patches

from .layer_checks import assert_round_trip, cases_for, check_case


@pytest.mark.parametrize("case", cases_for(Patches), ids=str)
def test_shared_layer_checks(case, tmp_path):
    check_case(case, tmp_path)


def numpy_patches(images, p):
    """Reference: loop over the grid row-major, flatten each patch (row, col, channel)."""
    b, h, w, c = images.shape
    out = []
    for r in range(h // p):
        for q in range(w // p):
            out.append(images[:, r * p : (r + 1) * p, q * p : (q + 1) * p, :].reshape(b, -1))
    return np.stack(out, axis=1)


@pytest.mark.parametrize("shape,p", [((2, 32, 32, 3), 4), ((3, 24, 40, 3), 8), ((1, 6, 9, 1), 3)])
def test_patches_match_numpy_reference(shape, p):
    images = np.random.default_rng(0).uniform(size=shape).astype("float32")
    out = keras.ops.convert_to_numpy(Patches(p)(images))
    np.testing.assert_array_equal(out, numpy_patches(images, p))
    assert out.shape == (shape[0], (shape[1] // p) * (shape[2] // p), p * p * shape[3])


def test_patches_row_major_order():
    # Each pixel holds its own (row, col): patch k must come from grid row k // cols.
    rows, cols = np.meshgrid(np.arange(8), np.arange(12), indexing="ij")
    image = np.stack([rows, cols, np.zeros_like(rows)], -1)[None].astype("float32")
    out = keras.ops.convert_to_numpy(Patches(4)(image))[0]
    for k in range(out.shape[0]):
        top_left = out[k, :3]
        assert tuple(top_left[:2]) == (4 * (k // 3), 4 * (k % 3))


def test_patches_rejects_sizes_it_cannot_cut():
    with pytest.raises(ValueError, match=r"30x32.*patch_size=4"):
        Patches(4)(np.zeros((1, 30, 32, 3), "float32"))
    with pytest.raises(ValueError):
        Patches(0)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: Patches(0), "`patch_size` must be a positive int, got 0."),
        (lambda: Patches(-4), "`patch_size` must be a positive int, got -4."),
        # Refused, not truncated to 2 or taken as 1.
        (lambda: Patches(2.5), "`patch_size` must be a positive int, got 2.5."),
        (lambda: Patches(4.0), "`patch_size` must be a positive int, got 4.0."),
        (lambda: Patches(True), "`patch_size` must be a positive int, got True."),
        (lambda: Patches(1, shifted=True), "shifted=True needs patch_size >= 2 (the shift is half a patch)."),
        (
            lambda: Patches(4).build((1, 32, 32)),
            "Patches expects images of shape (batch, height, width, channels), got shape (1, 32, 32).",
        ),
        *[
            (
                lambda shape=shape: Patches(4).build(shape),
                f"Patches needs a known height, width and channel count, got shape {shape}.",
            )
            for shape in [(1, None, 32, 3), (1, 32, None, 3), (1, 32, 32, None)]
        ],
    ],
)
def test_patches_errors_say_what_is_wrong_in_one_line(make, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make()


def test_patches_take_a_numpy_integer_and_save_a_python_int():
    layer = Patches(np.int64(4))
    assert layer.patch_size == 4 and type(layer.patch_size) is int
    assert Patches.from_config(layer.get_config()).patch_size == 4


@pytest.mark.parametrize("p", [2, 4, 3])
def test_shifted_patches_stack_four_diagonal_half_patch_shifts(p):
    """Shifted Patch Tokenization: the image, then the windows of its zero-padded copy at (0,0), (0,2s),
    (2s,0), (2s,2s)."""
    images = np.random.default_rng(2).uniform(1, 2, size=(2, 12, 24, 3)).astype("float32")
    s = p // 2
    padded = np.pad(images, ((0, 0), (s, s), (s, s), (0, 0)))
    stacked = np.concatenate(
        [images]
        + [padded[:, t : t + 12, c : c + 24] for t, c in ((0, 0), (0, 2 * s), (2 * s, 0), (2 * s, 2 * s))],
        axis=-1,
    )
    out = keras.ops.convert_to_numpy(Patches(p, shifted=True)(images))
    np.testing.assert_array_equal(out, numpy_patches(stacked, p))
    assert out.shape == Patches(p, shifted=True).compute_output_shape(images.shape)
    # The first copy's window (0, 0) is the image moved s pixels down and right, zeros shifted in.
    moved = stacked[..., 3:6]
    np.testing.assert_array_equal(moved[:, s:, s:], images[:, :-s, :-s])
    assert not moved[:, :s].any() and not moved[:, :, :s].any()
    with pytest.raises(ValueError, match="patch_size >= 2"):
        Patches(1, shifted=True)


def test_patches_round_trip():
    assert_round_trip(Patches(4, name="p"), np.random.rand(2, 8, 8, 3).astype("float32"))
    assert_round_trip(Patches(4, shifted=True, name="p"), np.random.rand(2, 8, 8, 3).astype("float32"))
    # Files saved before `shifted` existed have no such key: they get plain patches.
    config = Patches(4).get_config()
    del config["shifted"]
    assert Patches.from_config(config).shifted is False
