"""What the command lines share: one-line errors, the argparse value types, SIGINT/SIGTERM as exceptions and
a quiet end when the reader of the output stops early.

Standard library only, so that the TF-free deployment runtime and the
exporters can import it before (or without) Keras.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import glob
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import warnings
from pathlib import Path

# Longest message `first_line` keeps: an error line, not a dump.
MAX_LINE = 400


class CLIError(Exception):
    """An error a command line reports as one `error: ...` line: bad input, or a place it cannot read or write.

    Attributes:
        exit_status: the command's exit status, 2 (`RunFailed`, a failure of
            the work itself, its input being fine, says 1).
    """

    exit_status = 2


class RunFailed(CLIError):
    """The work ran on good input and failed (a check of what it made, a conversion): exit status 1."""

    exit_status = 1


class Terminated(BaseException):
    """SIGTERM, raised where the process is, as Ctrl-C raises `KeyboardInterrupt`."""


@contextlib.contextmanager
def signal_handlers(handlers):
    """Sets `handlers` (`{signal number: handler}`) for the block and restores the previous ones after it.

    Outside the main thread, where Python cannot set handlers, it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# The signals a `stop_on_signals` block received: Python drops an exception raised where a signal arrived inside a
# garbage-collector callback or a `__del__` (JAX frees buffers in one), so the run would go on; see `raise_if_signalled`.
_received = []


def _raise_for(signum):
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt


def _on_signal(signum, frame):
    _received.append(signum)
    _raise_for(signum)


@contextlib.contextmanager
def stop_on_signals():
    """Turns SIGTERM into a `Terminated` exception and SIGINT into `KeyboardInterrupt` for the block, so writes
    in progress roll back (outside the main thread it does nothing).

    SIGINT is set too because a process started in the background by a script (`cmd &`) inherits SIGINT
    ignored, and Python then leaves it ignored: `kill -INT` would do nothing. The export commands do the same.
    A signal whose exception was dropped is raised again by `raise_if_signalled`.
    """
    _received.clear()
    try:
        with signal_handlers({signal.SIGTERM: _on_signal, signal.SIGINT: _on_signal}):
            yield
    finally:
        _received.clear()


def raise_if_signalled():
    """Raises the exception of a signal the enclosing `stop_on_signals` block received, if it is still running: the
    exception raised when the signal arrived was dropped (inside a garbage-collector callback, for one). Long work
    calls it between steps."""
    if _received:
        _raise_for(_received[0])


def interrupted_status(stop: BaseException) -> int:
    """The exit status of a command that `stop_on_signals` stopped: 130 for Ctrl-C (`KeyboardInterrupt`), 143 for
    SIGTERM (`Terminated`), as a shell reports a command those signals killed."""
    return 130 if isinstance(stop, KeyboardInterrupt) else 143


# The exit status of a Unix tool that SIGPIPE ended (128 + 13): what a shell reports for `yes | head`.
CLOSED_STDOUT_STATUS = 141


def exits_quietly_on_closed_stdout(main):
    """Wraps a command's `main`: a reader that stops early (`... | head`) ends the command with status 141, as
    it ends other Unix tools, instead of a BrokenPipeError traceback.

    Python flushes standard output again at exit; it is pointed at /dev/null first, so that flush cannot fail too.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            status = main(*args, **kwargs)
            sys.stdout.flush()
        except OSError as error:
            if not (isinstance(error, BrokenPipeError) or _closed_on_windows(error)):
                raise
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return CLOSED_STDOUT_STATUS
        return status

    return wrapper


def _closed_on_windows(error: OSError) -> bool:
    """Whether `error` is Windows' word for a closed standard output: EINVAL (cpython#79935), when writing to it
    still fails."""
    if sys.platform != "win32" or error.errno != errno.EINVAL:
        return False
    try:
        sys.stdout.flush()
    except OSError:
        return True
    return False


def interrupted_in_one_line(main):
    """Wraps a command's `main`: Ctrl-C before the command set its own handling (while Keras and the backend are
    imported, for one) is the line `interrupted` and status 130, not a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def console_output(main):
    """Wraps a command's `main` for what it prints: a Python warning (an image skipped, say) is the line
    `warning: ...`, not the path and line number of the library code that warned followed by that line's source;
    and a character the output's encoding cannot write (a class name printed to a file on Windows, in cp1252) is
    escaped rather than a `UnicodeEncodeError` that would stop the command."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "reconfigure"):  # a TextIOWrapper (a replaced stream may not be one)
                stream.reconfigure(errors="backslashreplace")
        previous = warnings.formatwarning
        warnings.formatwarning = _one_line_warning
        try:
            return main(*args, **kwargs)
        finally:
            warnings.formatwarning = previous

    return wrapper


# The Keras backends that are not a dependency of the package, by their top-level module.
_OPTIONAL_BACKENDS = {"jax": "jax[cpu]", "torch": "torch"}


def missing_backend_in_one_line(main):
    """Wraps a command's `main`: a Keras backend that is not installed (`KERAS_BACKEND=jax` without JAX) is one
    line naming what to install and status 2, not the traceback of Keras' import."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except ModuleNotFoundError as error:
            # A missing submodule (`jax.experimental.x`) is a broken install, not an absent backend.
            if error.name not in _OPTIONAL_BACKENDS:
                raise
            print(
                f"error: the Keras backend {error.name} is not installed: pip install '{_OPTIONAL_BACKENDS[error.name]}'",
                file=sys.stderr,
            )
            return 2

    return wrapper


