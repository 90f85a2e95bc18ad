"""Epoch-level callbacks: they stop, save and time correctly and keep fit asynchronous."""

import errno
import importlib.util
import io
import json
import pathlib
import sys
import types

import keras
import numpy as np
import pytest
from conftest import run_python

from keras_vit import files
from keras_vit.layers import PatchDropout
from keras_vit.training import callbacks
from keras_vit.training.callbacks import (
    CheckpointError,
    EpochBackup,
    EpochTimer,
    StopOnNaN,
    TimeBudget,
    TimeLimit,
    UnmaskedFinish,
)
from keras_vit.training.schedules import warmup_cosine


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
    assert metadata == {
        "epoch": 2,
        "weights": "epoch_00002.weights.h5",
        "random_states": [],
        "callbacks": {},
        "length": None,  # no length given
        "resumes": [],  # trained in one go so far
    }
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
        assert epochs < 100, "the budget never stopped training"
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
        assert epoch < 200, "the budget never stopped training"
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


def _budgeted_run(start=0, until=None, saved=None, compile_seconds=30.0):
    """Epochs `start`, `start + 1`, ... of a 300 s budget with an unmasked finish, on a fake clock (train.py's
    callbacks and order: 30 s of compilation in a fit's first epoch, then 5 s masked and 10 s unmasked epochs).
    `saved`: the callbacks' states of a checkpoint to resume from; `until`: the epoch after which to take them
    (a checkpoint) and stop. Returns `(callbacks, {epoch: (rate, planned epochs, unmasked)}, states)`."""
    from keras_vit import build_vit
    from keras_vit.training.callbacks import UnmaskedFinish

    model = build_vit("vit_micro", patch_dropout=0.5)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="mse")
    model.optimizer.build(model.trainable_variables)
    clock = FakeClock()
    budget = TimeBudget(300.0, 1.0, planned_epochs=40, warmup=0.1, clock=clock)
    limit = TimeLimit(310.0, clock=clock)
    finish = UnmaskedFinish(0.2, budget=budget, clocks=[limit], cost_ratio=2.0)
    callbacks = [finish, budget, limit]
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    for callback in callbacks if saved else ():  # EpochBackup.on_train_begin, after theirs
        callback.set_state(json.loads(json.dumps(saved[callback.state_name])))  # through the JSON file
    layer, epoch, seen = model.get_layer("patch_dropout"), start, {}
    while not model.stop_training:
        for callback in callbacks:
            callback.on_epoch_begin(epoch)
        clock.now += (compile_seconds if epoch == start else 0.0) + (5.0 if layer.active else 10.0)
        clock.now += 20.0 if epoch == finish.started_epoch else 0.0  # the switch recompiles
        for callback in callbacks:
            callback.on_epoch_end(epoch, {})
        seen[epoch] = (budget.rates[-1], budget.planned_epochs, not layer.active)
        if epoch == until:
            return callbacks, seen, {callback.state_name: callback.get_state() for callback in callbacks}
        epoch += 1
    return callbacks, seen, None


