"""keras_vit.training.processes alone (this test process: TensorFlow, one process); jobs of several processes are
tested in tests/training/test_distribute.py (Python) and tests/test_train_processes.py (the command)."""

import time

import numpy as np
import pytest

from keras_vit.training import processes


def test_alone_every_helper_is_the_identity():
    assert processes.process_share() == (0, 1)
    assert processes.process_rows(10) == slice(0, 10)
    np.testing.assert_array_equal(processes.sum_over_processes([3, 4.5]), [3.0, 4.5])
    processes.check_same_on_every_process(7, "anything")
    processes.wait_for_every_process("alone")
    assert processes.agreed_clock() is time.perf_counter
    assert processes.leave(2) == 2 and processes.leave(0) == 0
    with processes.writing_alone():
        pass
    with pytest.raises(ZeroDivisionError), processes.stop_when_a_process_fails():
        1 / 0  # alone, an error passes through as it is


@pytest.mark.parametrize(("count", "items"), [(2, 24), (3, 10), (4, 3)])
def test_process_rows_cover_every_item_once_in_order(monkeypatch, count, items):
    shares = []
    for index in range(count):
        monkeypatch.setattr(processes, "process_share", lambda index=index: (index, count))
        shares.append(processes.process_rows(items))
    rows = [row for share in shares for row in range(items)[share]]
    assert rows == list(range(items))
    assert max(len(range(items)[s]) for s in shares) - min(len(range(items)[s]) for s in shares) <= 1


def test_joining_needs_jax():
    with pytest.raises(ValueError, match="JAX backend only"):
        processes.join_processes("127.0.0.1:1", 2, 0)


@pytest.mark.parametrize(("index", "waits"), [(0, [processes.COORDINATOR_GRACE]), (1, [])])
def test_a_failed_job_leaves_with_its_status_and_the_coordinator_last(monkeypatch, index, waits):
    """In a job of several processes a non-zero status leaves at once (no shutdown barrier), process 0 (the
    coordination service, whose end aborts the processes still connected) a grace period after the others;
    a zero status returns."""
    events = []
    monkeypatch.setattr(processes, "process_share", lambda: (index, 2))
    monkeypatch.setattr(processes.time, "sleep", lambda seconds: events.append(("sleep", seconds)))
    monkeypatch.setattr(processes.os, "_exit", lambda status: events.append(("exit", status)))
    assert processes.leave(0) == 0 and events == []
    processes.leave(2)
    assert events == [("sleep", seconds) for seconds in waits] + [("exit", 2)]
    assert processes.COORDINATOR_GRACE >= 1
