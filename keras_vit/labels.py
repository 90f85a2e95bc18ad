"""Class-name files (`labels.txt`) and how a saved model finds its labels.

A `labels.txt` holds one class name per line, in label order: line `i` is
the name of logit `i`. The training CLI writes one beside `model.keras`;
`evaluate` and `predict` read it back with `labels_for_model`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]

LABELS_FILENAME = "labels.txt"


def read_labels(path: PathLike) -> tuple[str, ...]:
    """Reads class names from a text file, one per line.

    Surrounding whitespace is stripped and trailing blank lines are ignored.

    Args:
        path: path of the labels file (UTF-8).

    Returns:
        Tuple of class names; element `i` is the name of label `i`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is empty, has a blank line between names or
            repeats a name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Labels file {path} does not exist.")
    names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ValueError(f"Labels file {path} is empty: expected one class name per line.")
    if "" in names:
        # A blank line would silently shift every later label by one.
        raise ValueError(f"Labels file {path} has a blank line at line {names.index('') + 1}.")
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"Labels file {path} names class {name!r} twice.")
        seen.add(name)
    return tuple(names)


def write_labels(path: PathLike, names: Sequence[str]) -> Path:
    """Writes class names to a text file, one per line, atomically.

    The file is written to a temporary file in the same folder and then
    renamed over `path`, so a reader never sees a half-written file.

    Args:
        path: destination file; parent folders are created.
        names: class names in label order.

    Returns:
        The `Path` written.

    Raises:
        ValueError: if `names` is empty, repeats a name, or a name is blank
            or contains a line break.
    """
    path = Path(path)
    names = [str(n) for n in names]
    if not names:
        raise ValueError("write_labels needs at least one class name.")
    for name in names:
        if not name.strip() or "\n" in name or "\r" in name or name != name.strip():
            raise ValueError(
                f"Class name {name!r} can't be stored one-per-line: it is blank, has a line "
                "break or surrounding whitespace."
            )
    if len(set(names)) != len(names):
        raise ValueError(f"Class names must be unique, got {names}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(f"{n}\n" for n in names))
    return path


def labels_for_model(
    model_path: PathLike, num_classes: int, labels_path: PathLike | None = None
) -> tuple[str, ...]:
    """Finds the class names of a saved model.

    Looks, in order, at:

    1. `labels_path`, when given;
    2. `labels.txt` in the model's folder;
    3. the CIFAR-10 class names, when `num_classes == 10`.

    Args:
        model_path: path of the `.keras` file.
        num_classes: the model's number of logits.
        labels_path: optional explicit labels file.

    Returns:
        Tuple of `num_classes` class names.

    Raises:
        FileNotFoundError: if `labels_path` is given but missing.
        ValueError: if the labels file found holds a different number of
            names than the model has classes, or no labels were found for a
            model that does not have 10 classes.
    """
    num_classes = int(num_classes)
    if labels_path is not None:
        candidate = Path(labels_path)
    else:
        candidate = Path(model_path).parent / LABELS_FILENAME
        if not candidate.is_file():
            candidate = None
    if candidate is not None:
        names = read_labels(candidate)
        if len(names) != num_classes:
            raise ValueError(
                f"Labels file {candidate} has {len(names)} names but the model has "
                f"{num_classes} classes."
            )
        return names
    if num_classes == 10:
        from keras_vit.data import CIFAR10_CLASSES

        return tuple(CIFAR10_CLASSES)
    raise ValueError(
        f"No labels for the {num_classes}-class model {model_path}: pass --labels FILE "
        f"(one class name per line) or put a {LABELS_FILENAME} beside the model."
    )


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside `path` to write to; on success it replaces `path` (`os.replace`).

    A reader never sees a half-written file: a write that fails or is
    interrupted leaves the old file (or none) and no temporary file. The
    temporary name is unique per call, so two writers sharing a folder do not
    collide.

    Args:
        path: destination file; its folder must exist.
        suffix: the end of the temporary name (Keras saves only to paths
            ending in `.keras`).

    Yields:
        The temporary `Path`; it exists, empty, when the block starts.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; these are not secret.
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    """`atomic_write_bytes` for UTF-8 text with `\\n` line ends."""
    return atomic_write_bytes(path, text.encode("utf-8"))
