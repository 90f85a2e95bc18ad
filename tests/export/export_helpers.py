"""Helpers of the export tests: the toy images, the command runner, what `python -m export` writes.

The fixtures built on them are in export_fixtures.py.
"""

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_vit.data import CIFAR10_CLASSES
from keras_vit.files import PAUSE_ENV

REPO = Path(__file__).resolve().parents[2]
CLASSES = CIFAR10_CLASSES
PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (128, 128, 128),
    ],
    np.float32,
)
N_TRAIN, N_TEST = 24, 10  # per class
# What `python -m export` writes, in its order.
FILES = [
    "savedmodel",
    "model_fp32.tflite",
    "model_fp16.tflite",
    "model_dynamic.tflite",
    "model_int8.tflite",
    "model.onnx",
]


def make_images(per_class, seed):
    """Class k: palette colour k, random brightness, pixel noise. uint8 NHWC, int32 labels."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), per_class)
    base = PALETTE[y][:, None, None, :] * rng.uniform(0.8, 1.2, (len(y), 1, 1, 1))
    x = base + rng.normal(0, 25, (len(y), 32, 32, 3))
    return np.clip(x, 0, 255).round().astype(np.uint8), y.astype(np.int32)


def run(args, *, env=None, cwd=REPO, timeout=600):
    """Runs `python -m ...args` and returns the CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def explain(proc):
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"


def error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def no_data_env(tmp):
    """An environment in which no CIFAR-10 copy can be found (and nothing downloaded)."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home),
        "KERAS_HOME": str(home / ".keras"),
        "TFDS_DATA_DIR": str(home / "tfds"),
        "KERAS_VIT_CACHE_DIR": str(tmp / "cache"),
        "KERAS_VIT_DATA_DIR": "",
    }


needs_tf_keras = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="in-process conversion needs Keras on TensorFlow"
)


# Set in the environment of a command started by `Background`: its processes, workers included, carry it.
RUN_MARKER_ENV = "KERAS_VIT_TEST_RUN"


def processes_with_marker(marker):
    """PIDs of the live processes whose environment holds `RUN_MARKER_ENV=marker` (Linux /proc)."""
    needle = f"{RUN_MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":  # a zombie has ended; its parent has not reaped it yet
                    found.append(int(entry.name))
        except OSError:  # it ended while we looked, or is not ours to read
            continue
    return found


class Background:
    """`python -m ...args` (`module=False`: `python ...args`) started in the background, to be killed at a
    pause point (`keras_vit.files.pause_point`).

    Its stdout goes to a file (nothing blocks on a full pipe), its stderr is
    read line by line by a thread; every process it starts carries a marker
    in its environment (`processes`), so that a worker outliving it is found.
    """

    def __init__(self, args, *, pause, log, env=None, module=True):
        self.marker = uuid.uuid4().hex
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        full_env.update(env or {})
        full_env.update({PAUSE_ENV: pause, RUN_MARKER_ENV: self.marker})
        self.stdout_path = Path(log)
        with open(self.stdout_path, "w") as stdout:
            self.process = subprocess.Popen(
                [sys.executable, *(["-m"] if module else []), *map(str, args)],
                cwd=REPO,
                env=full_env,
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
            )
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text, timeout=300):
        """Waits until a stderr line contains `text`; fails with the output if the process ends first."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                self._reader.join(10)
                raise AssertionError(f"no {text!r} on stderr (exit {self.process.poll()}):\n{self.output()}")
            time.sleep(0.2)

    def finish(self, timeout=120):
        """Waits for the process and its stderr; returns its exit status."""
        status = self.process.wait(timeout)
        self._reader.join(timeout)
        return status

    def processes(self, settle=15):
        """The processes still carrying this command's marker, after up to `settle` seconds for them to end."""
        deadline = time.monotonic() + settle
        while (left := processes_with_marker(self.marker)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left

    def kill_leftovers(self):
        """Kills what `processes` found (so that a failing test does not leave 900 MB workers behind)."""
        for pid in processes_with_marker(self.marker):
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    def output(self):
        stdout = self.stdout_path.read_text() if self.stdout_path.exists() else ""
        return f"--- stdout\n{stdout[-3000:]}\n--- stderr\n" + "\n".join(self.lines[-60:])
