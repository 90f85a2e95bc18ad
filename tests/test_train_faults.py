"""python -m keras_vit.train under faults: kills at the dangerous moments, signals, a second run, divergence,
a full disk, bad output folders. Real subprocesses are stopped where `keras_vit.files.pause_point` holds them."""

import errno
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from keras_vit import train
from keras_vit.files import PAUSE_ENV, stale_temporaries
from keras_vit.plots import read_history_csv
from keras_vit.training import pipeline
from keras_vit.training.callbacks import EpochBackup

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--preset", "vit_micro", "--batch-size", "32", "--verbose", "0"]


class Paused:
    """`python -m MODULE ARGS` (`keras_vit.train` unless named) started with `$KERAS_VIT_TEST_PAUSE_AT=point`,
    waited for until it pauses."""

    def __init__(self, args, point, timeout=240, sigint_ignored=False, module="keras_vit.train"):
        env = {**os.environ, PAUSE_ENV: point, "PYTHONPATH": str(ROOT)}
        # SIGINT as a terminal's foreground command has it, or ignored as `cmd &` in a script starts it,
        # whatever the test process inherited.
        handler = "signal.SIG_IGN" if sigint_ignored else "signal.default_int_handler"
        launcher = (
            f"import runpy, signal; signal.signal(signal.SIGINT, {handler}); "
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", launcher, *map(str, args)],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.lines = []
        paused = threading.Event()

        def read():
            for line in self.process.stderr:
                self.lines.append(line)
                if line.strip() == f"paused at {point}":
                    paused.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not paused.wait(0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"never paused at {point}:\n{''.join(self.lines)[-3000:]}")

    def stop(self, sig=signal.SIGKILL):
        """Sends `sig`; returns the exit status and what the process printed to stderr."""
        self.process.send_signal(sig)
        try:
            status = self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(
                f"still running 120 s after {signal.Signals(sig).name}:\n{''.join(self.lines)[-3000:]}"
            )
        time.sleep(0.2)  # the reader thread drains the pipe
        return status, "".join(self.lines)


def epochs_in_history(out, working=False):
    """The epochs of the run's history: the published one, or the working one beside the checkpoint."""
    path = out / "checkpoint" / "history.csv" if working else out / "history.csv"
    rows = path.read_text().splitlines()[1:]
    return [int(row.split(",")[0]) for row in rows]


def run_args(tiny_tree, out, epochs, *extra):
    return [*ARGS, "--epochs", str(epochs), "--data-dir", str(tiny_tree), "--output", str(out), *extra]


def test_killed_after_fit_before_the_model_is_written_resumes_without_retraining(tiny_tree, tmp_path, capsys):
    out = tmp_path / "run"
    args = run_args(tiny_tree, out, 2)
    Paused(args, "before-replace:model.keras").stop()
    assert EpochBackup.saved_epochs(out / "checkpoint") == 2  # kept until everything is written
    assert stale_temporaries(out)  # the half-written model the kill left
    assert train.main(args) == 0
    assert "Resuming from the checkpoint of epoch 2" in capsys.readouterr().out
    assert epochs_in_history(out) == [0, 1]  # no epoch trained again, none twice
    # Strict JSON (it held NaN images/s), and the seconds of the epochs trained before the kill (it held 0.2).
    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=pytest.fail)
    assert metrics["epochs"] == 2
    epoch_seconds = sum(read_history_csv(out / "history.csv")["epoch_seconds"])
    assert metrics["wall_clock_seconds"] >= round(epoch_seconds, 1) > 0
    assert metrics["train_images_per_second"] > 0
    assert not stale_temporaries(out) and not (out / "checkpoint").exists()


