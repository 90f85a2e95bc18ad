"""What a class name may be: one line of a labels file, so that training never trains a class it cannot save.

Standard library only: `keras_vit.labels` (the labels files) and the image-folder loader share it.
"""

from __future__ import annotations

import unicodedata
from typing import Sequence


def check_class_names(names: Sequence[str]) -> list[str]:
    """The names as strings, if a labels file can hold them (`keras_vit.labels.read_labels` would read them back).

    Args:
        names: class names, in label order.

    Returns:
        The names, each as a `str`.

    Raises:
        ValueError: if `names` is empty, repeats a name (also in another
            Unicode form: `café` composed and decomposed look the same), or
            a name is blank, has a line break (any that `str.splitlines`
            splits on, form feed and U+2028 included) or surrounding
            whitespace.
    """
    names = [str(n) for n in names]
    if not names:
        raise ValueError("A labels file needs at least one class name.")
    for name in names:
        # `read_labels` splits lines with `str.splitlines`: a name must stay one line by its rules.
        if not name.strip() or len(name.splitlines()) != 1 or name != name.strip():
            raise ValueError(
                f"Class name {name!r} can't be stored one-per-line: it is blank, has a line "
                "break or surrounding whitespace."
            )
    forms = [same_name(name) for name in names]
    repeated = sorted({name for name, form in zip(names, forms) if forms.count(form) > 1})
    if repeated:
        # Names that differ in Unicode form alone look the same: shown escaped (ascii) to tell them apart.
        shown = ascii if len({same_name(name) for name in repeated}) < len(repeated) else repr
        raise ValueError(
            f"Class names must be unique; given more than once: {', '.join(map(shown, repeated))}."
        )
    return names


def same_name(name: str) -> str:
    """`name` in Unicode's composed form (NFC): `café` typed, and `café` as macOS and zip files store it
    (`e` + a combining accent), are one class."""
    return unicodedata.normalize("NFC", name)