@pytest.mark.parametrize("checkpoint_epoch", [41, 43], ids=["masked", "unmasked"])
def test_a_resumed_budgeted_run_goes_on_with_the_schedule_and_clock_it_stopped_with(checkpoint_epoch):
    """Killed after the checkpoint of an epoch past the first estimate (40 epochs), the resumed run keeps the
    plan, the seconds spent and the unmasked finish: its rates are the uninterrupted run's until its extra
    compilation shortens the plan, and it ends annealed, inside the budget counted from the first start."""
    (whole_finish, _, _), whole, _ = _budgeted_run()
    _, before, states = _budgeted_run(until=checkpoint_epoch)
    (finish, budget, limit), after, _ = _budgeted_run(start=checkpoint_epoch + 1, saved=states)
    assert {epoch: whole[epoch] for epoch in before} == before
    resumed = checkpoint_epoch + 1
    assert after[resumed] == whole[resumed]  # the rate of the plan it had, not the first estimate's 0
    if checkpoint_epoch >= whole_finish.started_epoch:  # killed after the finish began: it goes on unmasked
        assert all(unmasked for _, _, unmasked in after.values())
        assert finish.started_epoch == whole_finish.started_epoch  # and says when it began
    else:  # the plan, shortened by the second compilation, starts it no later
        assert checkpoint_epoch < finish.started_epoch <= whole_finish.started_epoch
    assert budget.stopped_epoch is not None and budget.rates[-1] < 0.01  # annealed
    # The resumed fit compiled again (30 s): the budget, counted from the first start, holds a few fewer epochs.
    assert max(whole) - 6 <= max(after) <= max(whole)
    # The seconds before the kill count: the last epoch started inside the 300 s from the first start (it may end
    # past them: the resumed fit's compilation is foreseen by no clock, and the time limit may stop it too).
    assert budget._elapsed(budget.clock()) == states["time_budget"]["seconds"] + budget.clock()
    assert budget._elapsed(budget._epoch_start) < 300.0 and limit._elapsed(0.0) == budget._elapsed(0.0)


def test_a_clocks_checkpoint_state_reads_no_clock():
    """In a job of several processes the clock is a collective and only process 0 writes the checkpoint: a
    reading in `get_state` would wait for the other processes forever. The state holds the epoch end's reading."""
    clock = FakeClock()
    limit = TimeLimit(100.0, clock=clock)
    limit.set_model(tiny_model())
    limit.on_train_begin()
    limit.on_epoch_begin(0)
    clock.now += 7.0
    limit.on_epoch_end(0, {})

    def no_reading():
        raise AssertionError("get_state read the clock")

    limit.clock = no_reading
    assert limit.get_state()["seconds"] == 7.0


def test_epoch_backup_saves_and_restores_the_state_of_its_resumable_callbacks(tmp_path):
    class Counter(keras.callbacks.Callback):
        state_name = "counter"

        def __init__(self):
            super().__init__()
            self.epochs, self.restored = 0, None

        def on_epoch_end(self, epoch, logs=None):
            self.epochs += 1

        def get_state(self):
            return {"epochs": self.epochs}

        def set_state(self, state):
            self.restored = state

    counter = Counter()
    backup = EpochBackup(str(tmp_path / "ckpt"), delete_checkpoint=False, resumable=[counter, None])
    tiny_model().fit(*DATA, epochs=2, batch_size=16, callbacks=[counter, backup], verbose=0)
    metadata = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())
    assert metadata["callbacks"] == {"counter": {"epochs": 2}}
    resumed = Counter()
    backup = EpochBackup(str(tmp_path / "ckpt"), resumable=[resumed])
    backup.set_model(tiny_model())
    backup.on_train_begin()
    assert resumed.restored == {"epochs": 2}


def test_epoch_backup_records_the_run_it_belongs_to(tmp_path):
    # What identifies the run goes into checkpoint.json, for the command to compare before it resumes.
    run = {"class names": ["a", "b"], "image size": [24, 24]}
    backup = EpochBackup(str(tmp_path / "ckpt"), delete_checkpoint=False, run=run)
    tiny_model().fit(*DATA, epochs=1, batch_size=16, callbacks=[backup], verbose=0)
    assert EpochBackup.saved_run(tmp_path / "ckpt") == run
    # A checkpoint written before runs were recorded, and no checkpoint at all: nothing to compare.
    metadata = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())
    del metadata["run"]
    (tmp_path / "ckpt" / "checkpoint.json").write_text(json.dumps(metadata))
    assert EpochBackup.saved_run(tmp_path / "ckpt") is None
    assert EpochBackup.saved_run(tmp_path / "none") is None


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
def test_callback_reaches_the_compiled_train_step(backend):
    # What the callbacks change between epochs (the rate; the traced graph) must reach the compiled step: both
    # scripts in one child process per backend, each in a namespace of its own.
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"needs {backend}")
    result = run_python(f"exec({BUDGET_FIT!r}, {{}}); exec({UNMASKED_FIT!r}, {{}})", backend=backend)
    assert result.returncode == 0 and result.stdout.splitlines().count("ok") == 2, result.stderr[-3000:]


