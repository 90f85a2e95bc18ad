"""Training callbacks that keep the accelerator busy, and a schedule that fits a time budget.

Keras runs the per-batch hooks of callbacks in a background thread only
when no callback overrides a batch-end hook (`CallbackList`'s async
dispatch); otherwise it turns every step's logs into Python floats on the
main thread, which waits for the device after each step. Keras'
`TerminateOnNaN` and `BackupAndRestore` both override one, which costs a
fast GPU a measurable share of its throughput (docs/experiments). The
callbacks here work at epoch ends only, so `fit` keeps dispatching steps ahead of the device.
`TimeBudget` plans the learning-rate schedule over the epochs that fit in a
number of seconds, from their measured times; `UnmaskedFinish` turns
PatchDropout off for the last part of a run; `EpochBackup` is the resume
checkpoint and `HistoryFile` the history a resumed run continues.
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from keras_vit.files import atomic_path, atomic_write_json, pause_point
from keras_vit.layers import PatchDropout
from keras_vit.training.processes import writing_alone
from keras_vit.training.schedules import warmup_cosine


class EpochTimer(keras.callbacks.Callback):
    """Records each epoch's wall time and training images/s in the logs.

    Args:
        num_images: int, training images per epoch.
    """

    def __init__(self, num_images):
        super().__init__()
        self.num_images = num_images
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        pause_point(f"epoch-begin:{epoch + 1}")  # a test hook: kill a run in this epoch
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # Keras has turned the logs into numbers by now: the device is done.
        elapsed = time.perf_counter() - self._start
        self.times.append(elapsed)
        if logs is not None:
            logs["epoch_seconds"] = elapsed
            logs["images_per_second"] = self.num_images / elapsed


class HistoryFile(keras.callbacks.CSVLogger):
    """Keras' `CSVLogger`, for a history that a resumed run continues (`append=True`).

    Keras' own picks the columns again from the first epoch it logs, so a run
    resumed on an epoch that validates (with a validation frequency above 1)
    wrote rows shorter than the header, under the wrong columns. This one
    writes the rows of an existing file under that file's header.
    """

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.append and not self.append_header:  # a file with its header: its columns
            with open(self.filename, newline="", encoding="utf-8") as file:
                self.keys = next(csv.reader(file, delimiter=self.sep))[1:]  # after "epoch"


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the end of an epoch whose loss is NaN or infinite.

    Unlike `keras.callbacks.TerminateOnNaN` it looks once per epoch, so it
    does not force a device sync after every step. `stopped_epoch` is the
    epoch (0-based) where it stopped, or None.
    """

    def __init__(self):
        super().__init__()
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            print(f"\nEpoch {epoch + 1}: the loss is {loss}; stopping.", flush=True)
            self.stopped_epoch = epoch
            self.model.stop_training = True


