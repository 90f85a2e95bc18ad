"""Training batches as a tf.data pipeline without autotuning, for `fit` under TensorFlow."""

from __future__ import annotations

import keras
import numpy as np


def fit_input(batches):
    """What `fit` should take for `batches`: the batches themselves, or under TensorFlow the same batches as a
    tf.data pipeline with autotuning off.

    Under TensorFlow, Keras feeds a `PyDataset` through a tf.data pipeline with an autotuned prefetch and starts a
    new iterator every epoch; deleting the previous one waits for tf.data's autotuning thread, which can be
    asleep for seconds (measured in `docs/experiments/README.md`). The same batches in the same order through a
    pipeline with autotuning off and a fixed prefetch of two do not wait. The other backends take the batches as
    they are.

    Args:
        batches: a `TrainingBatches` (a `keras.utils.PyDataset` of full batches).

    Returns:
        `batches`, or a `tf.data.Dataset` of its items with its length as cardinality. Each new iterator reads
        `batches[0]`, `batches[1]`, ... when it starts, so an order set at the start of an epoch
        (`set_epoch`) is the one that epoch sees.
    """
    if keras.backend.backend() != "tensorflow":
        return batches
    import tensorflow as tf

    def spec(array):
        array = np.asarray(array)
        return tf.TensorSpec((None, *array.shape[1:]), tf.as_dtype(array.dtype))

    signature = tf.nest.map_structure(spec, batches[0])

    def generate():
        for index in range(len(batches)):
            yield batches[index]

    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(batches)))
    return dataset.prefetch(2).with_options(options)
