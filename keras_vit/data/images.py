"""The one image decoder: an image file -> uint8 RGB pixels at the model's size.

Training (`keras_vit.data.load_image_folder`), `keras_vit.predict` and the
TF-free deployment runtime (`export.runtime`) all read images with
`decode_image`, so that a photo reaches Keras and an exported file as the
same pixels. numpy and Pillow only.
"""

from __future__ import annotations

import os
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageOps

from keras_vit.cli_utils import first_line

PathLike = Union[str, "os.PathLike[str]"]

# EXIF orientation tag; values 5-8 turn the picture by 90 degrees.
_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


def decode_image(path: PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decodes one image file to uint8 RGB, resized to `size` if given.

    - JPEG files are decoded at a reduced scale when the image is at least
      twice the requested size (Pillow's draft mode: the DCT scales by 1/2,
      1/4 or 1/8, never below `size`), then resized: much faster for photos,
      and the final resize still only shrinks.
    - The EXIF orientation of phone photos is applied.
    - 16-bit grayscale keeps its high byte (a plain conversion to RGB would
      clip every value above 255 to white); so does 32-bit integer grayscale
      (a TIFF) whose values fit in 16 bits, unless they fit in 8 (read as
      they are).
    - Grayscale, palette, CMYK and RGBA images become RGB (alpha dropped).
    - Images of another size are resized with bicubic resampling, without
      keeping the aspect ratio.

    Args:
        path: the image file.
        size: `(height, width)` to resize to, or `None` to keep the size.

    Returns:
        uint8 array `(height, width, 3)`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        OSError, ValueError (from Pillow, e.g. `PIL.UnidentifiedImageError`):
            if the file is not a readable image (corrupt, truncated).
        ValueError: a floating-point image, or 32-bit integers beyond 16
            bits: no 8-bit reading of them is standard (a conversion would
            clip them to white or black).
    """
    with Image.open(path) as im:
        orientation = im.getexif().get(_ORIENTATION, 1)
        if size is not None:
            height, width = size
            if orientation in _TRANSPOSED_ORIENTATIONS:  # the stored picture is turned: so is the request
                height, width = width, height
            im.draft("RGB", (width, height))  # a no-op for formats other than JPEG
        im.load()  # raises here for truncated or corrupt files
        if orientation != 1:
            im = ImageOps.exif_transpose(im)
        if im.mode.startswith("I;16"):
            im = Image.fromarray((np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8))
        elif im.mode in ("I", "F"):
            im = Image.fromarray(_high_byte_of_16_bits(np.asarray(im), im.mode))
        elif im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")  # avoids Pillow's palette-transparency warning
        if im.mode != "RGB":
            im = im.convert("RGB")
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.Resampling.BICUBIC)
        return np.asarray(im, dtype=np.uint8)


def _high_byte_of_16_bits(pixels: np.ndarray, mode: str) -> np.ndarray:
    """A 32-bit grayscale image (Pillow's mode `I` or `F`) as 8 bits: values of 0..255 as they are, 16-bit values
    by their high byte."""
    high = pixels.max()
    if mode == "F" or pixels.min() < 0 or high > 65535:
        kind = "floating-point" if mode == "F" else "32-bit integer (values beyond 16 bits)"
        raise ValueError(f"a {kind} grayscale image has no standard 8-bit reading; save it with 8 or 16 bits")
    if high <= 255:  # 8-bit values stored wide (what Pillow's own conversion read right)
        return pixels.astype(np.uint8)
    return (pixels.astype(np.uint32) >> 8).astype(np.uint8)


def decode_images(
    paths: Sequence[PathLike], size: tuple[int, int]
) -> tuple[np.ndarray | None, list[PathLike], list[dict]]:
    """Decodes image files at one size, each unreadable one reported and left out rather than fatal.

    What `keras_vit.predict` and the deployment runtime (`export.runtime`)
    classify: a missing, corrupt or oversized file (Pillow's
    `DecompressionBombError`), a directory or a symbolic-link loop is one
    error, and the other images are still decoded.

    Args:
        paths: image files.
        size: `(height, width)`.

    Returns:
        `(images, readable, errors)`: uint8 images `(n, height, width, 3)` of
        the readable files (`None` if there is none), those paths, and one
        `{"image": path, "error": reason}` dict per unreadable file, in order.
    """
    size = tuple(int(v) for v in size)
    images, readable, errors = [], [], []
    for path in paths:
        try:
            images.append(decode_image(path, size))
            readable.append(path)
        except Exception as e:  # Pillow raises many types for bad files: OSError, ValueError, SyntaxError...
            missing = isinstance(e, FileNotFoundError) and not os.path.lexists(path)
            reason = "file does not exist" if missing else first_line(e, with_type=True)
            errors.append({"image": str(path), "error": reason})
    return (np.stack(images) if images else None), readable, errors


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes a batch of uint8 images with Pillow's bicubic filter, as `decode_image` resizes one file.

    Args:
        images: uint8 array `(n, height, width, channels)`.
        size: `(height, width)` to resize to.

    Returns:
        uint8 array `(n, size[0], size[1], channels)`.
    """
    height, width = (int(v) for v in size)
    out = np.empty((len(images), height, width, images.shape[-1]), np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))
    return out
