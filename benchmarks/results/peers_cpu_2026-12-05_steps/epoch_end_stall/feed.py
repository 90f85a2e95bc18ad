"""Which way of feeding `fit` pauses at epoch ends? vit_tiny, TensorFlow, per-epoch images/s.

    python feed.py VARIANT [STEPS_PER_EPOCH [EPOCHS]]

VARIANT: arrays (NumPy arrays, as benchmarks/throughput.py), pydataset (TrainingBatches, as
`python -m keras_vit.train`), pydataset_workers2 (Keras' enqueuer, which turns tf.data's autotuning off),
tfdata_noautotune (a tf.data pipeline of the same batches with autotuning off).
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = Path(__file__).resolve().parents[4]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from throughput import make_trainer  # noqa: E402

from keras_vit import build_vit  # noqa: E402
from keras_vit.training.batches import TrainingBatches  # noqa: E402
from keras_vit.training.callbacks import EpochTimer  # noqa: E402
from keras_vit.training.optimizers import make_optimizer  # noqa: E402
from keras_vit.training.recipes import training_recipe  # noqa: E402


def feed(variant, images, labels, batch):
    """`fit`'s arguments for VARIANT."""
    if variant == "arrays":
        return dict(x={"images": images, "labels": labels}, y=labels, batch_size=batch)
    if variant == "pydataset":
        return dict(x=TrainingBatches(images, labels, batch))
    if variant == "pydataset_workers2":
        return dict(x=TrainingBatches(images, labels, batch, workers=2))
    batches = TrainingBatches(images, labels, batch)
    spec = (
        {"images": tf.TensorSpec((batch, 32, 32, 3), tf.uint8), "labels": tf.TensorSpec((batch,), tf.int32)},
        tf.TensorSpec((batch,), tf.int32),
    )
    options = tf.data.Options()
    options.autotune.enabled = False
    generator = lambda: (batches[i] for i in range(len(batches)))  # noqa: E731
    dataset = tf.data.Dataset.from_generator(generator, output_signature=spec)
    return dict(x=dataset.prefetch(2).with_options(options))


def main():
    variant = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 9
    batch = 128
    trainer = make_trainer(build_vit("vit_tiny"), training_recipe("none", 1), label_smoothing=0.1, seed=0)
    trainer.compile(
        optimizer=make_optimizer("adamw", 1e-3),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch * steps, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, batch * steps).astype("int32")
    clock = EpochTimer(batch * steps)
    trainer.fit(**feed(variant, images, labels, batch), epochs=epochs, callbacks=[clock], verbose=0)
    rates = [round(batch * steps / seconds) for seconds in clock.times[1:]]
    print(json.dumps({"variant": variant, "median": float(np.median(rates)), "epochs": rates}))


if __name__ == "__main__":
    main()
