"""Tests for export/worker.py: a conversion's process returns its answer and never outlives its command."""

import operator
import os
import signal
import sys

import pytest
from export_helpers import Background

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
