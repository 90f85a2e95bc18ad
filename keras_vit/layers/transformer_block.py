"""`TransformerBlock`: the pre-norm encoder block (attention + MLP, each with a residual)."""

from __future__ import annotations

import keras

from keras_vit.layers.attention import HeadMajorAttention, LocalitySelfAttention
from keras_vit.layers.common import PACKAGE, dense_over_tokens
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.norm import LayerNorm


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerBlock(keras.layers.Layer):
    """A pre-norm transformer encoder block (ViT paper, eq. 2-3).

    `x = x + DropPath(MHSA(LayerNorm(x)))`, then
    `x = x + DropPath(MLP(LayerNorm(x)))` with `MLP = Dense(mlp_dim, exact
    GELU) -> Dropout -> Dense(projection_dim) -> Dropout`.

    Args:
        num_heads: int, number of attention heads; must divide
            `projection_dim`.
        projection_dim: int, token width.
        mlp_dim: int, hidden width of the MLP.
        dropout: float, dropout after the attention output and in the MLP.
        attention_dropout: float, dropout on the attention weights.
        drop_path: float, stochastic-depth rate of both residual branches.
        layer_norm_epsilon: float, epsilon of the two LayerNormalizations.
        locality_attention: bool, use `LocalitySelfAttention` (no attention
            of a token to itself, learned temperature) instead of Keras'
            `MultiHeadAttention`; same weights plus one scalar.
        **kwargs: base `Layer` arguments.

    Call arguments:
        tokens: tensor of shape `(batch, sequence, projection_dim)`.
        training: bool, enables dropout and stochastic depth.
        return_attention_scores: bool; when True, also return the attention
            weights (used for attention maps and rollout).
        query_tokens: optional int; compute only the first `query_tokens`
            tokens (each still attends to every token) and return those. A
            head that reads only the class token needs no more of the last
            block, at a fraction of its work
            (`keras_vit.models.class_token_forward`).

    Returns:
        Tensor shaped like `tokens` (`query_tokens` tokens long if given);
        with `return_attention_scores=True` a tuple `(tokens, weights)` with
        weights of shape `(batch, num_heads, queries, sequence)`.
    """

    def __init__(
        self,
        num_heads,
        projection_dim,
        mlp_dim,
        dropout=0.0,
        attention_dropout=0.0,
        drop_path=0.0,
        layer_norm_epsilon=1e-6,
        locality_attention=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if projection_dim % num_heads:
            raise ValueError(f"projection_dim={projection_dim} is not divisible by num_heads={num_heads}.")
        self.num_heads = int(num_heads)
        self.projection_dim = int(projection_dim)
        self.mlp_dim = int(mlp_dim)
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.drop_path = float(drop_path)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.locality_attention = bool(locality_attention)

        policy = self.dtype_policy
        self.attention_norm = LayerNorm(epsilon=layer_norm_epsilon, name="attention_norm", dtype=policy)
        attention_class = LocalitySelfAttention if self.locality_attention else HeadMajorAttention
        self.attention = attention_class(
            num_heads=num_heads,
            key_dim=projection_dim // num_heads,
            dropout=attention_dropout,
            name="attention",
            dtype=policy,
        )
        self.attention_dropout_layer = keras.layers.Dropout(
            dropout, name="attention_output_dropout", dtype=policy
        )
        self.mlp_norm = LayerNorm(epsilon=layer_norm_epsilon, name="mlp_norm", dtype=policy)
        # Exact (erf) GELU, as in the paper; export/ handles its lowering.
        self.mlp_hidden = keras.layers.Dense(mlp_dim, activation="gelu", name="mlp_hidden", dtype=policy)
        self.mlp_hidden_dropout = keras.layers.Dropout(dropout, name="mlp_hidden_dropout", dtype=policy)
        self.mlp_output = keras.layers.Dense(projection_dim, name="mlp_output", dtype=policy)
        self.mlp_output_dropout = keras.layers.Dropout(dropout, name="mlp_output_dropout", dtype=policy)
        self.drop_path_layer = DropPath(drop_path, name="drop_path", dtype=policy)

    def build(self, input_shape):
        if input_shape[-1] != self.projection_dim:
            raise ValueError(
                f"TransformerBlock expects tokens of width {self.projection_dim}, "
                f"got shape {tuple(input_shape)}."
            )
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_hidden.build(input_shape)
        self.mlp_output.build(tuple(input_shape[:-1]) + (self.mlp_dim,))
        # Weightless, but `Model.quantize` (and Keras' convention) wants every sublayer built.
        self.drop_path_layer.build(input_shape)

    def call(self, tokens, training=None, return_attention_scores=False, query_tokens=None):
        x = self.attention_norm(tokens)
        queries = x
        if query_tokens is not None:
            tokens, queries = tokens[:, :query_tokens], x[:, :query_tokens]
        attended = self.attention(
            queries, x, training=training, return_attention_scores=return_attention_scores
        )
        if return_attention_scores:
            attended, scores = attended
        attended = self.attention_dropout_layer(attended, training=training)
        tokens = tokens + self.drop_path_layer(attended, training=training)

        x = self.mlp_norm(tokens)
        x = dense_over_tokens(self.mlp_hidden, x)
        x = self.mlp_hidden_dropout(x, training=training)
        x = dense_over_tokens(self.mlp_output, x)
        x = self.mlp_output_dropout(x, training=training)
        tokens = tokens + self.drop_path_layer(x, training=training)
        if return_attention_scores:
            return tokens, scores
        return tokens

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, tokens, training=None, return_attention_scores=False, query_tokens=None):
        batch, sequence = tokens.shape[0], tokens.shape[1]
        queries = sequence
        if query_tokens is not None and sequence is not None:
            # The length of `tokens[:, :query_tokens]`, as `call` slices it.
            queries = len(range(sequence)[:query_tokens])
        output = keras.KerasTensor((batch, queries) + tuple(tokens.shape[2:]), dtype=self.compute_dtype)
        if not return_attention_scores:
            return output
        scores = keras.KerasTensor((batch, self.num_heads, queries, sequence), dtype=self.compute_dtype)
        return output, scores

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "projection_dim": self.projection_dim,
                "mlp_dim": self.mlp_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "drop_path": self.drop_path,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "locality_attention": self.locality_attention,
            }
        )
        return config