# What the mutation tests of keras_vit/training/callbacks.py showed the tests above leave unchecked: the
# messages, the test hooks' names, the plan's arithmetic at its edges, the checkpoint's housekeeping.


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch):
    # pause_point() only stops a process when $KERAS_VIT_TEST_PAUSE_AT names its moment: none of these tests
    # pauses, whatever the environment they run in.
    monkeypatch.setenv(files.PAUSE_ENV, "no-pause-in-test-callbacks")


class FlushedStream(io.StringIO):
    """A stdout that remembers what had been flushed (a log file read while the run goes on sees only that)."""

    flushed = ""

    def flush(self):
        self.flushed = self.getvalue()


def flushed_stdout(monkeypatch):
    """Replaces sys.stdout for the rest of the test (pytest sets its own before the test's body runs)."""
    stream = FlushedStream()
    monkeypatch.setattr(sys, "stdout", stream)
    return stream


def test_epoch_timer_times_each_epoch_and_names_its_pause_points(monkeypatch):
    readings = iter([100.0, 104.0, 200.0, 202.0])
    monkeypatch.setattr(callbacks, "time", types.SimpleNamespace(perf_counter=lambda: next(readings)))
    paused = []
    monkeypatch.setattr(callbacks, "pause_point", paused.append)
    timer = EpochTimer(64)
    timer.on_epoch_begin(0)
    logs = {}
    timer.on_epoch_end(0, logs)
    assert logs == {"epoch_seconds": 4.0, "images_per_second": 16.0}
    timer.on_epoch_begin(4)
    timer.on_epoch_end(4, None)  # no logs: still timed
    assert timer.times == [4.0, 2.0]
    # The crash-safety tests kill a run at "epoch-begin:<1-based epoch>".
    assert paused == ["epoch-begin:1", "epoch-begin:5"]


def test_stop_on_nan_says_which_epoch_and_flushes_it(monkeypatch):
    stdout = flushed_stdout(monkeypatch)
    guard = StopOnNaN()
    guard.set_model(tiny_model())
    guard.on_epoch_end(0, None)  # no logs: nothing to judge
    guard.on_epoch_end(1, {"loss": float("nan")})
    assert stdout.flushed == stdout.getvalue() == "\nEpoch 2: the loss is nan; stopping.\n"


def test_time_limit_and_budget_say_why_they_stop_and_flush_it(monkeypatch):
    stdout = flushed_stdout(monkeypatch)
    clock = FakeClock()
    limit = TimeLimit(90.0, clock=clock)
    limit.set_model(tiny_model())
    limit.on_train_begin()
    limit.on_epoch_begin(0)
    clock.now += 50.0  # 50 s done, another 50 s epoch would end at 100 s
    limit.on_epoch_end(0)
    assert limit.stopped_epoch == 0 and limit.model.stop_training
    assert stdout.flushed == "\nEpoch 1: the next epoch would pass the 90 s time limit; stopping.\n"
    clock = FakeClock()
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)
    budget = TimeBudget(100.0, 0.1, planned_epochs=3, clock=clock)
    budget.set_model(model)
    budget.on_train_begin()
    for epoch in range(2):
        budget.on_epoch_begin(epoch)
        clock.now += 40.0
        budget.on_epoch_end(epoch, {})
    assert budget.stopped_epoch == 1
    assert stdout.flushed.endswith("\nEpoch 2: the 100 s budget is spent; stopping.\n")
    with pytest.raises(ValueError, match=r"^seconds must be positive, got 0\.$"):
        TimeLimit(0)


