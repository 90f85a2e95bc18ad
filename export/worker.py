"""Runs one function in a fresh process that never outlives the command that started it.

The TFLite converter leaks memory on every call, so the all-formats export
runs each conversion in its own process (`run_isolated`). That process must
not survive its parent: killed with SIGKILL, the parent cannot clean up, so
on Linux the worker asks the kernel to kill it when its parent dies
(`prctl(PR_SET_PDEATHSIG)`); elsewhere a thread in the worker watches its
parent. On SIGINT/SIGTERM (`export.common.Interrupted`) or any other error in
the parent, `run_isolated` kills the worker before it re-raises.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading

from export.common import ExportFailure, raise_if_interrupted
from keras_vit.cli_utils import first_line
from keras_vit.files import pause_point

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_SECONDS = 0.5  # how often the parent looks at the worker while it waits (and lets signals in)


def run_isolated(function, *args, name):
    """`function(*args)` in a fresh (spawned) process; returns its result or raises its exception.

    Args:
        function: a module-level function (it is pickled by reference).
        *args: its arguments (pickled).
        name: what the process does, for messages and the test hook
            `pause_point("worker:<name>")`.

    Raises:
        The function's exception (an `ExportError`, an `OSError`, ...);
        `ExportFailure` when the process dies without an answer (killed, out
        of memory). A `BaseException` in the parent (`Interrupted`) kills the
        worker first.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_worker,
        args=(sender, os.getpid(), name, function, args),
        name=f"keras-vit {name}",
        daemon=True,
    )
    process.start()
    sender.close()  # the worker holds the only write end: its death is an end of file here
    try:
        while not receiver.poll(POLL_SECONDS):  # a timeout, so that a signal is acted on at once
            raise_if_interrupted()
        try:
            status, value = receiver.recv()
        except EOFError:
            process.join()
            raise ExportFailure(
                f"the worker process converting {name} died (exit status {process.exitcode}; out of memory?)."
            ) from None
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        receiver.close()
    if status == "error":
        raise value
    return value


def _worker(sender, parent_pid, name, function, args):
    """The worker process: die with the parent, leave Ctrl-C to it, run, send `(status, value)` back."""
    _die_with_parent(parent_pid)
    # Ctrl-C reaches every process of the terminal's group; the parent decides, and kills this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pause_point(f"worker:{name}")
    try:
        answer = ("ok", function(*args))
    except Exception as e:  # sent to the parent, which raises it
        answer = ("error", e)
    try:
        sender.send(answer)
    except Exception as e:  # an exception that does not pickle: its first line
        sender.send(
            ("error", ExportFailure(first_line(answer[1] if answer[0] == "error" else e, with_type=True)))
        )
    sender.close()


def _die_with_parent(parent_pid):
    """Makes this process end when `parent_pid` does (see the module docstring)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        # The parent's sentinel (`_worker` runs in a process multiprocessing started): on Windows os.getppid() keeps
        # giving a dead parent's id.
        parent = multiprocessing.parent_process()

        def watch():
            parent.join()
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)