class _FitClock(keras.callbacks.Callback):
    """Times `fit` from its start (compilation included) and each epoch.

    The shared clock of `TimeLimit` and `TimeBudget`: both stop at an epoch
    end when the next epoch would end past `seconds`, and differ in how long
    they expect that epoch to be. A resumed run goes on from the clock's
    state in the checkpoint (`get_state`, `set_state`): its seconds count.
    """

    def __init__(self, seconds, clock=time.perf_counter):
        super().__init__()
        if seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}.")
        self.seconds = float(seconds)
        self.clock = clock
        self.stopped_epoch = None
        self._epoch_times = []
        self._phase_start = 0  # index of the first epoch timed at the current speed
        self._phase_estimate = None  # seconds an epoch is expected to take at a new speed, until one is timed
        self._seconds_before = 0.0  # seconds of fit of the run this one resumes
        self._seconds_at_epoch_end = 0.0  # seconds of fit when the last epoch ended

    def _steady_times(self):
        # The first epoch of fit, and of each change of speed, holds a compilation: not a guide to the next.
        phase = self._epoch_times[self._phase_start :]
        if len(phase) >= 2 or self._phase_estimate is None:
            return phase[1:] or phase
        return [self._phase_estimate]

    def expect_new_epoch_time(self, ratio):
        """Says that epochs from the next one on take `ratio` times as long as so far.

        Called at an epoch start, before the epoch runs (`UnmaskedFinish`
        calls it when training switches to every token). Until one epoch at
        the new speed has been timed after the first (which recompiles), the
        estimate is `ratio` times the mean steady epoch so far.
        """
        steady = self._steady_times()
        self._phase_estimate = ratio * sum(steady) / len(steady) if steady else None
        self._phase_start = len(self._epoch_times)

    def get_state(self):
        """The clock at the end of the last epoch, for a resume checkpoint (`EpochBackup`): JSON-ready.

        It reads no clock: in a job of several processes the clock is a
        collective, and only process 0 writes the checkpoint.
        """
        return {
            "seconds": self._seconds_at_epoch_end,
            "epoch_times": list(self._epoch_times),
            "phase_start": self._phase_start,
            "phase_estimate": self._phase_estimate,
        }

    def set_state(self, state):
        """Goes on from `get_state`'s clock: its seconds count against `seconds`, and the first epoch after the
        resume, which compiles again, is not taken for a steady one."""
        self._seconds_before = self._seconds_at_epoch_end = float(state["seconds"])
        self._epoch_times = [float(seconds) for seconds in state["epoch_times"]]
        self._phase_start = int(state["phase_start"])
        self._phase_estimate = state["phase_estimate"]
        self.expect_new_epoch_time(1.0)

    def _elapsed(self, now):
        """Seconds of fit at `now`, those of the run this one resumes included."""
        return now - self._train_start + self._seconds_before

    def on_train_begin(self, logs=None):
        self._train_start = self.clock()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self.clock()

    def _stop_if_next_epoch_overruns(self, epoch, next_epoch_seconds, reason):
        """Records this epoch's time; stops `fit` if one more would end past `seconds`."""
        now = self.clock()
        self._epoch_times.append(now - self._epoch_start)
        self._seconds_at_epoch_end = self._elapsed(now)
        if self._seconds_at_epoch_end + next_epoch_seconds(self._steady_times()) > self.seconds:
            print(f"\nEpoch {epoch + 1}: {reason}; stopping.", flush=True)
            self.stopped_epoch = epoch
            self.model.stop_training = True


class TimeLimit(_FitClock):
    """Stops training before an epoch would end past `seconds` of `fit`.

    The clock starts when `fit` starts (compilation included). After each
    epoch it stops if another epoch as long as the longest steady one would
    cross the limit, so a run ends with a saved model instead of being
    killed. `stopped_epoch` is the last epoch (0-based) run, or None.

    Args:
        seconds: float, the wall-clock budget of `fit`.
    """

    state_name = "time_limit"

    def on_epoch_end(self, epoch, logs=None):
        self._stop_if_next_epoch_overruns(
            epoch, max, f"the next epoch would pass the {self.seconds:.0f} s time limit"
        )