def test_time_budget_checks_its_arguments_at_their_edges():
    message = r"^need planned_epochs >= 1, 0 <= warmup < 1 and max_epochs >= 1 or None; got {}\.$"
    with pytest.raises(ValueError, match=message.format(r"0, 0\.1, None")):
        TimeBudget(10.0, 1e-3, 0)
    with pytest.raises(ValueError, match=message.format(r"5, 1\.0, None")):
        TimeBudget(10.0, 1e-3, 5, warmup=1.0)
    with pytest.raises(ValueError, match=message.format(r"5, 0\.1, 0")):
        TimeBudget(10.0, 1e-3, 5, max_epochs=0)
    # The edges that are allowed: one planned epoch, no warmup, a cap of one epoch; warmup defaults to 10%.
    assert TimeBudget(10.0, 1e-3, 1).planned_epochs == 1
    assert TimeBudget(10.0, 1e-3, 5).warmup == 0.1
    assert TimeBudget(10.0, 1e-3, 5, warmup=0.0).warmup == 0.0
    assert TimeBudget(10.0, 1e-3, 5, max_epochs=1).planned_epochs == 1


def run_budget(budget, model, clock, epoch_seconds, before_epoch=None):
    """Runs `budget`'s hooks over epochs of the given lengths; returns the plan at each epoch start."""
    budget.set_model(model)
    budget.on_train_begin()
    plans = []
    for epoch, seconds in enumerate(epoch_seconds):
        if before_epoch:
            before_epoch(epoch)
        budget.on_epoch_begin(epoch)
        plans.append(budget.planned_epochs)
        assert float(model.optimizer.learning_rate) == pytest.approx(budget.rates[-1])
        clock.now += seconds
        budget.on_epoch_end(epoch, {})
    return plans


def test_time_budget_replans_over_a_change_of_speed():
    # A real clock does not start at 0; the rate anneals to final_fraction of the peak.
    clock = FakeClock()
    clock.now = 1000.0
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)
    budget = TimeBudget(200.0, 1.0, planned_epochs=10, warmup=0.0, final_fraction=0.1, clock=clock)

    def switch(epoch):
        if epoch == 3:  # what UnmaskedFinish does: epochs from now on take twice as long
            budget.expect_new_epoch_time(2.0)

    # 30 s of compilation, 5 s epochs; after the switch a 30 s recompiling epoch, then 12 s ones.
    plans = run_budget(budget, model, clock, [30.0, 5.0, 5.0, 30.0, 12.0, 1.0], switch)
    # Epochs 0-1: the first plan. Epoch 2: 165 s left over 5 s epochs. Epochs 3-4: the switch's estimate of
    # 2 x 5 s (160 s and 130 s left). Epoch 5: the 12 s epoch timed after the recompiling one: 118 s // 12 s.
    assert plans == [10, 10, 2 + 33, 3 + 16, 4 + 13, 5 + 9]
    expected = [1.0 * warmup_cosine((epoch + 0.5) / plan, 0.0, 0.1) for epoch, plan in enumerate(plans)]
    assert budget.rates == pytest.approx(expected, rel=1e-12)
    assert budget.stopped_epoch is None


def test_time_budget_plans_at_least_the_epoch_it_starts():
    # A switch to slower epochs can leave less than one epoch's time: the plan is then this epoch, the last.
    clock = FakeClock()
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)
    budget = TimeBudget(100.0, 1.0, planned_epochs=50, warmup=0.0, clock=clock)

    def switch(epoch):
        if epoch == 13:  # 10 s left, epochs now expected to take 3 x 5 s
            budget.expect_new_epoch_time(3.0)

    plans = run_budget(budget, model, clock, [30.0] + [5.0] * 13, switch)
    assert plans[12:] == [12 + 15 // 5, 13 + 1] and budget.rates[-1] == pytest.approx(
        warmup_cosine(13.5 / 14, 0.0)
    )


