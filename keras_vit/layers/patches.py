"""`Patches`: images cut into flattened non-overlapping patches (optionally Shifted Patch Tokenization)."""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.layers.common import PACKAGE, positive_int


@keras.saving.register_keras_serializable(package=PACKAGE)
class Patches(keras.layers.Layer):
    """Cuts images into non-overlapping square patches, flattened row-major.

    Patch `k` of the output is the patch at grid row `k // grid_width`,
    column `k % grid_width`; its vector holds the patch's pixels in
    (row, column, channel) order, the same order as
    `tf.image.extract_patches` but built from reshape/transpose only (no
    Flex op in TFLite, no 6-D tensors).

    With `shifted=True` it is Lee et al. 2021's Shifted Patch Tokenization
    ("Vision Transformer for Small-Size Datasets"): the image is stacked,
    along the channels, with four copies of itself shifted by half a patch
    diagonally (left-up, right-up, left-down, right-down; zeros shifted in),
    before it is cut. Every patch vector then also sees the pixels around
    its patch, a little of the locality a convolution has, for the cost of
    a 5x wider projection input. The shifts are pads and slices: builtin
    TFLite ops.

    Args:
        patch_size: positive int, side of the square patches in pixels
            (a NumPy integer will do; a bool or a float will not). The
            image height and width must both be divisible by it.
        shifted: bool, Shifted Patch Tokenization (default False).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: `patch_size` is not a positive int, or `shifted=True`
            with `patch_size=1`.

    Call arguments:
        images: tensor of shape `(batch, height, width, channels)`.

    Returns:
        Tensor of shape `(batch, num_patches, patch_size * patch_size *
        channels * (5 if shifted else 1))` with `num_patches = (height //
        patch_size) * (width // patch_size)`.
    """

    def __init__(self, patch_size, shifted=False, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = positive_int(patch_size, "patch_size")
        self.shifted = bool(shifted)
        if self.shifted and self.patch_size < 2:
            raise ValueError("shifted=True needs patch_size >= 2 (the shift is half a patch).")

    def _grid(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"Patches expects images of shape (batch, height, width, channels), "
                f"got shape {tuple(input_shape)}."
            )
        _, height, width, channels = input_shape
        if height is None or width is None or channels is None:
            raise ValueError(
                f"Patches needs a known height, width and channel count, got shape {tuple(input_shape)}."
            )
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(
                f"Image size {height}x{width} is not divisible by patch_size={p}: "
                f"choose a patch size that divides both, or resize the images."
            )
        return height // p, width // p, channels

    def build(self, input_shape):
        self._grid(input_shape)

    def _with_shifted_copies(self, images):
        """`images` and its four diagonal half-patch shifts, stacked on the channel axis."""
        _, height, width, _ = images.shape
        s = self.patch_size // 2
        padded = ops.pad(images, ((0, 0), (s, s), (s, s), (0, 0)))
        # The window at (top, left) of the padded image: top 0 moves the
        # content down (the pixels above shift in), top 2s moves it up.
        copies = [images] + [
            padded[:, top : top + height, left : left + width, :]
            for top, left in ((0, 0), (0, 2 * s), (2 * s, 0), (2 * s, 2 * s))
        ]
        return ops.concatenate(copies, axis=-1)

    def call(self, images):
        if self.shifted:
            images = self._with_shifted_copies(images)
        rows, cols, channels = self._grid(images.shape)
        p = self.patch_size
        # (B, H, W, C) -> (B*rows, p, cols, p*C): a pure reshape of the memory.
        x = ops.reshape(images, (-1, p, cols, p * channels))
        # Bring the patch column ahead of the pixel row inside the patch.
        x = ops.transpose(x, (0, 2, 1, 3))
        return ops.reshape(x, (-1, rows * cols, p * p * channels))

    def compute_output_shape(self, input_shape):
        rows, cols, channels = self._grid(input_shape)
        copies = 5 if self.shifted else 1
        return (input_shape[0], rows * cols, self.patch_size**2 * channels * copies)

    def get_config(self):
        config = super().get_config()
        config.update({"patch_size": self.patch_size, "shifted": self.shifted})
        return config
