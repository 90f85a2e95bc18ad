"""`LocalitySelfAttention`: multi-head attention without self-attention of a token, learned temperature."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from keras_vit.layers.common import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocalitySelfAttention(keras.layers.MultiHeadAttention):
    """Keras' multi-head attention with Lee et al. 2021's Locality Self-Attention.

    Two changes to the attention scores ("Vision Transformer for Small-Size
    Datasets"): a token does not attend to itself (diagonal masking), so
    attention has to look at the other patches; and the softmax temperature
    is learned (one scalar per layer, kept as its logarithm and initialized
    to Keras' `1 / sqrt(key_dim)`; the authors' code learns one linear scale
    per head), so attention can sharpen. The
    projections and their weights are `keras.layers.MultiHeadAttention`'s;
    this layer overrides `_compute_attention`, the hook Keras documents for
    custom attention.

    The diagonal is masked by giving each token's own score the lowest score
    of its row minus `SELF_MARGIN` (20): its weight is then below e^-20
    (2e-9) of the largest one, zero for any purpose, while the scores keep a
    range that int8 quantization can hold. The usual additive -1e9 (Keras'
    boolean masks) does not: one int8 scale cannot cover -1e9 and the real
    scores, and int8 TFLite files lost most of their accuracy.

    Args:
        **kwargs: `keras.layers.MultiHeadAttention` arguments.

    Call arguments and returns: as `keras.layers.MultiHeadAttention`,
    without `attention_mask` or `use_causal_mask` (a ViT needs neither). The
    sequences must have static lengths (the diagonal is a constant).
    """

    SELF_MARGIN = 20.0

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        self.log_temperature = self.add_weight(
            name="log_temperature",
            shape=(),
            initializer=keras.initializers.Constant(-0.5 * math.log(self.key_dim)),
        )

    def _compute_attention(
        self,
        query,
        key,
        value,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        use_causal_mask=False,
    ):
        if attention_mask is not None or use_causal_mask:
            raise ValueError("LocalitySelfAttention takes no attention_mask and no causal mask.")
        query_length, key_length = query.shape[1], key.shape[1]
        if query_length is None or key_length is None:
            raise ValueError("LocalitySelfAttention needs static sequence lengths for its diagonal mask.")
        # query, key: (batch, tokens, heads, key_dim) -> scores (batch, heads, query, key).
        query = query * ops.cast(ops.exp(self.log_temperature), query.dtype)
        scores = ops.einsum("btnh,bsnh->bnts", query, key)
        own_score = ops.convert_to_tensor(np.eye(query_length, key_length, dtype=bool)[None, None])
        lowest = ops.min(scores, axis=-1, keepdims=True)
        scores = ops.where(own_score, lowest - self.SELF_MARGIN, scores)
        weights = ops.softmax(scores, axis=-1)
        dropped = self._dropout_layer(weights, training=training) if self.dropout else weights
        output = ops.einsum("bnts,bsnh->btnh", dropped, value)
        return output, (weights if return_attention_scores else None)


@keras.saving.register_keras_serializable(package=PACKAGE)
class HeadMajorAttention(keras.layers.MultiHeadAttention):
    """Keras' multi-head attention, its products run head-major on TensorFlow.

    The weights, the arguments and the results are `keras.layers.MultiHeadAttention`'s.
    On the TensorFlow backend, which has no fused attention kernel on the CPU, the
    scores and the weighted sum are two batched matrix products over
    `(batch, heads, tokens, key_dim)` tensors instead of Keras' einsums, which
    TensorFlow runs more slowly (measured in `docs/experiments/README.md`). The other backends
    keep Keras' path, which calls their fused kernels (cuDNN, PyTorch's
    `scaled_dot_product_attention`), but for float16 on JAX's CPU: Keras' path
    asks XLA there for a float16 product with a float32 result, which its CPU
    backend refuses.

    Args:
        **kwargs: `keras.layers.MultiHeadAttention` arguments.
    """

    def _compute_attention(
        self,
        query,
        key,
        value,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        use_causal_mask=False,
    ):
        if (
            not _head_major_here(query.dtype)
            or attention_mask is not None
            or use_causal_mask
            or len(query.shape) != 4
        ):
            return super()._compute_attention(
                query, key, value, attention_mask, training, return_attention_scores, use_causal_mask
            )
        # (batch, tokens, heads, key_dim) -> (batch, heads, tokens, key_dim); keys as (batch, heads, key_dim, tokens).
        query = ops.transpose(query, (0, 2, 1, 3)) * ops.cast(self._inverse_sqrt_key_dim, query.dtype)
        scores = ops.matmul(query, ops.transpose(key, (0, 2, 3, 1)))
        weights = ops.softmax(scores, axis=-1)
        dropped = self._dropout_layer(weights, training=training) if self._dropout else weights
        output = ops.transpose(ops.matmul(dropped, ops.transpose(value, (0, 2, 1, 3))), (0, 2, 1, 3))
        return output, (weights if return_attention_scores else None)


def _head_major_here(dtype):
    """Whether `HeadMajorAttention` computes its products itself for inputs of `dtype` on this backend."""
    backend = keras.backend.backend()
    if backend == "jax" and keras.backend.standardize_dtype(dtype) == "float16":
        import jax

        return jax.default_backend() == "cpu"
    return backend == "tensorflow"
