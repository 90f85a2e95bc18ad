"""Tests for export/worker.py: a conversion's process returns its answer and never outlives its command."""

import operator
import os
import signal
import subprocess
import sys
import time

import pytest
from export_helpers import REPO, Background

from export.common import ExportError
from export.worker import run_isolated

pytest_plugins = ["export_fixtures"]

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds processes through /proc")


def test_run_isolated_returns_the_answer_or_raises_the_error():
    assert run_isolated(operator.add, 2, 3, name="add") == 5
    with pytest.raises(ZeroDivisionError):
        run_isolated(operator.truediv, 1, 0, name="divide")
    with pytest.raises(ExportError, match="process converting exit died .exit status 3"):
        run_isolated(os._exit, 3, name="exit")


@linux_only
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_worker_dies_with_its_command(how, tmp_path):
    """Killed (SIGKILL), the command cannot clean up: the worker still dies (the kernel kills it with its
    parent). SIGTERM and Ctrl-C: the command kills the worker, says so in one line, exits 143 and 130."""
    code = (
        "import sys, time\n"
        "from export import common, worker\n"
        "sys.exit(common.run_cli(lambda argv: worker.run_isolated(time.sleep, 600, name='sleep')))\n"
    )
    command = Background(["-c", code], pause="worker:sleep", log=tmp_path / "log.txt", module=False)
    try:
        command.wait_for("paused at worker:sleep", timeout=120)
        # The command, its worker (and multiprocessing's resource tracker, which ends with them).
        assert len(command.processes(settle=0)) >= 2
        command.process.send_signal(getattr(signal, how))
        status = command.finish()
        assert command.processes() == [], f"the worker outlived its command ({how})"
    finally:
        command.kill_leftovers()
    if how == "SIGKILL":
        assert status == -signal.SIGKILL
    else:
        assert status == {"SIGTERM": 143, "SIGINT": 130}[how], command.output()
        said = [line for line in command.lines if line.startswith(("interrupted", "error", "Traceback"))]
        assert said == [f"interrupted ({how}) before any output was written"], command.output()


def test_a_dropped_signal_stops_the_wait_for_the_worker_and_kills_it(capsys):
    """A Ctrl-C whose exception Python dropped (in a garbage-collector callback) is acted on while the command
    waits for its worker: the wait ends at once, the worker is killed, the command exits 130."""
    import time

    from conftest import signal_inside_a_gc_callback

    from export import common

    def main(argv):
        signal_inside_a_gc_callback(signal.SIGINT)
        return run_isolated(time.sleep, 600, name="sleep")

    start = time.monotonic()
    assert common.run_cli(main) == 130
    assert time.monotonic() - start < 120
    assert (
        capsys.readouterr().err.strip().splitlines()[-1]
        == "interrupted (SIGINT) before any output was written"
    )


# A worker started by multiprocessing, on the watcher thread macOS and Windows take (no prctl there): its parent
# exits; the worker must end within seconds. Prints the worker's pid.
WATCHED = """
import multiprocessing, os, sys, time

def worker(parent_pid):
    sys.platform = "darwin"  # the fallback's path: a watcher thread instead of prctl (as on Windows)
    os.getppid = lambda: parent_pid  # as on Windows, where a dead parent's id stays
    from export import worker as module
    module._die_with_parent(parent_pid)
    time.sleep(120)

if __name__ == "__main__":
    process = multiprocessing.get_context("spawn").Process(target=worker, args=(os.getpid(),))
    process.start()
    time.sleep(4)  # the worker has set its watcher
    print(process.pid, flush=True)
    os._exit(0)  # as a killed parent: no cleanup
"""


@linux_only
def test_the_watcher_of_a_worker_without_prctl_ends_it_with_its_parent(tmp_path):
    """On Windows os.getppid() keeps giving a dead parent's id: the watcher polled it and never fired, and the
    worker of a killed export converted on for minutes. It now waits on the parent's sentinel."""
    script = tmp_path / "watched.py"
    script.write_text(WATCHED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    printed = tmp_path / "printed.txt"  # a file, not a pipe: the worker holds what it inherits
    with open(printed, "w") as stdout:
        subprocess.run(
            [sys.executable, str(script)], stdout=stdout, stderr=subprocess.DEVNULL, timeout=120, env=env
        )
    pid = int(printed.read_text().split()[-1])
    deadline = time.monotonic() + 30
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = _running(pid)
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the worker outlived its parent"


def _running(pid):
    """Whether `pid` runs (a zombie waiting for its reaper does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
