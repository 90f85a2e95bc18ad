"""Class-name files (`labels.txt`) and how a model finds its class names: one rule set.

A labels file holds one class name per line, in label order: line `i` is the
name of logit `i`. The training CLI writes `labels.txt` beside `model.keras`,
the exporters beside each exported file (inside a SavedModel directory), and
the shipped model has a `vit_cifar10.labels.txt` twin beside
`vit_cifar10.keras`.

Reading (`read_labels`): UTF-8 (a byte-order mark is ignored), surrounding
whitespace of each line is stripped, blank lines at the end are ignored.
Refused: an empty file, a blank line between names (it would shift every
later class by one) and a name given twice (two logits could not be told
apart).

Finding a model's names (`labels_for_model`, used by `keras_vit.evaluate`,
`keras_vit.predict`, the exporters and `export.runtime`), first match wins:

1. the file given (`--labels FILE`);
2. `<model stem>.labels.txt` beside the model (the twin of one model among
   others in a folder, as `keras_vit/pretrained/` ships);
3. `labels.txt` beside the model (inside it for a SavedModel directory);
4. the CIFAR-10 class names, for a model with 10 outputs.

A file found must hold exactly one name per output of the model.

No Keras: the TF-free deployment runtime (`export.runtime`) reads labels with it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

from keras_vit.data import CIFAR10_CLASSES
from keras_vit.data.class_names import check_class_names
from keras_vit.files import atomic_write_text

PathLike = Union[str, "os.PathLike[str]"]

LABELS_FILENAME = "labels.txt"
# `<model stem>` + this: the labels of one model among several in a folder.
TWIN_SUFFIX = ".labels.txt"


def read_labels(path: PathLike) -> tuple[str, ...]:
    """Reads class names from a text file, one per line.

    Args:
        path: path of the labels file (UTF-8).

    Returns:
        Tuple of class names; element `i` is the name of label `i`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is not UTF-8, is empty, has a blank line
            between names or repeats a name.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"labels file {path} {what}.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"labels file {path} is not UTF-8 text: {e.reason} at byte {e.start}.") from None
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ValueError(f"labels file {path} is empty: expected one class name per line.")
    if "" in names:
        raise ValueError(f"labels file {path} has a blank line at line {names.index('') + 1}.")
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"labels file {path} names class {name!r} twice.")
        seen.add(name)
    return tuple(names)


def write_labels(path: PathLike, names: Sequence[str]) -> Path:
    """Writes class names to a text file, one per line, atomically.

    Args:
        path: destination file; parent folders are created.
        names: class names in label order.

    Returns:
        The `Path` written.

    Raises:
        ValueError: if `names` is empty, repeats a name, or a name is blank,
            has a line break or surrounding whitespace (`read_labels` could
            not read it back).
    """
    path = Path(path)
    text = labels_text(names)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def labels_text(names: Sequence[str]) -> str:
    """The content `write_labels` writes: one name per line, each ending in `\\n`.

    Raises:
        ValueError: names `read_labels` could not read back (see
            `check_class_names`).
    """
    return "".join(f"{n}\n" for n in check_class_names(names))


def default_labels_path(model_path: PathLike) -> Path:
    """The labels file beside a model, by rules 2 and 3 of the module docstring.

    Args:
        model_path: a `.keras`, `.tflite` or `.onnx` file, or a SavedModel
            directory.

    Returns:
        `<model stem>.labels.txt` beside a file when it exists, else
        `labels.txt` beside it (inside a directory), whether or not that
        exists.
    """
    model_path = Path(model_path).absolute()
    if model_path.is_dir():
        return model_path / LABELS_FILENAME
    twin = model_path.with_name(model_path.stem + TWIN_SUFFIX)
    return twin if twin.is_file() else model_path.with_name(LABELS_FILENAME)


def find_labels_file(model_path: PathLike, labels_file: PathLike | None = None) -> Path | None:
    """The labels file rules 1-3 of the module docstring pick for a model.

    Args:
        model_path: the model file or SavedModel directory.
        labels_file: a file given by the user (`--labels`), or `None`.

    Returns:
        `labels_file` when given (existing or not: reading it says what is
        wrong), else `default_labels_path(model_path)` when it exists, else
        `None` (rule 4 may still apply).
    """
    if labels_file is not None:
        return Path(labels_file)
    beside = default_labels_path(model_path)
    return beside if beside.is_file() else None


def cifar10_names_note(model_path: PathLike) -> str:
    """What to tell the user when a model's names are CIFAR-10's for want of a labels file (rule 4 above)."""
    return (
        f"no --labels and no {LABELS_FILENAME} beside {os.path.abspath(os.fspath(model_path))}; the model has "
        "10 outputs, so the CIFAR-10 class names are used"
    )


def labels_for_model(
    model_path: PathLike, num_classes: int, labels_file: PathLike | None = None
) -> tuple[str, ...]:
    """Finds the class names of a model by the rules of the module docstring.

    Args:
        model_path: the model file (`.keras`, `.tflite`, `.onnx`) or
            SavedModel directory.
        num_classes: the model's number of logits.
        labels_file: optional explicit labels file (`--labels`).

    Returns:
        Tuple of `num_classes` class names.

    Raises:
        FileNotFoundError: if `labels_file` is given but missing.
        ValueError: if the labels file found is malformed (see
            `read_labels`) or holds a different number of names than the
            model has classes, or no labels were found for a model that does
            not have 10 classes.
    """
    return labels_and_where(model_path, num_classes, labels_file)[0]


def labels_and_where(
    model_path: PathLike, num_classes: int, labels_file: PathLike | None = None
) -> tuple[tuple[str, ...], Path | None]:
    """`labels_for_model`, and the labels file the names came from: None for the CIFAR-10 names of a 10-class
    model without one (rule 4), which a command should say (`cifar10_names_note`).

    Raises:
        As `labels_for_model`.
    """
    num_classes = int(num_classes)
    found = find_labels_file(model_path, labels_file)
    if found is not None:
        names = read_labels(found)
        if len(names) != num_classes:
            raise ValueError(
                f"labels file {found} has {len(names)} names but the model has {num_classes} classes."
            )
        return names, found
    if num_classes == 10:
        return tuple(CIFAR10_CLASSES), None
    raise ValueError(
        f"No labels for the {num_classes}-class model {model_path}: pass --labels FILE "
        f"(one class name per line) or put a {LABELS_FILENAME} beside the model."
    )
