"""Tests for keras_vit.data.images: the one image decoder (training, keras_vit.predict, export.runtime)."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from keras_vit.data import decode_image
from keras_vit.data.images import resize_images


def photo(width, height, seed=0):
    """A smooth RGB test picture (JPEG-friendly), uint8 `(height, width, 3)`."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    waves = [np.sin(x / rng.uniform(5, 40) + y / rng.uniform(5, 40) + c) for c in range(3)]
    return ((np.stack(waves, -1) + 1) * 127.5).astype(np.uint8)


def test_rgb_png_as_it_is_and_resized(tmp_path):
    pixels = photo(20, 12)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    out = decode_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (12, 20, 3)
    np.testing.assert_array_equal(out, pixels)
    assert decode_image(tmp_path / "a.png", (12, 20)).tobytes() == pixels.tobytes()  # right size: untouched
    expected = np.asarray(Image.fromarray(pixels).resize((8, 6), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(decode_image(str(tmp_path / "a.png"), (6, 8)), expected)


def test_16_bit_grayscale_keeps_the_high_byte(tmp_path):
    values = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I;16")  # what the branch is for
    out = decode_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out, np.repeat((values >> 8).astype(np.uint8)[..., None], 3, -1))
    assert out.max() == 255 and len(np.unique(out)) == 256  # not clipped to white


def test_32_bit_grayscale_tiffs_are_read_as_16_bits_or_refused(tmp_path):
    """A 32-bit integer TIFF decoded nearly all white and a float TIFF nearly all black, without a word."""
    values = (np.arange(16 * 16, dtype=np.int32).reshape(16, 16) * 257).astype(np.int32)
    Image.fromarray(values).save(tmp_path / "i32.tif")
    with Image.open(tmp_path / "i32.tif") as im:
        assert im.mode == "I"  # what the branch is for
    out = decode_image(tmp_path / "i32.tif")
    np.testing.assert_array_equal(out, np.repeat((values >> 8).astype(np.uint8)[..., None], 3, -1))
    narrow = np.arange(16 * 16, dtype=np.int32).reshape(16, 16) % 256  # 8-bit values stored in 32 bits
    Image.fromarray(narrow).save(tmp_path / "narrow.tif")
    np.testing.assert_array_equal(
        decode_image(tmp_path / "narrow.tif")[..., 0], narrow
    )  # as they are, not black
    Image.fromarray(values * 1000).save(tmp_path / "wide.tif")
    with pytest.raises(
        ValueError, match=r"32-bit integer \(values beyond 16 bits\) grayscale image has no standard"
    ):
        decode_image(tmp_path / "wide.tif")
    Image.fromarray((values / 65535).astype(np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match="floating-point grayscale image has no standard 8-bit reading"):
        decode_image(tmp_path / "f.tif")


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    image = Image.fromarray(photo(10, 10)).convert(mode)
    if mode == "P":
        image.info["transparency"] = 0  # palette transparency: converted via RGBA, without Pillow's warning
    name = "a.tiff" if mode == "CMYK" else "a.png"
    image.save(tmp_path / name)
    out = decode_image(tmp_path / name, (5, 5))
    assert out.shape == (5, 5, 3) and out.dtype == np.uint8


def test_large_jpeg_is_decoded_in_draft_mode_then_shrunk(tmp_path):
    Image.fromarray(photo(640, 480)).save(tmp_path / "big.jpg", quality=95)
    out = decode_image(tmp_path / "big.jpg", (32, 32))
    with Image.open(tmp_path / "big.jpg") as im:
        im.draft("RGB", (32, 32))  # the DCT scales by 1/8: 80x60, still larger than the target
        assert im.size == (80, 60)
        expected = np.asarray(im.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(out, expected)
    with Image.open(tmp_path / "big.jpg") as im:  # a full decode differs a little, not a lot
        full = np.asarray(im.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC))
    assert np.abs(out.astype(int) - full).mean() < 3


def test_exif_orientation_is_applied(tmp_path):
    pixels = photo(64, 32)  # stored 64 wide, 32 high
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned by 90 degrees: 32 wide, 64 high
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = decode_image(tmp_path / "phone.jpg")
    assert out.shape == (64, 32, 3)
    with Image.open(tmp_path / "phone.jpg") as im:
        np.testing.assert_array_equal(out, np.asarray(ImageOps.exif_transpose(im).convert("RGB")))
    # Resized in the shown orientation; the draft request is turned with the picture.
    assert decode_image(tmp_path / "phone.jpg", (16, 8)).shape == (16, 8, 3)


def test_unreadable_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError):
        decode_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(OSError):
        decode_image(tmp_path / "bad.png")
    Image.fromarray(photo(64, 64)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises((OSError, ValueError)):
        decode_image(tmp_path / "cut.png", (8, 8))


def test_resize_images_resizes_like_decode_image(tmp_path):
    batch = np.stack([photo(32, 32, seed) for seed in range(3)])
    out = resize_images(batch, (48, 40))
    assert out.shape == (3, 48, 40, 3) and out.dtype == np.uint8
    Image.fromarray(batch[1]).save(tmp_path / "one.png")
    np.testing.assert_array_equal(out[1], decode_image(tmp_path / "one.png", (48, 40)))
