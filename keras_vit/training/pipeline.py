"""The one fit -> score -> save sequence behind `python -m keras_vit.train` and `python -m keras_vit.teacher`.

load_splits    the training and test images: CIFAR-10 or an image-folder tree
uses_cifar10_loader  whether load_splits reads CIFAR-10's loader (32x32 only)
loaded_image_size    the size the training images will have
locked_output  the run's folder, held by one run at a time
check_not_finished   refuses to train over a finished run without --fresh
start_run      output folder, seed, dtype policy
fit            `trainer.fit` with the epoch timer, the NaN guard and the history file
score          test accuracy, plain and with test-time augmentation
save_run       model.keras, labels.txt and metrics.json, each written atomically
describe_device  what Keras' backend computes on, for the logs and metrics.json
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import keras
import numpy as np

from keras_vit import data
from keras_vit.cli_utils import (
    CLIError,
    check_output_folder,
    missing_folders,
    raise_if_signalled,
    remove_empty_folders,
)
from keras_vit.device import cpu_name, machine_summary, usable_cores
from keras_vit.files import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    exclusive_lock,
    remove_stale_temporaries,
)
from keras_vit.inference import view_logits_in_chunks
from keras_vit.labels import check_class_names, write_labels
from keras_vit.plots import read_history_csv
from keras_vit.training.callbacks import EpochTimer, HistoryFile, StopOnNaN
from keras_vit.training.recipes import MIXED_PRECISION
from keras_vit.training.tf_feed import fit_input
from keras_vit.tta import tta_accuracies


@dataclasses.dataclass
class FitOutcome:
    """What `fit` measured.

    Attributes:
        history: the history file's columns (`{"loss": [...], ...}`).
        seconds: wall-clock seconds of `fit`, compilation included; for a
            resumed run, plus the seconds of the epochs trained before it.
        epochs: epochs done.
        diverged: whether the loss became NaN or infinite.
        images_per_second: training images per second over the epochs after
            the first (which holds compilation), or all of them if only one
            (for a run resumed after its last epoch, those of the earlier
            epochs; None when no epoch was trained).
    """

    history: dict
    seconds: float
    epochs: int
    diverged: bool
    images_per_second: float | None


def load_splits(
    data_dir=None, dataset="auto", image_size=(32, 32), limit=None, seed=0, stream=False, size_given=False
):
    """The training and test images of a run.

    Args:
        data_dir: a CIFAR-10 copy or an image-folder tree `DIR/{train,test}/<class>/`;
            None: `$KERAS_VIT_DATA_DIR` (either kind), else the standard places of CIFAR-10.
        dataset: `"cifar10"`, `"folder"` (any classes, resized to `image_size`) or
            `"auto"`: CIFAR-10 unless `data_dir`'s training folder holds other classes
            (`uses_cifar10_loader`).
        image_size: `(height, width)` the model takes (image folders only).
        limit: optional number of images of each split, drawn evenly from the classes.
        seed: seed of the `limit` selection.
        stream: leave an image folder's images on disk, decoded a batch at a
            time when read (`load_image_folder(stream=True)`); CIFAR-10's
            batch files always load into memory.
        size_given: `image_size` was asked for (--image-size), not a default:
            under `"auto"` an image-folder tree of CIFAR-10's classes then
            loads at it with the image-folder loader.

    Returns:
        A `keras_vit.data.Splits`.

    Raises:
        keras_vit.data.DataNotFoundError: no data where it was looked for.
        OSError, ValueError: unreadable data.
    """
    root = data.given_data_dir(data_dir)  # --data-dir, else $KERAS_VIT_DATA_DIR
    if stream:
        if not root or data.image_folder_classes(root) is None:
            raise ValueError(
                "--stream reads an image-folder tree DIR/{train,test}/<class>/: give it as --data-dir"
            )
        return data.load_image_folder(root, image_size=image_size, limit=limit, seed=seed, stream=True)
    if dataset == "folder" and not root:
        raise ValueError(f"--dataset folder needs --data-dir (or ${data.DATA_DIR_ENV}): an image-folder tree")
    if not uses_cifar10_loader(data_dir, dataset, image_size if size_given else None):
        return data.load_image_folder(root, image_size=image_size, limit=limit, seed=seed)
    return data.load_cifar10(
        data_dir, limit=limit, seed=seed
    )  # it names where a $KERAS_VIT_DATA_DIR came from


CIFAR10_SIZE = (32, 32)  # what the CIFAR-10 loader gives, whatever the model's size


def uses_cifar10_loader(data_dir=None, dataset="auto", image_size=None, stream=False):
    """Whether `load_splits` reads with the CIFAR-10 loader (32x32 images), from the folder names alone.

    Args:
        data_dir, dataset, stream: as `load_splits` takes them.
        image_size: an image size asked for (--image-size), or None. Under
            `"auto"`, an image-folder tree of CIFAR-10's classes asked for at
            another size than 32x32 loads at it with the image-folder loader
            (the CIFAR-10 loader cannot resize).
    """
    if stream or dataset == "folder":
        return False
    if dataset == "cifar10":
        return True
    root = data.given_data_dir(data_dir)
    return not root or data.holds_cifar10(root, image_size)


def loaded_image_size(data_dir, dataset, image_size, size_given, stream=False):
    """The size the training images will have: `image_size`, or 32x32 where the CIFAR-10 loader reads them.

    Args:
        data_dir, dataset, stream: as `load_splits` takes them.
        image_size: `(height, width)` image folders load at.
        size_given: `image_size` was asked for (--image-size), not a default.

    Raises:
        CLIError: an asked size other than 32x32 for data the CIFAR-10 loader reads (it does not resize).
    """
    image_size = tuple(image_size)
    if not uses_cifar10_loader(data_dir, dataset, image_size if size_given else None, stream=stream):
        return image_size
    if size_given and image_size != CIFAR10_SIZE:
        raise CLIError(
            f"--image-size {image_size[0]}: CIFAR-10 loads at 32x32 only (the CIFAR-10 loader does not resize); "
            "leave --image-size out, or give an image-folder tree as --data-dir with --dataset folder"
        )
    return CIFAR10_SIZE


LOCK_NAME = ".keras_vit.lock"
# What a run writes into its output folder (each atomically): the leftovers of a killed run's writes are theirs.
RUN_FILES = ("model.keras", "labels.txt", "history.csv", "metrics.json", "curves.png")


@contextlib.contextmanager
def locked_output(output, min_free_bytes=None):
    """Holds the output folder for one run; removes what a killed run left half-written (its own files' temporaries
    only: an export writing into the same folder keeps its own).

    The lock is an OS file lock (`filelock`): it is released when the process
    ends however it ends, so a killed run never blocks the next one. A run
    that ends without writing anything (its data missing, say) removes the
    folders it created, lock included, while it still holds the lock.

    Args:
        output: the run's folder (created if missing).
        min_free_bytes: if given, the free space its disk must have.

    Yields:
        The folder as a `Path`.

    Raises:
        CLIError: the folder cannot be created or written to, has less than
            `min_free_bytes` free, or another process holds it.
    """
    output = Path(output)
    created = missing_folders(output)
    check_output_folder(output, min_free_bytes)
    busy = CLIError(f"another run is writing to {output}; wait for it to end or choose another --output")
    try:
        with exclusive_lock(output / LOCK_NAME, busy):
            try:
                remove_stale_temporaries(output, names=RUN_FILES)
                yield output
            finally:
                remove_empty_folders(created, leftovers={LOCK_NAME})
    finally:
        remove_empty_folders(created)  # the lock was busy, or the folder's check failed


def check_not_finished(output):
    """Refuses to train into a folder that holds a finished run: a rerun of a finished command would train for as
    long again and then replace the run's model without a word. Called under `locked_output`, unless --fresh.

    Args:
        output: the run's folder.

    Raises:
        CLIError: the folder holds a `model.keras` (`save_run` writes it first of a run's files).
    """
    output = Path(output)
    if not (output / "model.keras").exists():
        return
    try:
        accuracy = f", test accuracy {json.loads((output / 'metrics.json').read_text())['test_accuracy']:.2%}"
    except (OSError, ValueError, KeyError, TypeError):
        accuracy = ""
    raise CLIError(
        f"{output} holds a finished run (model.keras{accuracy}); give --fresh to train again and replace it when "
        "the new run ends, or choose another --output"
    )


def trim_history(path, epochs):
    """Keeps the first `epochs` epochs of a `history.csv` (a resumed run redoes the epochs after its checkpoint).

    Args:
        path: the `HistoryFile`; nothing happens if it does not exist.
        epochs: int, epochs to keep (rows whose `epoch` column is below it).
    """
    path = Path(path)
    if not path.exists():
        return
    # Rows as Keras' CSVLogger ended them (\r\n, the csv module's), so that the rows a resumed run adds match.
    lines = path.read_bytes().decode("utf-8").splitlines(keepends=True)
    if not lines:
        return
    kept = [line for line in lines[1:] if line.strip() and int(float(line.split(",")[0])) < epochs]
    atomic_write_text(path, "".join([lines[0], *kept]))


def start_run(output, seed, mixed_precision="none", create=True):
    """Creates the output folder, seeds every generator and sets the dtype policy.

    Args:
        output: the run's folder.
        seed: int, for `keras.utils.set_random_seed`.
        mixed_precision: a key of `MIXED_PRECISION` (`"none"`, `"bfloat16"`, ...).
        create: False leaves the folder alone (a process that writes nothing).

    Returns:
        The output folder as a `Path`.
    """
    output = Path(output)
    if create:
        output.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(MIXED_PRECISION[mixed_precision])
    return output


def fit(
    trainer,
    batches,
    *,
    epochs,
    history_path,
    before_history=(),
    after_history=(),
    append=False,
    verbose="auto",
    **fit_kwargs,
):
    """Runs `trainer.fit` over `batches`, timed and guarded, and reads back its history.

    Callbacks run in this order: the epoch timer, `before_history` (whose
    logs, e.g. the learning rate, reach the history file), the history file
    (`HistoryFile`), the NaN guard, `after_history` (the resume checkpoint
    last: an epoch it counts as done is in the history file), then the check
    for a signal whose exception was dropped (`raise_if_signalled`), which is
    made once more after `fit`.

    Args:
        trainer: a compiled `ViTTrainer`.
        batches: a `TrainingBatches`.
        epochs: int, the most epochs `fit` runs.
        history_path: the `history.csv` to write (None: none; the history
            is then `fit`'s own, this call's epochs only).
        before_history: callbacks placed before the history file.
        after_history: callbacks placed after it.
        append: continue an existing history (a resumed run) instead of
            starting a new one.
        verbose: Keras' `fit` verbosity: `"auto"`, 0, 1 or 2 (a string of a
            digit is taken as that number).
        **fit_kwargs: other `fit` arguments (validation data, ...).

    Returns:
        A `FitOutcome`.
    """
    history_path = None if history_path is None else Path(history_path)
    if history_path is not None and not append:
        history_path.unlink(missing_ok=True)
    timer = EpochTimer(len(batches) * batches.batch_size)
    nan_guard = StopOnNaN()
    callbacks = [
        timer,
        # A resumed run starts at a later epoch: its batches come in that epoch's order.
        keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: batches.set_epoch(epoch)),
        *before_history,
        *([HistoryFile(str(history_path), append=append)] if history_path is not None else []),
        nan_guard,
        *after_history,
        # Ctrl-C or SIGTERM whose exception was dropped where it arrived still stops the run: at the epoch's end,
        # after its checkpoint (a per-step check would make Keras wait for every step's logs).
        keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: raise_if_signalled(),
            on_epoch_end=lambda epoch, logs: raise_if_signalled(),
        ),
    ]
    verbose = verbose if verbose == "auto" else int(verbose)
    start = time.perf_counter()
    # shuffle=False: the batches shuffle themselves by (seed, epoch); Keras' shuffle of the batch order draws
    # from NumPy's global generator, which a resumed run cannot replay.
    fitted = trainer.fit(
        fit_input(batches), epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False, **fit_kwargs
    )
    seconds = time.perf_counter() - start
    raise_if_signalled()  # one dropped in the last step: the run stops before its model is written
    if history_path is None:
        history = dict(fitted.history)
    else:
        history = read_history_csv(history_path) if history_path.exists() else {}
    losses = history.get("loss", [])
    diverged = nan_guard.stopped_epoch is not None or (bool(losses) and not np.isfinite(losses[-1]))
    # A resumed run counts the epochs trained before it too, from their rows of the history file.
    earlier = [float(t) for t in history.get("epoch_seconds", [])[: max(len(losses) - len(timer.times), 0)]]
    steady = timer.times[1:] or timer.times or earlier[1:] or earlier
    images_per_second = timer.num_images / float(np.median(steady)) if steady else None
    return FitOutcome(history, sum(earlier) + seconds, len(losses), diverged, images_per_second)


def score(model, images, labels, tta, batch_size, chunk=4096):
    """Accuracy of `model` on `images`, plain and with each test-time augmentation up to `tta`.

    The images are read `chunk` at a time (rounded up to whole batches), so
    a streamed split (`keras_vit.data.streaming.FileImages`) is never
    decoded whole, and its views (ten per image for `"flip-shift"`) never
    held for all of it at once.

    Args:
        model: a classifier of float images (0..255) into logits.
        images: array `(n, height, width, channels)`, or array-like that
            decodes a slice on `np.asarray`.
        labels: int array `(n,)`.
        tta: `"flip"` or `"flip-shift"` (`keras_vit.tta`).
        batch_size: images per prediction call.
        chunk: images read at a time.

    Returns:
        `{"none": ..., "flip": ..., ["flip-shift": ...]}` accuracies.
    """
    views = view_logits_in_chunks(model, images, tta, batch_size, chunk, progress=False)
    return tta_accuracies(views, labels)


def save_model_atomic(model, path, before_replace=None):
    """Saves `model` to the `.keras` file `path` through `keras_vit.files.atomic_path`.

    A reader never sees a half-written model; a save that fails leaves the
    previous file (or none) and no temporary file.

    Args:
        before_replace: called once the new file is written, before it
            replaces the previous one.
    """
    with atomic_path(path) as tmp:
        model.save(tmp)
        if before_replace is not None:
            before_replace()


def run_metrics(outcome, splits, model, train_images_per_epoch, args):
    """The fields every run's `metrics.json` has, beside the run's own.

    Args:
        outcome: the `FitOutcome`.
        splits: the `keras_vit.data.Splits` trained and scored on.
        model: the saved model.
        train_images_per_epoch: images an epoch trains on (full batches).
        args: the parsed command-line arguments, recorded whole.
    """
    return {
        "test_images": int(len(splits.y_test)),
        "train_images": int(len(splits.x_train)),
        "validation_images": 0 if splits.y_val is None else int(len(splits.y_val)),
        "images_per_epoch": int(train_images_per_epoch),
        "parameters": int(model.count_params()),
        "epochs": outcome.epochs,
        "diverged": outcome.diverged,
        "wall_clock_seconds": round(outcome.seconds, 1),
        "train_images_per_second": (
            None if outcome.images_per_second is None else round(outcome.images_per_second, 1)
        ),
        "backend": keras.backend.backend(),
        "device": describe_device(),
        # The versions and the CPU's numerics settings: a run is bitwise repeatable only with the same ones.
        "machine": machine_summary(),
        "data_source": splits.source,
        "skipped_images": len(splits.skipped),
        "args": vars(args),
    }


def save_run(output, model, class_names, metrics, history_path=None):
    """Writes `model.keras`, `labels.txt`, `history.csv` and `metrics.json` to `output`, each atomically.

    A run keeps its history in a working file until here, so a run that
    fails or is killed never leaves the history of one run beside the model of
    another. The metrics go last, and the previous run's are removed before
    its model is replaced: a folder with a `metrics.json` holds the model,
    labels and history it describes (a save that fails before the new model is
    written leaves the previous run's files as they were; the previous labels
    go with its metrics, so no model is read with another's names).

    Args:
        output: the run's folder.
        model: the model to save.
        class_names: the names of its outputs, in order.
        metrics: the dict to write as `metrics.json`.
        history_path: the working `history.csv` to publish (None: none).

    Raises:
        ValueError: a class name a labels file cannot hold (nothing is written).
    """
    output = Path(output)
    metrics_path, labels_path = output / "metrics.json", output / "labels.txt"
    check_class_names(class_names)  # before the model: a model is never published without its labels

    def remove_the_previous_runs():  # its metrics and labels describe another model
        metrics_path.unlink(missing_ok=True)
        labels_path.unlink(missing_ok=True)

    save_model_atomic(model, output / "model.keras", before_replace=remove_the_previous_runs)
    write_labels(labels_path, class_names)
    if history_path is not None and Path(history_path).exists():
        atomic_write_bytes(output / "history.csv", Path(history_path).read_bytes())
    atomic_write_json(metrics_path, metrics)


def _accelerator(backend: str) -> str | None:
    """The first accelerator `backend` computes on, with the framework's version; None on a CPU.

    Imports only the active backend's framework: the others may not be installed.
    """
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return None if device.platform == "cpu" else f"{device.device_kind} (jax {jax.__version__})"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
        return None
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
            return f"{name} (tensorflow {tf.__version__})"
    return None


def describe_device() -> str:
    """The accelerator Keras' backend computes on, else the CPU and its cores.

    Returns:
        e.g. `"<GPU name> (jax 0.6.2)"`, or `"<CPU name>, 2 cores (tensorflow)"`.
    """
    backend = keras.backend.backend()
    return _accelerator(backend) or f"{cpu_name()}, {usable_cores()} cores ({backend})"
