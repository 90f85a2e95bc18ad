"""Training callbacks that keep the accelerator busy.

Keras runs the per-batch hooks of callbacks in a background thread only
when no callback overrides a batch-end hook (`CallbackList`'s async
dispatch); otherwise it turns every step's logs into Python floats on the
main thread, which waits for the device after each step. Keras'
`TerminateOnNaN` and `BackupAndRestore` both override one, which cost run 1
on the H200 about a fifth of its throughput. The callbacks here work at
epoch ends only, so `fit` keeps dispatching steps ahead of the device.
"""

from __future__ import annotations

import math
import time

import keras


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
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # Keras has turned the logs into numbers by now: the device is done.
        elapsed = time.perf_counter() - self._start
        self.times.append(elapsed)
        if logs is not None:
            logs["epoch_seconds"] = elapsed
            logs["images_per_second"] = self.num_images / elapsed


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


class TimeLimit(keras.callbacks.Callback):
    """Stops training before an epoch would end past `seconds` of `fit`.

    The clock starts when `fit` starts (compilation included). After each
    epoch it stops if another epoch as long as the longest steady one would
    cross the limit, so a run ends with a saved model instead of being
    killed. `stopped_epoch` is the last epoch (0-based) run, or None.

    Args:
        seconds: float, the wall-clock budget of `fit`.
    """

    def __init__(self, seconds):
        super().__init__()
        if seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}.")
        self.seconds = float(seconds)
        self.stopped_epoch = None
        self._epoch_times = []

    def on_train_begin(self, logs=None):
        self._train_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self._epoch_times.append(now - self._epoch_start)
        # The first epoch holds the compilation: it is not a guide to the next.
        steady = self._epoch_times[1:] or self._epoch_times
        if now - self._train_start + max(steady) > self.seconds:
            print(f"\nEpoch {epoch + 1}: the next epoch would pass the {self.seconds:.0f} s "
                  "time limit; stopping.", flush=True)
            self.stopped_epoch = epoch
            self.model.stop_training = True


class EpochBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that saves every `every` epochs, at epoch ends.

    Keras' own `save_freq=<steps>` saves from a batch hook (which turns off
    async dispatch) and records the epoch before it ends, so a resumed run
    repeats an epoch. This one saves at the end of epochs `every, 2 * every,
    ...` and records the next epoch to run.

    Args:
        backup_dir: str, where the checkpoint lives.
        every: int, epochs between checkpoints.
        delete_checkpoint: bool, remove it when training ends normally.
    """

    # Its batch hook is BackupAndRestore's, a no-op with save_freq="epoch".
    async_safe = True

    def __init__(self, backup_dir, every=1, delete_checkpoint=True):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=delete_checkpoint)
        if every < 1:
            raise ValueError(f"every must be a positive integer, got {every}.")
        self.every = int(every)

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        if (epoch + 1) % self.every == 0:
            self._save_model()