def test_time_budget_counts_only_whole_epochs_that_fit():
    # 1.0 s left over epochs of 0.1 s: binary 0.1 is a hair above a tenth, so exactly 9 more fit, not the 10
    # that a rounded division says.
    clock = FakeClock()
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)
    budget = TimeBudget(1.2, 1.0, planned_epochs=5, warmup=0.0, clock=clock)
    assert run_budget(budget, model, clock, [0.1, 0.1, 0.1]) == [5, 5, 2 + 9]


def test_clocks_told_of_slower_epochs_before_any_is_timed():
    # An unmasked finish that starts at the first epoch (a one-epoch run) tells the clocks before they timed
    # anything: they keep their first plan and time the epochs as they come.
    clock = FakeClock()
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)
    budget = TimeBudget(100.0, 1.0, planned_epochs=3, warmup=0.0, clock=clock)
    limit = TimeLimit(100.0, clock=clock)
    limit.set_model(model)
    limit.on_train_begin()
    budget.set_model(model)
    budget.on_train_begin()
    for clock_callback in (budget, limit):
        clock_callback.expect_new_epoch_time(2.0)
    budget.on_epoch_begin(0)
    limit.on_epoch_begin(0)
    clock.now += 60.0
    budget.on_epoch_end(0, {})
    limit.on_epoch_end(0)
    assert budget.planned_epochs == 3 and budget.stopped_epoch == limit.stopped_epoch == 0


class RecordingClock:
    """Stands for a TimeBudget/TimeLimit: records what UnmaskedFinish tells it."""

    def __init__(self):
        self.ratios = []

    def expect_new_epoch_time(self, ratio):
        self.ratios.append(ratio)


def dropout_model(rate=0.25):
    """A functional model with a PatchDropout over 5 tokens (class token + 4 patches) of 6 features."""
    inputs = keras.Input((5, 6))
    tokens = PatchDropout(rate)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(tokens)))
    model.compile(optimizer="sgd", loss="mse")
    return model


class SubclassedDropoutModel(keras.Model):
    """A PatchDropout that is not called in a functional graph: its input shape is unknown."""

    def __init__(self):
        super().__init__()
        self.drop = PatchDropout(0.25)
        self.dense = keras.layers.Dense(1)

    def call(self, tokens, training=None):
        return self.dense(keras.ops.mean(self.drop(tokens, training=training), axis=1))


def test_unmasked_finish_switches_the_step_tells_the_clocks_and_switches_back(monkeypatch):
    stdout = flushed_stdout(monkeypatch)
    model = dropout_model()
    model.make_train_function()
    masked_step = model.train_function
    clocks = [RecordingClock(), None, RecordingClock()]  # a None clock (no TimeLimit) is skipped
    finish = UnmaskedFinish(0.5, epochs=4, clocks=clocks, cost_ratio=3.0)
    assert finish.started_epoch is None
    finish.set_model(model)
    finish.on_train_begin()
    layer = model.get_layer(index=1)
    for epoch in range(2):
        finish.on_epoch_begin(epoch)
        logs = {}
        finish.on_epoch_end(epoch, logs)
        assert logs == {"unmasked": 0.0} and layer.active and model.train_function is masked_step
    finish.on_epoch_begin(2)
    assert finish.started_epoch == 2 and not layer.active
    assert model.train_function is not masked_step  # traced again, without the dropout
    unmasked_step = model.train_function
    # The cost ratio given is the one the clocks are told, once.
    assert clocks[0].ratios == clocks[2].ratios == [3.0]
    assert stdout.flushed == (
        "\nEpoch 3: training on every token from now on (unmasked finish); epochs expected 3.00x as long.\n"
    )
    finish.on_epoch_begin(3)
    assert clocks[0].ratios == [3.0] and finish.started_epoch == 2
    finish.on_epoch_end(3, None)  # no logs: nothing to write
    finish.on_train_end()
    assert layer.active and model.train_function not in (masked_step, unmasked_step)