def test_killed_while_the_checkpoint_is_written_resumes_from_the_previous_one(tiny_tree, tmp_path):
    out = tmp_path / "run"
    args = run_args(tiny_tree, out, 3)
    Paused(args, "before-replace:epoch_00002.weights.h5").stop()
    checkpoint = out / "checkpoint"
    assert EpochBackup.saved_epochs(checkpoint) == 1 and (checkpoint / "epoch_00001.weights.h5").exists()
    result = subprocess.run(
        [sys.executable, "-m", "keras_vit.train", *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Resuming from the checkpoint of epoch 1" in result.stdout
    assert epochs_in_history(out) == [0, 1, 2]
    assert not stale_temporaries(checkpoint)


def test_killed_just_after_a_checkpoint_resumes_with_every_history_row_under_its_column(tiny_tree, tmp_path):
    """Killed once the checkpoint of epoch 1 is written: that epoch's history row is on disk already (it was lost
    when the row was written after the checkpoint), and the resumed run, whose first epoch validates
    (--validation-freq 2), writes its rows under the file's columns (Keras' CSVLogger shifted them)."""
    out = tmp_path / "run"
    args = run_args(tiny_tree, out, 3, "--validation-split", "0.25", "--validation-freq", "2")
    Paused(args, "checkpoint-written").stop()
    assert EpochBackup.saved_epochs(out / "checkpoint") == 1
    assert train.main(args) == 0
    assert epochs_in_history(out) == [0, 1, 2]
    rows = (out / "history.csv").read_text().splitlines()
    assert {len(row.split(",")) for row in rows} == {len(rows[0].split(","))}
    history = read_history_csv(out / "history.csv")
    assert [math.isnan(loss) for loss in history["val_loss"]] == [True, False, True]  # epoch 2 validated
    assert all(0.0 <= accuracy <= 1.0 for accuracy in history["val_accuracy"] if not math.isnan(accuracy))


def test_killed_between_checkpoints_leaves_a_history_of_exactly_the_requested_epochs(tiny_tree, tmp_path):
    out = tmp_path / "run"
    args = run_args(tiny_tree, out, 5, "--checkpoint-every", "2")
    Paused(args, "epoch-begin:4").stop()  # epochs 1-3 in the history, the checkpoint holds 2
    assert (
        epochs_in_history(out, working=True) == [0, 1, 2]
        and EpochBackup.saved_epochs(out / "checkpoint") == 2
    )
    assert not (out / "history.csv").exists()  # published only with the model
    assert train.main(args) == 0
    assert epochs_in_history(out) == [0, 1, 2, 3, 4]
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 5


def test_a_truncated_checkpoint_is_one_clear_line(tiny_tree, tmp_path, capsys):
    out = tmp_path / "run"
    checkpoint = out / "checkpoint"
    checkpoint.mkdir(parents=True)
    (checkpoint / "latest.weights.h5").write_bytes(b"\x89HDF\r\n" + bytes(90))  # Keras' own, cut short
    (checkpoint / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    assert train.main(run_args(tiny_tree, out, 2)) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: the resume checkpoint in") and "--fresh" in err and len(err.splitlines()) == 1
    )
    assert train.main(run_args(tiny_tree, out, 2, "--fresh")) == 0


@pytest.mark.parametrize(
    ("sig", "status", "sigint_ignored"),
    [
        pytest.param(signal.SIGTERM, 143, False, id="sigterm"),
        pytest.param(signal.SIGINT, 130, False, id="sigint"),
        pytest.param(signal.SIGINT, 130, True, id="sigint-started-ignored"),
    ],
)
def test_a_signal_saves_what_it_can_and_says_how_to_resume(tiny_tree, tmp_path, sig, status, sigint_ignored):
    out = tmp_path / "run"
    args = run_args(tiny_tree, out, 3)
    code, err = Paused(args, "epoch-begin:2", sigint_ignored=sigint_ignored).stop(sig)
    assert code == status
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: the checkpoint of epoch 1") and "rerun the same command" in last
    assert "Traceback" not in err
    assert EpochBackup.saved_epochs(out / "checkpoint") == 1 and not stale_temporaries(out)


def test_a_second_run_on_the_same_folder_is_refused_and_a_killed_ones_lock_does_not_block(
    tiny_tree, tmp_path
):
    out = tmp_path / "run"
    args = run_args(tiny_tree, out, 2)
    first = Paused(args, "epoch-begin:2")
    second = subprocess.run(
        [sys.executable, "-m", "keras_vit.train", *args], capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 2
    assert second.stderr.strip().splitlines()[-1] == (
        f"error: another run is writing to {out}; wait for it to end or choose another --output"
    )
    first.stop()
    assert (out / pipeline.LOCK_NAME).exists()  # left by the killed run
    assert train.main(args) == 0  # the OS released its lock


def test_a_diverging_run_keeps_the_previous_model_and_exits_non_zero(tiny_tree, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(run_args(tiny_tree, out, 1)) == 0
    model_before = (out / "model.keras").read_bytes()
    metrics_before = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert (
        train.main(run_args(tiny_tree, out, 2, "--learning-rate", "1e6", "--clipnorm", "0", "--fresh")) == 1
    )
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and "model.keras was not written" in err
    assert (out / "model.keras").read_bytes() == model_before
    assert (out / "metrics.json").read_text() == metrics_before


def test_a_full_disk_during_the_final_save_is_one_line_and_keeps_the_previous_files(
    tiny_tree, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    assert train.main(run_args(tiny_tree, out, 1)) == 0
    before = {name: (out / name).read_bytes() for name in ("model.keras", "labels.txt", "metrics.json")}

    def disk_full(model, path, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pipeline, "save_model_atomic", disk_full)
    capsys.readouterr()
    assert train.main(run_args(tiny_tree, out, 1, "--fresh")) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == f"error: cannot write to {out}: No space left on device; the files written before are intact"
    )
    assert {name: (out / name).read_bytes() for name in before} == before
    assert EpochBackup.saved_epochs(out / "checkpoint") == 1  # the run can still be finished


def test_a_disk_without_room_for_the_next_checkpoint_is_one_line_and_keeps_the_last(
    tiny_tree, tmp_path, capsys, monkeypatch
):
    """h5py crashed the process (a segmentation fault) when the disk filled in the middle of a checkpoint: the room
    is checked before each checkpoint is written, and a full disk then is the command's one line, exit 2."""
    from keras_vit.training import callbacks

    free = iter([2**40])  # room for the first checkpoint, none for the second

    monkeypatch.setattr(callbacks, "_free_bytes", lambda folder: next(free, 0))
    out = tmp_path / "run"
    assert train.main(run_args(tiny_tree, out, 2)) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == f"error: cannot write to {out}: No space left on device; the files written before are intact"
    )
    assert EpochBackup.saved_epochs(out / "checkpoint") == 1
    assert not stale_temporaries(out / "checkpoint") and not (out / "model.keras").exists()
    monkeypatch.undo()
    assert train.main(run_args(tiny_tree, out, 2)) == 0  # room again: the run resumes and ends
    assert "Resuming from the checkpoint of epoch 1" in capsys.readouterr().out


def test_a_ctrl_c_dropped_where_it_arrived_still_stops_the_run_between_epochs(
    tiny_tree, tmp_path, capsys, monkeypatch
):
    """Python drops an exception raised inside a garbage-collector callback, and a Ctrl-C landing there (JAX frees
    buffers in one) was lost: the run went on and wrote its model, exit 0. It now stops at the next epoch's start or
    end (after its checkpoint), as a Ctrl-C does."""
    from conftest import signal_inside_a_gc_callback

    from keras_vit.training.batches import TrainingBatches

    set_epoch = TrainingBatches.set_epoch

    def set_epoch_then_ctrl_c(self, epoch):
        set_epoch(self, epoch)
        if epoch == 1:  # at the start of the second epoch: it is not trained
            signal_inside_a_gc_callback(signal.SIGINT)

    monkeypatch.setattr(TrainingBatches, "set_epoch", set_epoch_then_ctrl_c)
    out = tmp_path / "run"
    assert train.main(run_args(tiny_tree, out, 2)) == 130
    assert "interrupted: the checkpoint of epoch 1" in capsys.readouterr().err
    assert EpochBackup.saved_epochs(out / "checkpoint") == 1 and not (out / "model.keras").exists()
    monkeypatch.undo()
    assert train.main(run_args(tiny_tree, out, 2)) == 0
    assert "Resuming from the checkpoint of epoch 1" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["last-step", "after-last-epoch"])
def test_a_ctrl_c_dropped_in_the_last_epoch_stops_the_run_before_its_model_is_written(
    tiny_tree, tmp_path, capsys, monkeypatch, where
):
    """A Ctrl-C dropped in the last epoch's steps stops the run at that epoch's end, inside fit, after its checkpoint;
    one dropped after the last epoch's end (in a callback's on_train_end) stops it once fit returns: exit 130, no
    model.keras, the last epoch's checkpoint kept to resume from."""
    from conftest import signal_inside_a_gc_callback

    ended = []

    class Timer(pipeline.EpochTimer):
        def on_train_batch_end(self, batch, logs=None):
            if where == "last-step" and len(self.times) == 1 and batch == 0:  # in the second and last epoch
                signal_inside_a_gc_callback(signal.SIGINT)

        def on_train_end(self, logs=None):
            ended.append(len(self.times))
            if where == "after-last-epoch":
                signal_inside_a_gc_callback(signal.SIGINT)

    monkeypatch.setattr(pipeline, "EpochTimer", Timer)
    out = tmp_path / "run"
    assert train.main(run_args(tiny_tree, out, 2)) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"interrupted: the checkpoint of epoch 2 in {out / 'checkpoint'} is kept; rerun the same command to resume"
    )
    assert EpochBackup.saved_epochs(out / "checkpoint") == 2 and not (out / "model.keras").exists()
    # The last step's Ctrl-C ended fit at that epoch's end: the callbacks' on_train_end never ran.
    assert ended == ([] if where == "last-step" else [2])


def test_output_folder_problems_are_found_before_the_data_loads(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    nowhere = tmp_path / "no_data"  # would fail later, when the data load: the output is checked first
    assert train.main([*ARGS, "--data-dir", str(nowhere), "--output", str(a_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(a_file) in err and str(nowhere) not in err


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (root only; skipped where mounting is not permitted)."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


def test_a_disk_too_small_is_refused_before_the_data_loads(small_disk, tiny_tree, capsys):
    out = small_disk / "run"
    assert (
        train.main([*ARGS, "--preset", "vit_tiny", "--data-dir", str(tiny_tree), "--output", str(out)]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "free on its disk" in err and "needed" in err
