"""What the layers share: the serialization package, `positive_int`, `pair` and `dense_over_tokens`."""

from __future__ import annotations

import operator

import numpy as np
from keras import ops

PACKAGE = "keras_vit"


def positive_int(value, name):
    """Returns `value` as a positive Python int.

    Args:
        value: an int; NumPy integers (and 0-d integer arrays) are ints
            here, bools and floats (even `32.0`) are not.
        name: the argument's name, for the error message.

    Returns:
        A Python int.

    Raises:
        ValueError: `value` is not a positive int.
    """
    size = _as_int(value)
    if size is None or size <= 0:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    return size


def pair(value, name):
    """Returns `value` as a `(height, width)` tuple of positive ints.

    Args:
        value: an int (a square) or a sequence of two ints (a list, as a
            JSON config holds, is one); NumPy integers are ints here, bools
            and floats (even `32.0`) are not.
        name: the argument's name, for the error message.

    Returns:
        A tuple `(height, width)` of Python ints.

    Raises:
        ValueError: `value` is not one positive int or two of them.
    """
    scalar = _as_int(value)
    if scalar is not None:
        values = (scalar, scalar)
    elif isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):  # a float, None, "32", ...
        values = None
    else:
        values = tuple(_as_int(v) for v in value)
    if values is None or len(values) != 2 or any(v is None or v <= 0 for v in values):
        raise ValueError(f"`{name}` must be a positive int or a pair of them, got {value!r}.")
    return values


def _as_int(value):
    """`value` as a Python int where it is an integer (NumPy's too), else None: a bool is an int to Python, never
    a size, and a float is refused rather than truncated."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)  # ints, NumPy integers, 0-d integer arrays; not floats
    except TypeError:
        return None


def dense_over_tokens(dense, tokens):
    """`dense(tokens)` for `(batch, tokens, features)`, computed as one 2-D matrix product.

    The same weights and result as calling the `Dense` layer on the 3-D
    tensor. Why: under TensorFlow, `Dense` on a 3-D input lowers to
    `tensordot`, which computes its reshape at run time (SHAPE, GATHER,
    REDUCE_PROD, PACK); TFLite keeps those int32 ops, XNNPACK (and other
    delegates) cannot take them, and each splits the delegated graph in two.
    Reshaping to `(-1, features)` and back with the static token count
    lowers to constant-shape RESHAPEs around one FULLY_CONNECTED, and trained
    as fast as `Dense` on the TensorFlow CPU backend
    (`keras.layers.EinsumDense` also avoids the split, but trained slower
    there).

    Args:
        dense: a `keras.layers.Dense`.
        tokens: tensor `(batch, tokens, features)`.

    Returns:
        Tensor `(batch, tokens, dense.units)`.
    """
    num_tokens, features = tokens.shape[1], tokens.shape[2]
    if num_tokens is None or features is None:  # no static shape to reshape with
        return dense(tokens)
    flat = dense(ops.reshape(tokens, (-1, features)))
    return ops.reshape(flat, (-1, num_tokens, dense.units))