def test_unmasked_finish_estimates_the_cost_from_the_token_counts(monkeypatch):
    stdout = flushed_stdout(monkeypatch)
    # Functional: 5 tokens at inference over the 1 + round(0.75 * 4) = 4 kept in training.
    clock = RecordingClock()
    finish = UnmaskedFinish(0.5, epochs=2, clocks=[clock])
    finish.set_model(dropout_model(0.25))
    finish.on_train_begin()
    finish.on_epoch_begin(1)
    assert clock.ratios == [5 / 4] and stdout.flushed.endswith("epochs expected 1.25x as long.\n")
    # Not called in a functional graph: the share of patches kept alone, 1 / 0.75.
    model = SubclassedDropoutModel()
    model(np.zeros((2, 5, 6), "float32"))
    model.compile(optimizer="sgd", loss="mse")
    clock = RecordingClock()
    finish = UnmaskedFinish(0.5, epochs=2, clocks=[clock])
    finish.set_model(model)
    finish.on_train_begin()
    finish.on_epoch_begin(1)
    assert clock.ratios == [pytest.approx(4 / 3)] and finish.started_epoch == 1


def test_unmasked_finish_checks_its_arguments_with_clear_messages():
    with pytest.raises(ValueError, match=r"^share must be in \(0, 1\), got 0\.0\.$"):
        UnmaskedFinish(0.0, epochs=10)
    with pytest.raises(ValueError, match=r"^UnmaskedFinish needs the run's epochs or its TimeBudget\.$"):
        UnmaskedFinish(0.1, epochs=0)
    assert UnmaskedFinish(0.5, epochs=1).first_unmasked_epoch() == 0  # a one-epoch run is all finish
    finish = UnmaskedFinish(0.25, epochs=10)
    finish.set_model(tiny_model())
    with pytest.raises(ValueError) as raised:
        finish.on_train_begin()
    assert str(raised.value) == (
        "UnmaskedFinish: the model has no PatchDropout layer (build it with patch_dropout > 0)."
    )


def test_unmasked_finish_caps_the_budget_plan_at_the_runs_epochs():
    budget = TimeBudget(100.0, 1e-3, planned_epochs=40)
    assert UnmaskedFinish(0.25, budget=budget).first_unmasked_epoch() == 40 - 10
    # fit's epochs=20 caps the budget's plan of 40: the finish is the last 5 of the 20.
    assert UnmaskedFinish(0.25, epochs=20, budget=budget).first_unmasked_epoch() == 20 - 5
    assert UnmaskedFinish(0.25, epochs=60, budget=budget).first_unmasked_epoch() == 40 - 10


def test_epoch_backup_housekeeping(tmp_path, monkeypatch):
    # A folder whose parents do not exist yet; a checkpoint every 3 epochs; the pause point the crash tests
    # kill a run at comes when checkpoint.json names the new file and before the old one is removed.
    backup_dir = tmp_path / "runs" / "one" / "ckpt"
    seen = []

    def pause(name):
        metadata = json.loads((backup_dir / "checkpoint.json").read_text())
        seen.append((name, metadata["weights"], sorted(p.name for p in backup_dir.iterdir())))

    monkeypatch.setattr(callbacks, "pause_point", pause)
    backup = EpochBackup(str(backup_dir), every=3, delete_checkpoint=False)
    backup.set_model(tiny_model())
    saved = []
    for epoch in range(7):
        backup.on_epoch_end(epoch, {"loss": 1.0})
        saved.append(EpochBackup.saved_epochs(backup_dir))
    assert saved == [0, 0, 3, 3, 3, 6, 6]
    assert seen == [
        ("checkpoint-written", "epoch_00003.weights.h5", ["checkpoint.json", "epoch_00003.weights.h5"]),
        (
            "checkpoint-written",
            "epoch_00006.weights.h5",
            ["checkpoint.json", "epoch_00003.weights.h5", "epoch_00006.weights.h5"],
        ),
    ]
    assert sorted(p.name for p in backup_dir.iterdir()) == ["checkpoint.json", "epoch_00006.weights.h5"]
    with pytest.raises(ValueError, match=r"^every must be a positive integer, got 0\.$"):
        EpochBackup(str(backup_dir), every=0)


