"""Epoch-level callbacks: they stop, save and time correctly and keep fit asynchronous."""

import importlib.util
import json

import keras
import numpy as np
import pytest
from conftest import run_python

from keras_vit.training.callbacks import CheckpointError, EpochBackup, EpochTimer, StopOnNaN, TimeLimit


def tiny_model():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    return model


DATA = (np.random.default_rng(0).normal(size=(64, 4)).astype("float32"), np.zeros((64, 1), "float32"))


ASYNC_CHECK = """
import sys, keras
from keras_vit.training.callbacks import EpochBackup, EpochTimer, StopOnNaN, TimeBudget, TimeLimit
ours = [EpochTimer(64), StopOnNaN(), TimeLimit(10.0), TimeBudget(10.0, 1e-3, 5), EpochBackup(sys.argv[1], every=5)]
assert keras.callbacks.CallbackList(ours)._async_train, "ours turn async dispatch off"
# Keras' own NaN guard has a batch hook, which turns async dispatch off:
# what keras_vit.callbacks exists to avoid.
assert not keras.callbacks.CallbackList(ours + [keras.callbacks.TerminateOnNaN()])._async_train
print("ok")
"""


class FakeClock:
    """Seconds that advance only when told to."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


BUDGET_FIT = """
import sys, numpy as np, keras
from keras_vit.training.callbacks import TimeBudget
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


UNMASKED_FIT = """
import numpy as np, keras
from keras_vit import build_vit
from keras_vit.training.callbacks import UnmaskedFinish
keras.utils.set_random_seed(0)
model = build_vit("vit_micro", patch_dropout=0.5)  # 16 patches + CLS; training keeps 8 + CLS
layer = model.get_layer("patch_dropout")
traced = []  # (training, tokens out) each time the layer is traced or run
original = layer.call
def spy(tokens, training=None):
    out = original(tokens, training=training)
    traced.append((bool(training), int(out.shape[1])))
    return out
layer.call = spy
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x = np.random.default_rng(0).uniform(0, 255, (32, 32, 32, 3)).astype("float32"); y = np.arange(32) % 10
finish = UnmaskedFinish(0.5, epochs=4)
history = model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[finish])
train_tokens = [tokens for training, tokens in traced if training]
assert finish.started_epoch == 2 and history.history["unmasked"] == [0.0, 0.0, 1.0, 1.0], history.history
assert train_tokens[0] == 9 and train_tokens[-1] == 17 and sorted(set(train_tokens)) == [9, 17], traced
assert layer.active and np.isfinite(history.history["loss"]).all()
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


def test_stop_on_nan_stops_on_an_infinite_loss():
    for loss in (float("inf"), float("-inf")):
        guard = StopOnNaN()
        guard.set_model(tiny_model())
        guard.on_epoch_end(3, {"loss": loss})
        assert guard.stopped_epoch == 3 and guard.model.stop_training


def test_epoch_backup_never_saves_a_non_finite_epoch(tmp_path):
    model = tiny_model()
    backup = EpochBackup(str(tmp_path / "backup"), delete_checkpoint=False)
    backup.set_model(model)
    backup.on_epoch_end(0, {"loss": 1.0})
    assert EpochBackup.saved_epochs(tmp_path / "backup") == 1
    backup.on_epoch_end(1, {"loss": float("nan")})
    backup.on_epoch_end(2, {"loss": float("inf")})
    assert EpochBackup.saved_epochs(tmp_path / "backup") == 1
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == [
        "checkpoint.json",
        "epoch_00001.weights.h5",
    ]


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
    metadata = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())
    assert metadata == {"epoch": 2, "weights": "epoch_00002.weights.h5", "random_states": []}
    assert EpochBackup.saved_epochs(tmp_path / "ckpt") == 2
    resumed = tiny_model()
    history = resumed.fit(
        *DATA, epochs=3, batch_size=16, callbacks=[EpochBackup(str(tmp_path / "ckpt"), every=2)], verbose=0
    )
    assert len(history.history["loss"]) == 1  # only the third epoch is run again
    assert not (tmp_path / "ckpt").exists()  # deleted once training finished


def noisy_model():
    """A model with a random generator (dropout's), which Keras' weights files leave out."""
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dropout(0.5, seed=3)(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    return model


def _seed_states(model):
    return [keras.ops.convert_to_numpy(v).tolist() for v in model.variables if "seed_generator" in v.path]


def test_epoch_backup_restores_the_random_generators_a_resumed_run_draws_from(tmp_path):
    model = noisy_model()
    model.fit(
        *DATA,
        epochs=2,
        batch_size=16,
        callbacks=[EpochBackup(str(tmp_path / "ckpt"), delete_checkpoint=False)],
        verbose=0,
    )
    trained = _seed_states(model)
    assert trained and trained != _seed_states(noisy_model())  # 8 steps of dropout moved the state
    resumed = noisy_model()
    backup = EpochBackup(str(tmp_path / "ckpt"))
    backup.set_model(resumed)
    backup.on_train_begin()
    assert _seed_states(resumed) == trained
    # A checkpoint whose generators are not the model's is refused, not half restored.
    backup = EpochBackup(str(tmp_path / "ckpt"))
    backup.set_model(tiny_model())
    with pytest.raises(CheckpointError, match="random generators"):
        backup.on_train_begin()


def test_epoch_timer_logs_rates():
    timer = EpochTimer(64)
    history = tiny_model().fit(*DATA, epochs=2, batch_size=16, callbacks=[timer], verbose=0)
    assert len(timer.times) == 2 and all(t > 0 for t in timer.times)
    assert history.history["images_per_second"][1] == pytest.approx(64 / timer.times[1])


def test_time_budget_plans_from_measured_epochs_and_stops_in_budget():
    from keras_vit.training.callbacks import TimeBudget
    from keras_vit.training.schedules import warmup_cosine

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


def test_time_budget_plan_never_exceeds_the_epoch_cap():
    """GPU run 8's teacher planned 97 epochs, was capped at 80 and ended at 12% of its peak rate."""
    from keras_vit.training.callbacks import TimeBudget
    from keras_vit.training.schedules import warmup_cosine

    clock = FakeClock()
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)
    # 100 s at 1 s an epoch after 10 s of compilation would plan 91 epochs; fit is called with 20.
    budget = TimeBudget(100.0, 0.4, planned_epochs=30, warmup=0.2, max_epochs=20, clock=clock)
    assert budget.planned_epochs == 20
    budget.set_model(model)
    budget.on_train_begin()
    for epoch in range(20):
        budget.on_epoch_begin(epoch)
        clock.now += 10.0 if epoch == 0 else 1.0
        budget.on_epoch_end(epoch, {})
        assert budget.planned_epochs == 20
    assert budget.rates[-1] == pytest.approx(0.4 * warmup_cosine(19.5 / 20, 0.2))
    assert budget.rates[-1] < 0.01 * 0.4  # annealed although the budget was not spent
    with pytest.raises(ValueError):
        TimeBudget(10.0, 1e-3, 10, max_epochs=0)