class TimeBudget(_FitClock):
    """Warmup + cosine learning rate over a wall-clock budget for `fit`.

    A schedule fixed in steps assumes a speed. When `fit` runs slower than
    planned, a time limit cuts it before the rate has decayed; when faster,
    time is left over. This callback plans again at every epoch start: the epochs that
    fit in `seconds` are the ones done plus the time left over the mean
    epoch after the first (which holds compilation; until a second epoch is
    timed, `planned_epochs` stands), and the optimizer's learning rate is set to the
    warmup + cosine value at the middle of this epoch. After each epoch it
    stops training if the next one would end past the budget. The rate is
    constant within an epoch, which is close to a per-step schedule for runs
    of tens of epochs or more. The plan never exceeds `max_epochs`, the cap
    `fit` is called with: a cap reached first still ends on an annealed rate.

    The optimizer must have a float learning rate (not a schedule). Writes
    `learning_rate` and `planned_epochs` to the epoch logs; place it before
    `CSVLogger` to have them in the history.

    Args:
        seconds: float, the budget of `fit` from its start, compilation included.
        learning_rate: float, the peak rate.
        planned_epochs: int, the estimate used before an epoch has been timed.
        warmup: float in [0, 1), share of the run with linear warmup.
        final_fraction: float, the rate at the end as a share of the peak.
        max_epochs: optional int, the most epochs `fit` will run (its
            `epochs`); the plan is at most this.
        clock: callable returning seconds (tests pass a fake one).
    """

    def __init__(
        self,
        seconds,
        learning_rate,
        planned_epochs,
        warmup=0.1,
        final_fraction=0.0,
        max_epochs=None,
        clock=time.perf_counter,
    ):
        super().__init__(seconds, clock)
        if planned_epochs < 1 or not 0.0 <= warmup < 1.0 or (max_epochs is not None and max_epochs < 1):
            raise ValueError(
                "need planned_epochs >= 1, 0 <= warmup < 1 and max_epochs >= 1 or None; got "
                f"{planned_epochs}, {warmup}, {max_epochs}."
            )
        self.learning_rate = float(learning_rate)
        self.max_epochs = None if max_epochs is None else int(max_epochs)
        self.planned_epochs = self._capped(int(planned_epochs))
        self.warmup = float(warmup)
        self.final_fraction = float(final_fraction)
        self.rates = []

    state_name = "time_budget"

    def get_state(self):
        return {**super().get_state(), "planned_epochs": self.planned_epochs, "rates": list(self.rates)}

    def set_state(self, state):
        super().set_state(state)
        self.planned_epochs = self._capped(int(state["planned_epochs"]))
        self.rates = [float(rate) for rate in state["rates"]]

    @staticmethod
    def _mean(times):
        return sum(times) / len(times)

    def _capped(self, epochs):
        return epochs if self.max_epochs is None else min(epochs, self.max_epochs)

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if len(self._epoch_times) >= 2:  # a steady epoch timed: the first holds compilation
            left = self.seconds - self._elapsed(self._epoch_start)
            self.planned_epochs = self._capped(
                max(epoch + 1, epoch + int(left // self._mean(self._steady_times())))
            )
        rate = self.learning_rate * warmup_cosine(
            (epoch + 0.5) / self.planned_epochs, self.warmup, self.final_fraction
        )
        self.model.optimizer.learning_rate = rate
        self.rates.append(rate)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.rates[-1]
            logs["planned_epochs"] = self.planned_epochs
        self._stop_if_next_epoch_overruns(epoch, self._mean, f"the {self.seconds:.0f} s budget is spent")


class UnmaskedFinish(keras.callbacks.Callback):
    """Trains the last share of a run on every patch token (PatchDropout off).

    PatchDropout makes steps cheaper, but the model then trains on fewer
    tokens than it sees at inference. As FLIP's unmasked tuning (Li et al.
    2023), the last epochs train on every token, so the model ends on the
    sequence it will be used on. At the first epoch of the last `share` of
    the run, this sets `active = False` on every `PatchDropout` layer of the
    model and makes the train step again (one recompilation). With a
    `TimeBudget` the run's length is its current plan, and the budget (and
    any other clock in `clocks`, such as a `TimeLimit`) is told that epochs
    now take `cost_ratio` times as long, so that it re-plans the schedule
    and its stop around the slower epochs. The layers are switched back on
    when training ends. `started_epoch` is the first unmasked epoch
    (0-based), or None; the epoch logs get `unmasked` (1 or 0).

    Args:
        share: float in (0, 1), the share of the run's epochs trained unmasked
            (at least one epoch).
        epochs: int, the run's epochs; needed without `budget`, a cap on its plan with one.
        budget: optional `TimeBudget`; place this callback before it.
        clocks: other `TimeLimit`/`TimeBudget` callbacks to tell of the slower epochs.
        cost_ratio: float, expected unmasked / masked epoch time; default:
            the ratio of the token counts.
    """

    def __init__(self, share, epochs=None, budget=None, clocks=(), cost_ratio=None):
        super().__init__()
        if not 0.0 < float(share) < 1.0:
            raise ValueError(f"share must be in (0, 1), got {share}.")
        if budget is None and (epochs is None or epochs < 1):
            raise ValueError("UnmaskedFinish needs the run's epochs or its TimeBudget.")
        self.share = float(share)
        self.epochs = epochs
        self.budget = budget
        self.clocks = [
            clock for clock in ([budget] if budget is not None else []) + list(clocks) if clock is not None
        ]
        self.cost_ratio = cost_ratio
        self.started_epoch = None
        self._resumed_start = None  # the first unmasked epoch of the run this one resumes
        self._layers = []

    state_name = "unmasked_finish"

    def get_state(self):
        """For a resume checkpoint (`EpochBackup`): the first unmasked epoch, or None."""
        return {"started_epoch": self.started_epoch}

    def set_state(self, state):
        """A run resumed after its unmasked finish began trains on every token from its first epoch."""
        self._resumed_start = state["started_epoch"]
        if self._layers:  # fit began before the checkpoint was read
            self._unmask_resumed()

    def _unmask_resumed(self):
        if self._resumed_start is None or self.started_epoch is not None:
            return
        for layer in self._layers:
            layer.active = False
        self.model.make_train_function(force=True)
        self.started_epoch = int(self._resumed_start)

    def first_unmasked_epoch(self):
        """The first epoch (0-based) of the unmasked finish under the current plan."""
        total = self.budget.planned_epochs if self.budget is not None else self.epochs
        if self.budget is not None and self.epochs is not None:
            total = min(total, self.epochs)  # a cap on the budget's plan
        return total - max(1, math.ceil(self.share * total - 1e-9))

    def _token_ratio(self):
        # Tokens at inference over tokens kept in training: the step cost scales about so (MLP, projections).
        layer = self._layers[0]
        try:
            tokens = layer.input.shape[1]
        except (AttributeError, ValueError):  # not called in a functional graph: the patch share alone
            return 1.0 / (1.0 - layer.rate)
        return tokens / layer.kept_tokens(tokens)

    def on_train_begin(self, logs=None):
        self._layers = [layer for layer in self.model._flatten_layers() if isinstance(layer, PatchDropout)]
        if not self._layers:
            raise ValueError(
                "UnmaskedFinish: the model has no PatchDropout layer (build it with patch_dropout > 0)."
            )
        for layer in self._layers:
            layer.active = True
        self.started_epoch = None
        self._unmask_resumed()

    def on_epoch_begin(self, epoch, logs=None):
        if self.started_epoch is not None or epoch < self.first_unmasked_epoch():
            return
        for layer in self._layers:
            layer.active = False
        self.model.make_train_function(force=True)  # the compiled step holds the masked graph
        ratio = self.cost_ratio or self._token_ratio()
        for clock in self.clocks:
            clock.expect_new_epoch_time(ratio)
        self.started_epoch = epoch
        print(
            f"\nEpoch {epoch + 1}: training on every token from now on (unmasked finish); "
            f"epochs expected {ratio:.2f}x as long.",
            flush=True,
        )

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["unmasked"] = float(self.started_epoch is not None)

    def on_train_end(self, logs=None):
        if self.started_epoch is not None:
            for layer in self._layers:
                layer.active = True
            self.model.make_train_function(force=True)  # a later fit traces the masked step again


class CheckpointError(OSError):
    """A resume checkpoint that cannot be read (the message says which file and what to do)."""


def checkpoint_folder(output):
    """The folder where a run written to `output` keeps its checkpoint until the run's files are all written."""
    return Path(output) / "checkpoint"


def checkpoint_bytes(model):
    """About the bytes of one checkpoint of `model`: its variables and its optimizer's, or, before an optimizer is
    attached, two moments for each trainable value (Adam's and AdamW's, the most the optimizers keep)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        return _bytes_of([*model.variables, *optimizer.variables])
    return _bytes_of(model.variables) + 2 * _bytes_of(model.trainable_variables)


class EpochBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that saves every `every` epochs, at epoch ends, atomically and versioned.

    Keras' own `save_freq=<steps>` saves from a batch hook (which turns off
    async dispatch) and records the epoch before it ends, so a resumed run
    repeats an epoch; and it rewrites `latest.weights.h5` in place, so a kill
    or a full disk during that write leaves a truncated file that every rerun
    then fails on. This one saves at the end of epochs `every, 2 * every,
    ...`: the weights and optimizer state go to a new file
    `epoch_<N>.weights.h5` (through `keras_vit.files.atomic_path`), then
    `checkpoint.json`, which names that file and the next epoch to run, is
    replaced atomically, and only then is the previous epoch's file removed.
    `checkpoint.json` also holds the random generators' states (the
    augmentation's and dropout's, which Keras' weights files leave out), so a
    resumed run draws what an uninterrupted run draws. A kill at any instant leaves a checkpoint that names a complete file. An
    epoch whose loss is not finite is never saved: the checkpoint keeps the
    last good epoch. The callbacks in `resumable` (`TimeBudget`, `TimeLimit`,
    `UnmaskedFinish`) have their state saved with it and restored on resume,
    so that a resumed run keeps their schedule and clock.

    Args:
        backup_dir: str, where the checkpoint lives.
        every: int, epochs between checkpoints.
        delete_checkpoint: bool, remove it when training ends normally.
        write: bool; False reads a checkpoint to resume from but never
            writes one (the processes of a job other than process 0).
        resumable: callbacks with `state_name`, `get_state()` and
            `set_state(state)`; place them before this one.
        run: optional JSON-ready dict of what identifies the run (its data,
            classes, model), written into `checkpoint.json` as `"run"`; the
            caller compares it before resuming (`saved_run`).
        length: optional JSON-ready value, the run's length as asked (it may
            change on resume); each resume records the one it replaced.

    Attributes:
        resumes: `[{"epoch": N, "length before": ...}, ...]`, the epochs at
            which this run resumed from its checkpoint, and the length asked
            before each; empty for a run trained in one go.
    """

    # Its batch hook is BackupAndRestore's, a no-op with save_freq="epoch".
    async_safe = True
    METADATA = "checkpoint.json"

    def __init__(
        self, backup_dir, every=1, delete_checkpoint=True, write=True, resumable=(), run=None, length=None
    ):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=delete_checkpoint and write)
        if every < 1:
            raise ValueError(f"every must be a positive integer, got {every}.")
        self.every = int(every)
        self.write = bool(write)
        self.resumable = [callback for callback in resumable if callback is not None]
        self.run = run
        self.length = length
        self.resumes = []

    @classmethod
    def saved_run(cls, backup_dir):
        """The `run` record of the checkpoint in `backup_dir`, or None: no checkpoint, or one written before
        runs were recorded (or by Keras' own callback), which resumes unchecked.

        Raises:
            CheckpointError: its metadata cannot be read.
        """
        path = Path(backup_dir) / cls.METADATA
        if not path.exists():
            return None
        try:
            run = _read_json(path).get("run")
        except (OSError, ValueError) as error:
            raise _unreadable(backup_dir, error) from None
        return run if isinstance(run, dict) else None

    @classmethod
    def saved_epochs(cls, backup_dir):
        """Epochs the checkpoint in `backup_dir` holds (the next epoch to run), or 0 without one.

        Raises:
            CheckpointError: its metadata cannot be read.
        """
        path = Path(backup_dir) / cls.METADATA
        legacy = Path(backup_dir) / "training_metadata.json"  # Keras' own, from older runs
        try:
            if path.exists():
                return int(_read_json(path)["epoch"])
            return int(_read_json(legacy)["epoch"]) if legacy.exists() else 0
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise _unreadable(backup_dir, error) from None

    def on_train_begin(self, logs=None):
        backup_dir = Path(self.backup_dir)
        metadata_path = backup_dir / self.METADATA
        if not metadata_path.exists():
            try:
                super().on_train_begin(logs)  # a checkpoint written by Keras' own callback, or none
            except (OSError, ValueError) as error:
                raise _unreadable(backup_dir, error) from None
            return
        try:
            metadata = _read_json(metadata_path)
            weights = backup_dir / metadata["weights"]
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            self.model.load_weights(weights)
            _restore_random_states(self.model, metadata.get("random_states", []))
            states = metadata.get("callbacks", {})
            for callback in self.resumable:
                if callback.state_name in states:  # a checkpoint of a run without it: it starts afresh
                    callback.set_state(states[callback.state_name])
            epoch = int(metadata["epoch"])
            self.resumes = [
                *metadata.get("resumes", []),
                {"epoch": epoch, "length before": metadata.get("length")},
            ]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise _unreadable(backup_dir, error) from None
        self.model._initial_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return  # keep the last good epoch's checkpoint
        if self.write and (epoch + 1) % self.every == 0:
            self._save_model()

    def _save_model(self):
        backup_dir = Path(self.backup_dir)
        backup_dir.mkdir(parents=True, exist_ok=True)
        _check_room_for_checkpoint(backup_dir, self.model)
        weights = backup_dir / f"epoch_{self._current_epoch:05d}.weights.h5"
        # Keras wants names ending .weights.h5. In a job of several processes, only process 0 saves.
        with atomic_path(weights, suffix=".weights") as tmp, writing_alone():
            self.model.save_weights(tmp, overwrite=True)
        metadata = {
            "epoch": self._current_epoch,
            "weights": weights.name,
            "random_states": _random_states(self.model),
            "callbacks": {callback.state_name: callback.get_state() for callback in self.resumable},
            **({"run": self.run} if self.run is not None else {}),
            "length": self.length,
            "resumes": self.resumes,
        }
        atomic_write_json(backup_dir / self.METADATA, metadata)
        pause_point("checkpoint-written")
        for old in backup_dir.glob("*.weights.h5*"):  # earlier epochs, and Keras' own latest.weights.h5
            if old != weights:
                old.unlink(missing_ok=True)
        (backup_dir / "training_metadata.json").unlink(missing_ok=True)


def _free_bytes(folder):
    return shutil.disk_usage(folder).free


def _bytes_of(variables):
    return sum(int(np.prod(v.shape)) * _bytes_per_value(v.dtype) for v in variables)


def _bytes_per_value(dtype):
    """4 for "float32", 2 for "bfloat16" (which NumPy does not name), 1 for "bool"."""
    bits = "".join(ch for ch in str(dtype) if ch.isdigit())
    return max(int(bits) // 8, 1) if bits else 1


def _size_or_none(path):
    """A file's size, or None when it is gone (another process may remove an old checkpoint meanwhile)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _check_room_for_checkpoint(backup_dir, model):
    """Raises `OSError(ENOSPC)` before a checkpoint is written to a disk without room for it: h5py, filling the disk
    in the middle of a write, crashes the process (a segmentation fault) instead of raising.

    The room needed: the last checkpoint's size (else the weights and optimizer state), a tenth more, plus 1 MiB.
    """
    previous = [_size_or_none(path) for path in backup_dir.glob("epoch_*.weights.h5")]
    previous = [size for size in previous if size is not None]
    needed = int((max(previous) if previous else checkpoint_bytes(model)) * 1.1) + 2**20
    free = _free_bytes(backup_dir)
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"{os.strerror(errno.ENOSPC)} (a checkpoint needs about {needed / 2**20:.1f} MiB, "
            f"{free / 2**20:.1f} MiB free)",
            str(backup_dir),
        )


def _seed_states(model):
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _random_states(model):
    """`[[path, state], ...]` of the model's random generators, in order (the paths for reading only: a
    generator's name depends on how many the process made before)."""
    return [[v.path, keras.ops.convert_to_numpy(v).tolist()] for v in _seed_states(model)]


def _restore_random_states(model, saved):
    """Sets the generators' states from `_random_states`' list; a checkpoint without them keeps the current ones."""
    variables = _seed_states(model)
    if not saved:
        return
    if len(saved) != len(variables):
        raise ValueError(
            f"the checkpoint's random generators ({len(saved)}) are not this model's ({len(variables)})"
        )
    for variable, (_, state) in zip(variables, saved):
        variable.assign(np.asarray(state, dtype=variable.dtype))


def _read_json(path):
    """The JSON object in `path`; ValueError for anything else (a list, a number: not a checkpoint's)."""
    value = json.loads(Path(path).read_text())
    if not isinstance(value, dict):
        raise ValueError(f"{Path(path).name} holds a JSON {type(value).__name__}, not an object")
    return value


def _unreadable(backup_dir, error):
    return CheckpointError(
        f"the resume checkpoint in {backup_dir} cannot be read ({type(error).__name__}: "
        f"{str(error).strip().splitlines()[0] if str(error).strip() else 'no detail'}); "
        "rerun with --fresh to start over"
    )