def test_epoch_backup_reads_and_replaces_a_keras_checkpoint(tmp_path, monkeypatch):
    # Keras' own BackupAndRestore files, from runs before EpochBackup: read, then removed by the first save.
    backup_dir = tmp_path / "ckpt"
    assert EpochBackup.saved_epochs(backup_dir) == 0  # no folder yet
    backup_dir.mkdir()
    assert EpochBackup.saved_epochs(backup_dir) == 0  # an empty one
    (backup_dir / "training_metadata.json").write_text(json.dumps({"epoch": 4, "batch": 0}))
    tiny_model().save_weights(backup_dir / "latest.weights.h5")
    assert EpochBackup.saved_epochs(backup_dir) == 4
    # Another process may remove an old file between listing and removing it: the save still ends.
    real_glob = pathlib.Path.glob
    monkeypatch.setattr(
        pathlib.Path,
        "glob",
        lambda self, pattern: [*real_glob(self, pattern), self / "epoch_00001.weights.h5"],
    )
    backup = EpochBackup(str(backup_dir), delete_checkpoint=False)
    backup.set_model(tiny_model())
    backup.on_epoch_end(4, {"loss": 1.0})
    assert sorted(p.name for p in backup_dir.iterdir()) == ["checkpoint.json", "epoch_00005.weights.h5"]
    assert EpochBackup.saved_epochs(backup_dir) == 5


def adam_model():
    """tiny_model with Adam, whose moments exist only once the optimizer is built."""
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def test_epoch_backup_restores_the_optimizer_state(tmp_path):
    trained = adam_model()
    trained.fit(
        *DATA,
        epochs=2,
        batch_size=16,
        callbacks=[EpochBackup(str(tmp_path / "ckpt"), delete_checkpoint=False)],
        verbose=0,
    )
    # An optimizer not built yet (on_train_begin called before fit builds it) is built, then restored: its
    # step count and Adam's moments.
    resumed = adam_model()
    backup = EpochBackup(str(tmp_path / "ckpt"))
    backup.set_model(resumed)
    backup.on_train_begin()
    assert int(resumed.optimizer.iterations) == 8 and resumed._initial_epoch == 2
    assert len(resumed.optimizer.variables) == len(trained.optimizer.variables) == 6
    for restored, saved in zip(resumed.optimizer.variables, trained.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored), keras.ops.convert_to_numpy(saved))
    np.testing.assert_array_equal(resumed.get_weights()[0], trained.get_weights()[0])
    # A model compiled without an optimizer (to evaluate the checkpoint) takes the weights alone.
    inputs = keras.Input((4,))
    evaluated = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    evaluated.compile(optimizer=None, loss="mse")
    backup = EpochBackup(str(tmp_path / "ckpt"))
    backup.set_model(evaluated)
    backup.on_train_begin()
    np.testing.assert_array_equal(evaluated.get_weights()[0], trained.get_weights()[0])


def assert_room_needed(backup_dir, model, needed, monkeypatch):
    """`callbacks._check_room_for_checkpoint` passes with `needed` bytes free and raises ENOSPC, in one line saying
    both sizes, with a byte less."""
    monkeypatch.setattr(callbacks, "_free_bytes", lambda folder: needed)
    callbacks._check_room_for_checkpoint(backup_dir, model)
    monkeypatch.setattr(callbacks, "_free_bytes", lambda folder: needed - 1)
    with pytest.raises(OSError) as raised:
        callbacks._check_room_for_checkpoint(backup_dir, model)
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(backup_dir))
    assert raised.value.strerror == (
        f"No space left on device (a checkpoint needs about {needed / 2**20:.1f} MiB, "
        f"{(needed - 1) / 2**20:.1f} MiB free)"
    )


