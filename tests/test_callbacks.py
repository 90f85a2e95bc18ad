"""Epoch-level callbacks: they stop, save and time correctly and keep fit asynchronous."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_vit.callbacks import EpochBackup, EpochTimer, StopOnNaN, TimeLimit


def tiny_model():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    return model


DATA = (np.random.default_rng(0).normal(size=(64, 4)).astype("float32"), np.zeros((64, 1), "float32"))


ASYNC_CHECK = """
import sys, keras
from keras_vit.callbacks import EpochBackup, EpochTimer, StopOnNaN, TimeLimit
ours = [EpochTimer(64), StopOnNaN(), TimeLimit(10.0), EpochBackup(sys.argv[1], every=5)]
assert keras.callbacks.CallbackList(ours)._async_train, "ours turn async dispatch off"
# Keras' own NaN guard has a batch hook, which turns async dispatch off:
# what keras_vit.callbacks exists to avoid.
assert not keras.callbacks.CallbackList(ours + [keras.callbacks.TerminateOnNaN()])._async_train
print("ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
def test_epoch_callbacks_keep_async_dispatch(tmp_path):
    # Keras dispatches batch hooks asynchronously only on thread-safe
    # backends (JAX, PyTorch; not TensorFlow): check under JAX, the GPU path.
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-c", ASYNC_CHECK, str(tmp_path / "ckpt")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_stop_on_nan_stops_at_epoch_end():
    guard = StopOnNaN()
    guard.set_model(tiny_model())
    guard.on_epoch_end(0, {"loss": 1.0})
    assert guard.stopped_epoch is None and not guard.model.stop_training
    guard.on_epoch_end(1, {"loss": float("nan")})
    assert guard.stopped_epoch == 1 and guard.model.stop_training


def test_time_limit_stops_fit_early():
    limit = TimeLimit(1e-3)
    history = tiny_model().fit(*DATA, epochs=5, batch_size=16, callbacks=[limit], verbose=0)
    assert len(history.history["loss"]) == 1 and limit.stopped_epoch == 0
    generous = TimeLimit(3600)
    history = tiny_model().fit(*DATA, epochs=3, batch_size=16, callbacks=[generous], verbose=0)
    assert len(history.history["loss"]) == 3 and generous.stopped_epoch is None
    with pytest.raises(ValueError):
        TimeLimit(0)


def test_epoch_backup_saves_every_n_epochs_and_records_the_next_epoch(tmp_path):
    backup = EpochBackup(str(tmp_path / "ckpt"), every=2, delete_checkpoint=False)
    tiny_model().fit(*DATA, epochs=3, batch_size=16, callbacks=[backup], verbose=0)
    # Saved after epochs 2 (not 1, not 3): a resumed run starts at epoch index 2.
    metadata = json.loads((tmp_path / "ckpt" / "training_metadata.json").read_text())
    assert metadata["epoch"] == 2
    resumed = tiny_model()
    history = resumed.fit(*DATA, epochs=3, batch_size=16,
                          callbacks=[EpochBackup(str(tmp_path / "ckpt"), every=2)], verbose=0)
    assert len(history.history["loss"]) == 1  # only the third epoch is run again
    assert not (tmp_path / "ckpt").exists()  # deleted once training finished


def test_epoch_timer_logs_rates():
    timer = EpochTimer(64)
    history = tiny_model().fit(*DATA, epochs=2, batch_size=16, callbacks=[timer], verbose=0)
    assert len(timer.times) == 2 and all(t > 0 for t in timer.times)
    assert history.history["images_per_second"][1] == pytest.approx(64 / timer.times[1])
