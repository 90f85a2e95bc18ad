"""Images that stay on disk until a batch is read: data sets larger than memory.

`FileImages` is the array `load_image_folder(..., stream=True)` returns in
place of a decoded one: numpy-like (`len`, `shape`, `dtype`, indexing), it
holds file paths only; indexing with a slice or an index array gives another
`FileImages` (no decode), and `np.asarray` or `astype` decodes just those
files with `decode_image`, in a thread pool (Pillow releases the GIL). The
training batches (`keras_vit.training.batches`) read one batch at a time, so
memory stays flat however many files there are. A file that cannot be decoded
raises `UnreadableImageError` and is also recorded (`FileImages.unreadable`,
`first_unreadable`): read inside a tf.data pipeline, the error reaches the
caller wrapped in TensorFlow's, and the record still names the file.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from keras_vit.data.images import decode_image


class UnreadableImageError(ValueError):
    """A file of a streamed data set could not be decoded when its batch was read."""


class FileImages:
    """A `(n, height, width, 3)` uint8 image array whose images are files, decoded when read.

    Args:
        paths: the image files, in array order.
        size: `(height, width)`: every image is resized to it.
        threads: decoding threads (default: the cores, at most 8).
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths, size, threads=None, _failures=None):
        self.paths = np.asarray([os.fspath(p) for p in paths], dtype=object)
        self.size = (int(size[0]), int(size[1]))
        self.threads = threads or min(8, os.cpu_count() or 1)
        # The UnreadableImageErrors raised so far, shared with every slice of this array (a batch is a slice).
        self._failures = [] if _failures is None else _failures

    @property
    def unreadable(self):
        """The first `UnreadableImageError` a read of this array (or of a slice of it) raised, or None."""
        return self._failures[0] if self._failures else None

    @property
    def shape(self):
        return (len(self.paths), *self.size, 3)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self._decode([self.paths[key]])[0]
        if isinstance(key, tuple):
            raise TypeError("FileImages takes one index (a slice, an index array or a mask); decode first")
        return FileImages(self.paths[key], self.size, self.threads, _failures=self._failures)

    def __array__(self, dtype=None, copy=None):
        images = self._decode(self.paths)
        return images if dtype is None else images.astype(dtype)

    def astype(self, dtype, copy=True):
        return np.asarray(self).astype(dtype)

    def _decode(self, paths):
        if not len(paths):
            return np.zeros((0, *self.size, 3), np.uint8)
        with ThreadPoolExecutor(min(self.threads, len(paths))) as pool:
            return np.stack(list(pool.map(self._decode_one, paths)))

    def _decode_one(self, path):
        try:
            return decode_image(path, self.size)
        except Exception as error:  # Pillow raises many types for bad files
            unreadable = UnreadableImageError(f"cannot read {path}: {error}")
            self._failures.append(unreadable)  # list.append is atomic: the decoding threads share it
            raise unreadable from None

    def __repr__(self):
        return f"FileImages({len(self)} files at {self.size[0]}x{self.size[1]})"


def first_unreadable(*arrays):
    """The first `UnreadableImageError` recorded by any of `arrays` that is a `FileImages` (others: skipped), or
    None: what a read inside a tf.data pipeline raised, before TensorFlow wrapped it in its own error."""
    for array in arrays:
        if isinstance(array, FileImages) and array.unreadable is not None:
            return array.unreadable
    return None
