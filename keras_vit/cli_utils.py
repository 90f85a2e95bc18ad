"""What the command lines share: one-line errors and the argparse value types.

Standard library only, so that the TF-free deployment runtime and the
exporters can import it before (or without) Keras.
"""

from __future__ import annotations

import argparse
import sys

# Longest message `first_line` keeps: an error line, not a dump.
MAX_LINE = 400


class CLIError(Exception):
    """An error a command line reports as one `error: ...` line and exit status 1."""


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


def unit_fraction(text: str) -> float:
    """argparse type: a float in [0, 1) (a share of something that cannot be all of it)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value
