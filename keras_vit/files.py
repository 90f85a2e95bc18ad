"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file keras-vit writes for others to read (models, labels, metrics,
plots, the decoded-image cache, exported files) goes through `atomic_path`:
the content is written to a temporary path in the same folder, then renamed
over the destination with `os.replace`. Standard library and numpy only, so
that the TF-free deployment runtime can import it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "", directory: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` to write to; on success it replaces `path`.

    The temporary name is hidden (`.<stem>.tmp-<random><suffix><extension>`),
    unique per call (two writers sharing a folder do not collide) and keeps
    `path`'s extension last, because Keras and the runtimes pick a file's
    type by its extension. A block that raises (or is interrupted) leaves the
    old file (or none) and no temporary file.

    Args:
        path: the destination; its folder must exist.
        suffix: text inserted before the extension in the temporary name.
        directory: whether the destination is a directory (a SavedModel):
            the block fills an empty temporary directory, which then takes
            the place of `path`. POSIX has no atomic swap of directories: an
            old `path` is renamed aside, the new one renamed in, the old one
            deleted, so a reader never sees a half-written directory.

    Yields:
        The temporary `Path`; it exists (an empty file, or an empty
        directory) when the block starts.
    """
    path = Path(path)
    extension = path.suffix
    prefix = f".{path.stem}.tmp-"
    if directory:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=f"{suffix}{extension}"))
    else:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=f"{suffix}{extension}")
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp/mkdtemp make owner-only entries; these files are not secret: the mode `open` would give.
        os.chmod(tmp, (0o777 if tmp.is_dir() else 0o666) & ~_umask())
        _fsync(tmp)  # the content is on disk before the name points at it
        pause_point(f"before-replace:{path.name}")
        _replace(tmp, path)
        _fsync(path.parent)  # and the rename too
    except BaseException:
        _remove(tmp)
        raise


def _umask() -> int:
    """The process's umask, read without changing it where Linux reports it (`/proc/self/status`)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)  # elsewhere: set and restore it at once
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    """Flushes a file, or every file of a directory tree and the directory itself, to the disk."""
    paths = [path] if not path.is_dir() else [*sorted(p for p in path.rglob("*") if p.is_file()), path]
    for item in paths:
        try:
            fd = os.open(item, os.O_RDONLY)
        except OSError:  # e.g. a directory on a platform that cannot open one
            continue
        try:
            os.fsync(fd)
        except OSError:  # filesystems without fsync (some network or FUSE mounts)
            pass
        finally:
            os.close(fd)


def stale_temporaries(folder: PathLike, names: Iterable[str] | None = None) -> list[Path]:
    """The temporary files and folders `atomic_path` left in `folder` when a process was killed mid-write.

    Only a process that owns the folder (it holds its lock) should remove
    them: another writer's temporary file looks the same while it is written.

    Args:
        folder: the folder to look in (not its subfolders).
        names: the final names (`"model.keras"`, `"export"`) whose
            temporaries to list, so that a process sharing the folder with
            other writers leaves theirs alone; `None`: every temporary.

    Returns:
        The paths, sorted.

    Raises:
        ValueError: a name that is not a plain file name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = (
        p for p in folder.iterdir() if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name)
    )
    if names is not None:
        patterns = [_temporary_pattern(name) for name in ([names] if isinstance(names, str) else names)]
        found = (p for p in found if any(_matches(p.name, pattern) for pattern in patterns))
    return sorted(found)


def _temporary_pattern(name: str) -> tuple[str, str, str]:
    """`(prefix, extension, aside prefix)` of the temporaries `atomic_path(folder / name)` makes."""
    path = Path(name)
    if path.name != name or name in ("", ".", ".."):
        raise ValueError(f"{name!r} is not a file name (no folder part).")
    return f".{path.stem}.tmp-", path.suffix, f".{path.name}.old-"


def _matches(entry: str, pattern: tuple[str, str, str]) -> bool:
    prefix, extension, aside = pattern
    return (entry.startswith(prefix) and entry.endswith(extension)) or entry.startswith(aside)


def remove_stale_temporaries(folder: PathLike, names: Iterable[str] | None = None) -> list[Path]:
    """Removes `stale_temporaries(folder, names)`; returns what it removed.

    Args:
        folder: the folder to clean (not its subfolders).
        names: the final names whose temporaries to remove (see
            `stale_temporaries`); `None`: every temporary in `folder`,
            those of another process writing there too.

    Returns:
        The paths removed, sorted.

    Raises:
        ValueError: a name that is not a plain file name.
    """
    removed = stale_temporaries(folder, names)
    for path in removed:
        _remove(path)
    return removed


@contextlib.contextmanager
def exclusive_lock(path: PathLike, busy_error: Exception) -> Iterator[None]:
    """Holds an OS file lock on `path` for the block, or raises `busy_error` at once if another process holds it.

    `filelock` (`flock` on Linux and macOS): the system releases the lock when
    its process ends however it ends, so a killed process never blocks the
    next one. The lock file stays, empty, between holders.
    """
    import filelock  # here: the TF-free runtime (export.runtime) imports this module and needs no lock

    lock = filelock.FileLock(os.fspath(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise busy_error from None
    try:
        yield
    finally:
        lock.release()


# The environment variable that makes `pause_point(name)` stop the process there (tests only).
PAUSE_ENV = "KERAS_VIT_TEST_PAUSE_AT"


def pause_point(name: str) -> None:
    """Stops the process for good at the named moment when `$KERAS_VIT_TEST_PAUSE_AT` is `name`.

    A test hook: the crash-safety tests start a command with the variable set,
    wait for the line `paused at NAME` on stderr, then kill the process at
    exactly that moment. Without the variable this does nothing.
    """
    if os.environ.get(PAUSE_ENV) == name:
        print(f"paused at {name}", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)


def _replace(tmp: Path, path: Path) -> None:
    """Moves the finished `tmp` to `path` (see `atomic_path`)."""
    if not (tmp.is_dir() and path.is_dir()):
        os.replace(tmp, path)
        return
    # A name nothing has: Windows renames no folder onto an existing one, even an empty one.
    old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:12]}")
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except OSError:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Writes `data` to `path` through `atomic_path`.

    Args:
        path: destination file; its folder must exist.
        data: the content.

    Returns:
        The `Path` written.
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """`atomic_write_bytes` for UTF-8 text, written with `\\n` line ends as given."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    """Writes `obj` as JSON (indent 2, a trailing newline) through `atomic_path`.

    numpy scalars and arrays are written as their Python values and lists.

    Args:
        path: destination file; its folder must exist.
        obj: a JSON-serialisable object.

    Returns:
        The `Path` written.

    Raises:
        TypeError: if `obj` holds a value JSON cannot represent; nothing is
            written then.
    """
    return atomic_write_text(path, json_text(obj))


def json_text(obj: Any) -> str:
    """`obj` as `atomic_write_json` writes it: JSON, indent 2, a trailing newline, numpy values as Python's, and
    NaN and infinities as `null` (JSON has no such numbers: `NaN` in a file breaks strict readers).

    Raises:
        TypeError: if `obj` holds a value JSON cannot represent.
    """
    return json.dumps(_finite_or_none(obj), indent=2, default=_json_default, allow_nan=False) + "\n"


def _finite_or_none(value: Any) -> Any:
    """`value` with every float that is NaN or infinite (at any depth of dicts, lists and tuples) as None."""
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