def test_unmasked_finish_replans_the_budget_around_slower_epochs():
    # Masked epochs take 5 s; from the switch on they take 10 s (+ 20 s of recompilation in the first).
    # The budget must re-plan over the slower epochs and still stop inside its seconds, annealed.
    from keras_vit import build_vit
    from keras_vit.training.callbacks import TimeBudget, UnmaskedFinish

    model = build_vit("vit_micro", patch_dropout=0.5)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="mse")
    model.optimizer.build(model.trainable_variables)
    clock = FakeClock()
    budget = TimeBudget(300.0, 1.0, planned_epochs=40, warmup=0.1, clock=clock)
    limit = TimeLimit(310.0, clock=clock)
    finish = UnmaskedFinish(0.2, budget=budget, clocks=[limit], cost_ratio=2.0)
    callbacks = [finish, budget, limit]  # train.py's order: the finish first
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    layer = model.get_layer("patch_dropout")
    epoch, masked_plans = 0, []
    while not model.stop_training:
        for callback in callbacks:
            callback.on_epoch_begin(epoch)
        if finish.started_epoch is None:
            masked_plans.append(budget.planned_epochs)
        assert layer.active == (finish.started_epoch is None)
        clock.now += (
            30.0 if epoch == 0 else 5.0 if layer.active else 30.0 if epoch == finish.started_epoch else 10.0
        )
        logs = {}
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        assert logs["unmasked"] == float(not layer.active)
        epoch += 1
    # 30 s of compilation, then 5 s epochs: 55 epochs fit in 300 s, so the finish starts at 55 - 11 = 44.
    assert masked_plans[-1] == 55 and finish.started_epoch == 44
    # The switch is planned with twice the epoch time, then with the measured 10 s.
    assert clock.now <= 300.0 and budget.stopped_epoch == epoch - 1 and limit.stopped_epoch is None
    unmasked_epochs = epoch - finish.started_epoch
    assert unmasked_epochs == 1 + (300 - 30 - 44 * 5 - 30) // 10  # 3: the recompiling epoch, then 10 s ones
    assert budget.planned_epochs == epoch
    assert budget.rates[-1] < 0.01  # annealed by the end, though the end came sooner than first planned
    for callback in callbacks:
        callback.on_train_end()
    assert layer.active  # switched back for whoever trains next


def test_unmasked_finish_needs_patch_dropout_and_a_length():
    from keras_vit.training.callbacks import UnmaskedFinish

    with pytest.raises(ValueError):
        UnmaskedFinish(0.1)  # neither epochs nor a budget
    with pytest.raises(ValueError):
        UnmaskedFinish(1.0, epochs=10)
    finish = UnmaskedFinish(0.25, epochs=10)
    assert finish.first_unmasked_epoch() == 7  # the last 2.5 epochs, rounded up
    assert UnmaskedFinish(0.01, epochs=10).first_unmasked_epoch() == 9  # at least one
    finish.set_model(tiny_model())
    with pytest.raises(ValueError, match="PatchDropout"):
        finish.on_train_begin()


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
@pytest.mark.parametrize("script", [BUDGET_FIT, UNMASKED_FIT], ids=["time_budget_rate", "unmasked_finish"])
def test_callback_reaches_the_compiled_train_step(script, backend):
    # What the callbacks change between epochs (the rate; the traced graph) must reach the compiled step.
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"needs {backend}")
    result = run_python(script, backend=backend)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
