"""Training batches of one shape, from numpy arrays (no tf.data: runs without TensorFlow)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np


def steps_per_epoch(num_images, batch_size):
    """Steps of an epoch over `num_images` in batches that may end short."""
    return math.ceil(num_images / batch_size)


class _ReadAhead(keras.utils.PyDataset):
    """Batches read ahead in `readers` threads, each read keyed by the order it was read in.

    Keras' own `PyDataset` workers keep what they read ahead when an epoch ends, or when `fit` reads a batch to
    build the model on JAX and PyTorch, and serve it first in the next epoch: batches of the last order in a
    new one. Here a read is kept only while its order is current, so every batch is that of the order set.

    Subclasses hold `images` and `labels` and give `__len__` and `_rows(index)` (the rows of a batch in the
    current order); one that changes its order bumps `_version`.
    """

    def __init__(self, readers=0):
        super().__init__()  # Keras' workers stay off: the reads ahead are this class's
        if readers < 0:
            raise ValueError(f"readers must be 0 or more, got {readers}.")
        self.readers = int(readers)
        self._pool = ThreadPoolExecutor(self.readers, "batch-reader") if self.readers else None
        self._ahead = {}  # (version, index) -> Future of `_read`
        self._version = 0

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        if self._pool is None:
            return self._read(self._rows(index))
        for key in [key for key in self._ahead if key[0] != self._version or key[1] < index]:
            self._ahead.pop(key).cancel()  # of another order, or passed
        for ahead in range(index, min(index + 1 + self.readers, len(self))):
            if (self._version, ahead) not in self._ahead:
                self._ahead[self._version, ahead] = self._pool.submit(self._read, self._rows(ahead))
        return self._ahead.pop((self._version, index)).result()

    def _read(self, rows):
        """The batch of `rows`: `({"images", "labels"}, labels)`."""
        labels = self.labels[rows]
        # np.asarray decodes a streamed data set's batch (`keras_vit.data.streaming.FileImages`) in this thread.
        return {"images": np.asarray(self.images[rows]), "labels": labels}, labels


class TrainingBatches(_ReadAhead):
    """Shuffled training batches of one size only, reshuffled every epoch.

    Under JAX (and with `jit_compile` elsewhere) a batch of a new shape is
    compiled anew, so a short last batch costs a second compilation. So each epoch leaves out the
    `len(images) % batch_size` images that come last in that epoch's
    shuffle: different ones every epoch, so none is left out for good.
    Plain numpy: no tf.data, so it runs on the GPU machine without TensorFlow.

    Args:
        images: array `(num_images, height, width, channels)`.
        labels: int array `(num_images,)`.
        batch_size: int, images per batch; a set smaller than one batch is
            one batch of all its images.
        seed: int, seed of the shuffles: epoch `e` (`set_epoch(e)`) visits
            the images in an order drawn from `(seed, e)` alone, so a run
            resumed at epoch `e` sees the batches an uninterrupted run sees.
            `fit` moves to the next order at each epoch's end, and on JAX and
            PyTorch once more after the batch it reads to build the model: a
            run that must be resumable sets the epoch as each one begins
            (`keras_vit.training.pipeline.fit` does).
        process_index, process_count: this process's share of each batch
            when several processes train together
            (`keras_vit.training.processes.process_share`): every process
            draws the same global batches of `batch_size` images and yields
            rows `[process_index * n, (process_index + 1) * n)` of each, `n =
            batch_size / process_count`. Default: one process, the whole batch.
        readers: int, threads that read the next batches while a step runs
            (a streamed data set, `keras_vit.data.streaming.FileImages`,
            decodes its files there); 0 reads each batch when it is asked for.

    Each item is `({"images": ..., "labels": ...}, labels)`, what
    `ViTTrainer` takes.
    """

    def __init__(self, images, labels, batch_size, seed=0, process_index=0, process_count=1, readers=0):
        super().__init__(readers)
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError(
                f"Need as many labels as images, and at least one: {len(images)} images, "
                f"{len(labels)} labels."
            )
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.images = images
        self.labels = labels
        self.batch_size = min(int(batch_size), len(images))
        self.seed = int(seed)
        if not 0 <= process_index < process_count or self.batch_size % process_count:
            raise ValueError(
                f"process {process_index} of {process_count} cannot take an equal share of a batch of "
                f"{self.batch_size}: the batch size must be a multiple of the process count."
            )
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Orders the images as epoch `epoch` visits them."""
        self.epoch = int(epoch)
        self._order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.images))
        self._version += 1

    def __len__(self):
        return len(self.images) // self.batch_size

    def _rows(self, index):
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        share = self.batch_size // self.process_count
        return rows[self.process_index * share : (self.process_index + 1) * share]

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)


class EvaluationBatches(_ReadAhead):
    """The images in order, in batches of one size (the last may be short): `fit`'s validation data for images
    that are read a batch at a time (a streamed data set).

    Args:
        images: array-like `(num_images, height, width, channels)`; indexing
            it with a slice and `np.asarray` give a batch.
        labels: int array `(num_images,)`.
        batch_size: int.
        readers: int, threads that read the next batches ahead (as `TrainingBatches`').
    """

    def __init__(self, images, labels, batch_size, readers=0):
        super().__init__(readers)
        self.images, self.labels, self.batch_size = images, labels, int(batch_size)

    def __len__(self):
        return steps_per_epoch(len(self.labels), self.batch_size)

    def _rows(self, index):
        return slice(index * self.batch_size, (index + 1) * self.batch_size)


def even_batch_size(num_images, batch_size):
    """The largest batch size up to `batch_size` that divides `num_images`, if at least half of it.

    Evaluation in `fit` (validation) then compiles one batch shape instead of two:
    10,000 test images in batches of 250 rather than 39 of 256 and one of 16.
    Falls back to `batch_size` when no divisor is that close.
    """
    batch_size = min(int(batch_size), num_images)
    for size in range(batch_size, (batch_size + 1) // 2 - 1, -1):
        if size > 0 and num_images % size == 0:
            return size
    return batch_size
