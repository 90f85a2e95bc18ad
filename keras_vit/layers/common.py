"""What the layers share: the serialization package, `pair` and `dense_over_tokens`."""

from __future__ import annotations

import numbers

from keras import ops

PACKAGE = "keras_vit"


def pair(value, name):
    """Returns `value` as a `(height, width)` tuple of positive ints.

    Args:
        value: an int (a square) or a sequence of two ints; NumPy
            integers are ints here, bools are not.
        name: the argument's name, for the error message.

    Returns:
        A tuple `(height, width)` of Python ints.

    Raises:
        ValueError: `value` is not one positive int or two of them.
    """
    # numbers.Integral covers NumPy integers (`isinstance(np.int64(3), int)` is False).
    scalar = isinstance(value, numbers.Integral)
    values = (value, value) if scalar else tuple(value)
    # A bool is an int to Python, never a size.
    if len(values) != 2 or any(isinstance(v, bool) for v in values) or min(int(v) for v in values) <= 0:
        raise ValueError(
            f"`{name}` must be a positive int or a pair of them, got {value if scalar else values}."
        )
    return tuple(int(v) for v in values)


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