def test_the_first_checkpoint_needs_room_for_the_weights_and_the_optimizer_state(tmp_path, monkeypatch):
    """Before any checkpoint, the room needed is the weights' and the built optimizer's variables, a tenth more,
    plus 1 MiB: Adam's two moments triple the weights' bytes."""
    inputs = keras.Input((1000,))
    model = keras.Model(inputs, keras.layers.Dense(1000)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.optimizer.build(model.trainable_variables)
    # Weights 4 * 1,001,000 B; Adam: two moments of as many, its int64 step and float32 rate (12 B).
    assert_room_needed(tmp_path, model, int((3 * 4_004_000 + 12) * 1.1) + 2**20, monkeypatch)


def test_a_model_without_an_optimizer_is_sized_with_two_moments_a_trainable_value():
    """Before `compile` (the train command's first check of the disk), a checkpoint is sized as the weights and
    two moments of each trainable value; a frozen layer's values count once."""
    inputs = keras.Input((1000,))
    frozen = keras.layers.Dense(10, trainable=False)
    model = keras.Model(inputs, frozen(keras.layers.Dense(1000)(inputs)))
    assert callbacks.checkpoint_bytes(model) == 3 * 4_004_000 + 4 * 10_010


def test_a_checkpoint_needs_room_for_the_largest_previous_one(tmp_path, monkeypatch):
    """Once a checkpoint is written, its file's size is what the next one needs (a tenth more, plus 1 MiB), however
    small the model's own variables: the largest of those left, others' files ignored."""
    # latest.weights.h5: Keras' own checkpoint name, not one of ours (removed by the next save).
    sizes = {
        "epoch_00002.weights.h5": 1_000,
        "epoch_00003.weights.h5": 20_000_000,
        "latest.weights.h5": 30_000_000,
    }
    for name, size in sizes.items():
        with open(tmp_path / name, "wb") as file:
            file.truncate(size)  # sparse: no disk used
    assert_room_needed(tmp_path, tiny_model(), 22_000_000 + 2**20, monkeypatch)


def test_an_unreadable_checkpoint_names_its_folder_the_error_and_the_way_out(tmp_path):
    for name in ("checkpoint.json", "training_metadata.json"):  # ours, and Keras' own from older runs
        backup_dir = tmp_path / name.split(".")[0]
        backup_dir.mkdir()
        (backup_dir / name).write_text("not json")
        backup = EpochBackup(str(backup_dir))
        backup.set_model(tiny_model())
        with pytest.raises(CheckpointError) as raised:
            backup.on_train_begin()
        assert str(raised.value) == (
            f"the resume checkpoint in {backup_dir} cannot be read (JSONDecodeError: Expecting value: line 1 "
            "column 1 (char 0)); rerun with --fresh to start over"
        )
    # An error without a message, and one over several lines (its first line is enough).
    assert str(callbacks._unreadable(tmp_path, ValueError())) == (
        f"the resume checkpoint in {tmp_path} cannot be read (ValueError: no detail); "
        "rerun with --fresh to start over"
    )
    assert "(OSError: first line); rerun" in str(
        callbacks._unreadable(tmp_path, OSError(" first line\nmore\n"))
    )


def test_a_checkpoint_json_that_is_no_object_is_unreadable_not_a_crash(tmp_path):
    (tmp_path / "checkpoint.json").write_text("[1, 2]")
    backup = EpochBackup(str(tmp_path))
    backup.set_model(tiny_model())
    with pytest.raises(
        CheckpointError, match=r"\(ValueError: checkpoint.json holds a JSON list, not an object\)"
    ):
        backup.on_train_begin()
    with pytest.raises(CheckpointError, match="holds a JSON list") as raised:
        EpochBackup.saved_epochs(tmp_path)
    assert str(raised.value).startswith(f"the resume checkpoint in {tmp_path} cannot be read")
    (tmp_path / "checkpoint.json").write_text('{"weights": "epoch_1.weights.h5"}')  # no epoch
    with pytest.raises(CheckpointError, match="KeyError: 'epoch'"):
        EpochBackup.saved_epochs(tmp_path)
