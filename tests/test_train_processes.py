"""python -m keras_vit.train as a job of several processes (JAX, the coordinator on 127.0.0.1, gloo): the same
run as one process, process 0 alone writing, a killed job resumed by every process from process 0's checkpoint
(launched as Slurm's srun would, with no process flags)."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import REPO_ROOT

from keras_vit import load_model, train
from keras_vit.files import PAUSE_ENV

# vit_micro, 96 training and 24 validation images of the tiny tree: 6 steps of 16 an epoch, crop+flip in the step;
# the time limit runs on process 0's clock, the EMA swaps in at the end.
ARGS = [
    "--preset", "vit_micro", "--batch-size", "16", "--verbose", "0", "--validation-split", "0.2",
    "--distribute", "data", "--time-limit", "600", "--ema-momentum", "0.9",
]  # fmt: skip


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_slurm_job_id():
    """A Slurm job id whose coordinator port (JAX takes 61440 + the id mod 4096) is free here."""
    for job_id in range(4096):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", 61440 + job_id))
            except OSError:
                continue
            return job_id
    pytest.skip("no free port for a Slurm coordinator")


def slurm_variables(job_id, count, index):
    """The variables `srun` gives task `index` of `count` on one node."""
    return {
        "SLURM_JOB_ID": str(job_id),
        "SLURM_STEP_NODELIST": "127.0.0.1",
        "SLURM_NTASKS": str(count),
        "SLURM_PROCID": str(index),
        "SLURM_LOCALID": str(index),
    }


class Job:
    """`count` processes of `python -m keras_vit.train ARGS` joined through 127.0.0.1.

    `devices`: virtual CPU devices per process. `pause` (process index, point) holds that process at
    `keras_vit.files.pause_point(point)`. `slurm`: the processes learn the job from the variables Slurm's `srun`
    sets (`--num-processes auto`), not from flags.
    """

    def __init__(self, args, count, outputs, pause=None, slurm=False, devices=1):
        port, job_id = free_port(), free_slurm_job_id() if slurm else None
        self.processes, self.lines = [], [[] for _ in range(count)]
        for index in range(count):
            env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO_ROOT)}
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
            if pause and pause[0] == index:
                env[PAUSE_ENV] = pause[1]
            joins = [
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                str(count),
                "--process-id",
                str(index),
            ]
            if count == 1:
                joins = []
            if slurm:
                joins = ["--num-processes", "auto"]
                env.update(slurm_variables(job_id, count, index))
            command = [
                sys.executable,
                "-m",
                "keras_vit.train",
                *args,
                "--output",
                str(outputs[index]),
                *joins,
            ]
            process = subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            threading.Thread(target=self._read, args=(process, self.lines[index]), daemon=True).start()
            self.processes.append(process)

    @staticmethod
    def _read(process, lines):
        for line in process.stdout:
            lines.append(line)

    def output(self, index):
        return "".join(self.lines[index])

    def wait(self, timeout=400):
        """The processes' exit statuses (all killed on a timeout: None)."""
        deadline = time.monotonic() + timeout
        try:
            for process in self.processes:
                try:
                    process.wait(timeout=max(deadline - time.monotonic(), 1))
                except subprocess.TimeoutExpired:
                    break
            return [process.poll() for process in self.processes]
        finally:
            for process in self.processes:
                process.kill()
            time.sleep(0.2)  # the readers drain the pipes

    def wait_for(self, index, text, timeout=300):
        deadline = time.monotonic() + timeout
        while text not in self.output(index):
            if time.monotonic() > deadline or self.processes[index].poll() is not None:
                self.kill()
                pytest.fail(f"process {index} never printed {text!r}:\n{self.output(index)[-3000:]}")
            time.sleep(0.2)

    def kill(self):
        for process in self.processes:
            process.send_signal(signal.SIGKILL)
        self.wait(60)


