"""Training batches of one shape, from numpy arrays (no tf.data: runs without TensorFlow)."""

from __future__ import annotations

import math

import keras
import numpy as np


def steps_per_epoch(num_images, batch_size):
    """Steps of an epoch over `num_images` in batches that may end short."""
    return math.ceil(num_images / batch_size)


class TrainingBatches(keras.utils.PyDataset):
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
        seed: int, seed of the shuffles: epoch `e` visits the images in an
            order drawn from `(seed, e)` alone, so a run resumed at epoch `e`
            (`set_epoch`) sees the batches an uninterrupted run sees.
        process_index, process_count: this process's share of each batch
            when several processes train together
            (`keras_vit.training.processes.process_share`): every process
            draws the same global batches of `batch_size` images and yields
            rows `[process_index * n, (process_index + 1) * n)` of each, `n =
            batch_size / process_count`. Default: one process, the whole batch.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`, ...).

    Each item is `({"images": ..., "labels": ...}, labels)`, what
    `ViTTrainer` takes.
    """

    def __init__(self, images, labels, batch_size, seed=0, process_index=0, process_count=1, **kwargs):
        super().__init__(**kwargs)
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

    def __len__(self):
        return len(self.images) // self.batch_size

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        share = self.batch_size // self.process_count
        rows = rows[self.process_index * share : (self.process_index + 1) * share]
        labels = self.labels[rows]
        # np.asarray decodes a streamed data set's batch (`keras_vit.data.streaming.FileImages`).
        return {"images": np.asarray(self.images[rows]), "labels": labels}, labels

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)


class EvaluationBatches(keras.utils.PyDataset):
    """The images in order, in batches of one size (the last may be short): `fit`'s validation data for images
    that are read a batch at a time (a streamed data set).

    Args:
        images: array-like `(num_images, height, width, channels)`; indexing
            it with a slice and `np.asarray` give a batch.
        labels: int array `(num_images,)`.
        batch_size: int.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`, ...).
    """

    def __init__(self, images, labels, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels, self.batch_size = images, labels, int(batch_size)

    def __len__(self):
        return steps_per_epoch(len(self.labels), self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        labels = self.labels[rows]
        return {"images": np.asarray(self.images[rows]), "labels": labels}, labels


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
