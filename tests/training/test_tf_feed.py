"""Tests for keras_vit.training.tf_feed."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vit.training.batches import TrainingBatches
from keras_vit.training.tf_feed import fit_input

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a TensorFlow feed")


def _batches(**kwargs):
    images = (np.arange(12)[:, None, None, None] * np.ones((1, 2, 2, 3))).astype("uint8")
    return TrainingBatches(images, np.arange(12), 4, seed=3, **kwargs)


def _labels_of(dataset):
    return [int(label) for _, labels in dataset for label in labels.numpy()]


def test_the_same_batches_in_order_without_autotuning():
    batches = _batches()
    dataset = fit_input(batches)
    assert isinstance(dataset, tf.data.Dataset)
    assert dataset.options().autotune.enabled is False
    assert int(dataset.cardinality()) == len(batches) == 3
    for (inputs, labels), index in zip(dataset, range(len(batches))):
        expected_inputs, expected_labels = batches[index]
        np.testing.assert_array_equal(inputs["images"].numpy(), expected_inputs["images"])
        np.testing.assert_array_equal(inputs["labels"].numpy(), expected_labels)
        np.testing.assert_array_equal(labels.numpy(), expected_labels)
        assert inputs["images"].dtype == tf.uint8


def test_each_new_iterator_sees_the_order_of_its_epoch():
    """A resumed run's `set_epoch` and the epochs' reshuffles reach the pipeline."""
    batches = _batches()
    dataset = fit_input(batches)
    first = _labels_of(dataset)
    batches.set_epoch(1)
    second = _labels_of(dataset)
    assert second != first and sorted(second) == sorted(first)
    assert second == [int(label) for index in range(len(batches)) for label in batches[index][1]]


def test_batches_read_ahead_reach_the_pipeline_in_their_order():
    batches = _batches(readers=2)
    assert _labels_of(fit_input(batches)) == [
        label for index in range(3) for label in batches[index][1].tolist()
    ]


def test_fit_takes_it_for_every_epoch():
    inputs = keras.Input((2, 2, 3), dtype="uint8", name="images")
    labels_input = keras.Input((), dtype="int64", name="labels")
    logits = keras.layers.Dense(12)(keras.layers.Flatten()(keras.ops.cast(inputs, "float32")))
    model = keras.Model({"images": inputs, "labels": labels_input}, logits)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = _batches()
    history = model.fit(fit_input(batches), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