def test_two_processes_train_as_one_write_once_and_resume_together(tiny_tree, tmp_path):
    args = [*ARGS, "--epochs", "3", "--data-dir", str(tiny_tree)]
    one = Job(args, 1, [tmp_path / "one"])
    assert one.wait() == [0], one.output(0)[-3000:]

    # Killed (both processes) when process 0 starts epoch 3: the checkpoint holds epoch 2.
    two = tmp_path / "two"
    killed = Job(args, 2, [two, two], pause=(0, "epoch-begin:3"))
    killed.wait_for(0, "paused at epoch-begin:3")
    killed.kill()
    assert json.loads((two / "checkpoint" / "checkpoint.json").read_text())["epoch"] == 2
    assert not (two / "model.keras").exists()

    # A process that cannot read the checkpoint (another folder: another file system) stops the job.
    apart = Job(args, 2, [two, tmp_path / "elsewhere"])
    assert apart.wait() == [2, 2], apart.output(0)[-3000:] + apart.output(1)[-3000:]
    for index in range(2):
        assert "error: the processes disagree on the epochs of the checkpoint" in apart.output(index)
        assert "process 0: 2, process 1: 0" in apart.output(index) and "shared file system" in apart.output(
            index
        )
    assert not (tmp_path / "elsewhere").exists()  # process 1 writes nothing

    # Resumed as a Slurm launch: the processes learn the job from srun's variables (--num-processes auto).
    resumed = Job(args, 2, [two, two], slurm=True)
    assert resumed.wait() == [0, 0], resumed.output(0)[-3000:] + resumed.output(1)[-3000:]
    for index in range(2):
        assert "Resuming from the checkpoint of epoch 2" in resumed.output(index)
        assert f"Process {index} of 2 (2 devices in all)" in resumed.output(index)
    assert "Wrote" in resumed.output(0) and "Wrote" not in resumed.output(1)

    alone = load_model(tmp_path / "one" / "model.keras").get_weights()
    together = load_model(two / "model.keras").get_weights()
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(alone, together))
    assert gap < 1e-5, gap  # float tolerance of 18 steps of all-reduced gradients
    metrics = {name: json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two")}
    for key in (
        "test_accuracy",
        "test_accuracy_flip_tta",
        "test_accuracy_flip_shift_tta",
        "validation_accuracy",
    ):
        assert metrics["one"][key] == metrics["two"][key], key  # the shares' counts summed over the processes
    assert metrics["two"]["epochs"] == 3 and metrics["two"]["test_images"] == 40
    history = (two / "history.csv").read_text().splitlines()
    assert [int(row.split(",")[0]) for row in history[1:]] == [0, 1, 2]
    assert sorted(path.name for path in two.iterdir()) == sorted(
        path.name for path in (tmp_path / "one").iterdir()
    )


def test_process_flags_need_jax_and_a_distribution(tiny_tree, tmp_path, capsys):
    # This test process runs TensorFlow.
    code = train.main(
        [*ARGS, "--data-dir", str(tiny_tree), "--output", str(tmp_path), "--num-processes", "2"]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "error: cannot join the job of several processes: several processes train together through Keras' "
        "distribution API on the JAX backend only (KERAS_BACKEND=jax); this process runs tensorflow"
    )
    lone = Job(["--preset", "vit_micro", "--data-dir", str(tiny_tree)], 2, [tmp_path / "a", tmp_path / "a"])
    assert lone.wait() == [2, 2]
    assert (
        "error: several processes train one model together: add --distribute data (or model)"
        in lone.output(1)
    )


def test_two_processes_split_the_model_as_one_process_with_their_devices(tiny_tree, tmp_path):
    """A 2x2 mesh whose model axis lies inside each process (2 processes of 2 devices) ends where one process of 4
    devices ends; a model axis across the processes is refused with one line."""
    args = [
        *ARGS[:-6],
        "--epochs",
        "1",
        "--data-dir",
        str(tiny_tree),
        "--distribute",
        "model",
        "--mesh",
        "2x2",
    ]
    one = Job(args, 1, [tmp_path / "one"], devices=4)
    assert one.wait() == [0], one.output(0)[-3000:]
    two = Job(args, 2, [tmp_path / "two"] * 2, devices=2)
    assert two.wait() == [0, 0], two.output(0)[-3000:] + two.output(1)[-3000:]
    alone = load_model(tmp_path / "one" / "model.keras").get_weights()
    together = load_model(tmp_path / "two" / "model.keras").get_weights()
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(alone, together)) < 1e-5

    across = Job([*args[:-1], "1x4"], 2, [tmp_path / "across"] * 2, devices=2)
    assert across.wait() == [2, 2]
    assert (
        "error: with 2 processes the model axis (4 devices) must divide each process's 2 devices"
        in across.output(0)
    )
