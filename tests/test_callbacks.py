"""Epoch-level callbacks: they stop, save and time correctly and keep fit asynchronous."""

import importlib.util
import json

import keras
import numpy as np
import pytest
from conftest import run_python

from keras_vit.callbacks import EpochBackup, EpochTimer, StopOnNaN, TimeLimit


def tiny_model():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    return model


DATA = (np.random.default_rng(0).normal(size=(64, 4)).astype("float32"), np.zeros((64, 1), "float32"))


ASYNC_CHECK = """
import sys, keras
from keras_vit.callbacks import EpochBackup, EpochTimer, StopOnNaN, TimeBudget, TimeLimit
ours = [EpochTimer(64), StopOnNaN(), TimeLimit(10.0), TimeBudget(10.0, 1e-3, 5), EpochBackup(sys.argv[1], every=5)]
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
    result = run_python(ASYNC_CHECK, tmp_path / "ckpt")
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


class FakeClock:
    """Seconds that advance only when told to."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_warmup_cosine_shape():
    from keras_vit.callbacks import warmup_cosine

    assert warmup_cosine(0.0, 0.1) == 0.0 and warmup_cosine(0.05, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(0.1, 0.1) == pytest.approx(1.0) and warmup_cosine(1.0, 0.1) == pytest.approx(0.0)
    assert warmup_cosine(0.55, 0.1) == pytest.approx(0.5) and warmup_cosine(1.0, 0.1, 0.2) == pytest.approx(0.2)
    values = [warmup_cosine(p / 100, 0.1) for p in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_time_budget_plans_from_measured_epochs_and_stops_in_budget():
    from keras_vit.callbacks import TimeBudget, warmup_cosine

    clock = FakeClock()
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)
    budget = TimeBudget(100.0, 0.5, planned_epochs=50, warmup=0.2, clock=clock)
    budget.set_model(model)
    budget.on_train_begin()
    epochs = 0
    while not model.stop_training:
        budget.on_epoch_begin(epochs)
        assert float(model.optimizer.learning_rate) == pytest.approx(budget.rates[-1])
        clock.now += 30.0 if epochs == 0 else 7.0  # compilation in the first epoch, then 7 s each
        logs = {}
        budget.on_epoch_end(epochs, logs)
        assert logs["learning_rate"] == budget.rates[-1] and logs["planned_epochs"] == budget.planned_epochs
        epochs += 1
    # 30 s + 10 x 7 s = 100 s: ten steady epochs fit, an eleventh would not.
    assert epochs == 11 and budget.stopped_epoch == 10 and clock.now <= 100.0
    assert budget.planned_epochs == 11
    # Epoch 1 still used the first estimate (epoch 0 held compilation); from epoch 2 on, the measured one.
    assert budget.rates[1] == pytest.approx(0.5 * warmup_cosine(1.5 / 50, 0.2))
    assert budget.rates[2] == pytest.approx(0.5 * warmup_cosine(2.5 / 11, 0.2))
    assert budget.rates[-1] < 0.01 * 0.5  # annealed when the budget ends
    with pytest.raises(ValueError):
        TimeBudget(0, 1e-3, 10)


BUDGET_FIT = """
import sys, numpy as np, keras
from keras_vit.callbacks import TimeBudget
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32"); y = np.ones((64, 1), "float32")
inputs = keras.Input((4,)); model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
ticks = iter(range(1000))  # a clock that advances 1 s per reading: 3 epochs fit in 6.5 s
budget = TimeBudget(6.5, 0.1, planned_epochs=3, warmup=0.0, clock=lambda: float(next(ticks)))
weights = []
class Record(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        weights.append(model.get_weights()[0].copy())
history = model.fit(x, y, epochs=5, batch_size=16, verbose=0, callbacks=[budget, Record()])
assert len(weights) == 3 and budget.stopped_epoch == 2 and history.history["planned_epochs"] == [3, 3, 3]
# The last epoch's rate is 0.1 * (1 + cos(pi * 2.5 / 3)) / 2 = 0.0034: it must be the one used.
assert abs(history.history["learning_rate"][-1] - budget.rates[-1]) < 1e-9, history.history
first = np.abs(weights[1] - weights[0]).max(); last = np.abs(weights[2] - weights[1]).max()
assert last < 0.2 * first, (first, last)
print("ok")
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_time_budget_rate_reaches_the_train_step(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"needs {backend}")
    result = run_python(BUDGET_FIT, backend=backend)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