def first_line(error: BaseException, with_type: bool = False) -> str:
    """The first non-blank line of an exception's message, for a one-line report.

    Args:
        error: the exception.
        with_type: whether to start with the exception's type name
            (`"OSError: ..."`), for errors from libraries whose message alone
            does not say what went wrong.

    Returns:
        The line (at most `MAX_LINE` characters); the type name alone when
        the message is empty.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    name = type(error).__name__
    if not lines:
        return name
    return (f"{name}: {lines[0]}" if with_type else lines[0])[:MAX_LINE]


def print_error(message, one_line: bool = False) -> None:
    """Prints `error: message` on stderr.

    Args:
        message: the text, or an exception (its message).
        one_line: whether to join a message of several lines into one (line
            breaks and runs of spaces become one space).
    """
    text = str(message)
    if one_line:
        text = " ".join(text.split())
    print(f"error: {text}", file=sys.stderr)


def _size(num_bytes: float) -> str:
    """A byte count for people: `"512 bytes"`, `"3.1 MB"`, `"2.0 GB"`."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if num_bytes < 1000 or unit == "TB":
            return f"{num_bytes:.0f} {unit}" if unit == "bytes" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1000
    raise AssertionError("unreachable")


def check_output_folder(path, min_free_bytes: int | None = None, what: str = "output folder") -> Path:
    """Checks, before any long work, that a command can write its results into `path`.

    Creates the folder (and its parents) if needed, then creates and removes a
    temporary file in it, so that a read-only disk, a missing permission or a
    full disk is one clear line now rather than a traceback after the data has
    loaded.

    Args:
        path: the folder.
        min_free_bytes: if given, the free space the folder's disk must have.
        what: what the folder is, for the message (e.g. `"--output"`).

    Returns:
        `path`, as a `Path`.

    Raises:
        CLIError: `path` (or one of its parents) exists and is not a folder, or
            it cannot be created, cannot be written to, or has less than
            `min_free_bytes` free.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{what} {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        reason = "a part of it is a file" if e.errno in (errno.EEXIST, errno.ENOTDIR) else os_error_reason(e)
        raise CLIError(f"cannot create {what} {path}: {reason}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise CLIError(f"cannot write to {what} {path}: {os_error_reason(e)}") from None
    if min_free_bytes is not None:
        free = shutil.disk_usage(path).free
        if free < min_free_bytes:
            raise CLIError(
                f"{what} {path} has {_size(free)} free on its disk; at least {_size(min_free_bytes)} needed"
            )
    return path


def missing_folders(path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, deepest first: the folders creating it would add."""
    path = Path(os.path.abspath(path))  # `..` resolved: `x/../out` adds `out` alone
    return [folder for folder in (path, *path.parents) if not folder.exists()]


def remove_empty_folders(folders, leftovers=()) -> None:
    """Removes `folders`, deepest first, while each holds nothing but the names in `leftovers` (removed with it).

    Stops at the first folder that holds anything else or cannot be
    removed: what a command created and did not use goes, nothing else.
    """
    for folder in folders:
        try:
            names = {entry.name for entry in Path(folder).iterdir()}
            if not names <= set(leftovers):
                return
            for name in names:
                (Path(folder) / name).unlink()
            Path(folder).rmdir()
        except OSError:
            return


@contextlib.contextmanager
def output_folder(path, min_free_bytes: int | None = None, what: str = "output folder"):
    """`check_output_folder` for the block, and the folders it created removed again if the block leaves them empty.

    A command that fails before writing anything (missing data, a bad
    model, an interruption) then leaves no empty folder behind.

    Yields:
        `path`, as a `Path`.
    """
    created = missing_folders(path)
    try:
        yield check_output_folder(path, min_free_bytes, what)
    finally:
        remove_empty_folders(created)


def expand_wildcards(arguments) -> list[str]:
    """File arguments with their wildcards (`imgs\\*.jpg`) expanded, sorted, on Windows, whose shells leave that
    to the program; elsewhere (the shell expanded them) and for a name that exists or matches nothing, as given."""
    if sys.platform != "win32":
        return list(arguments)
    expanded = []
    for argument in arguments:
        wildcard = any(character in argument for character in "*?[")
        matches = sorted(glob.glob(argument)) if wildcard and not os.path.exists(argument) else []
        expanded += matches or [argument]
    return expanded


def os_error_reason(error: OSError) -> str:
    """`strerror` of an OSError (`"Read-only file system"`), else its first line with its type."""
    return error.strerror or first_line(error, with_type=True)


def _bounded_int(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1, with a clear message otherwise."""
    return _bounded_int(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0, with a clear message otherwise."""
    return _bounded_int(text, 0, "a non-negative integer")


def _bounded_float(text: str, low: float, inclusive: bool, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value) or value < low or (value == low and not inclusive):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0 (a learning rate, a tolerance), with a clear message otherwise."""
    return _bounded_float(text, 0.0, False, "a positive number")


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0 (a weight decay, a warmup, a clip where 0 is off)."""
    return _bounded_float(text, 0.0, True, "a number >= 0")


def unit_fraction(text: str) -> float:
    """argparse type: a float in [0, 1) (a share of something that cannot be all of it)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value
