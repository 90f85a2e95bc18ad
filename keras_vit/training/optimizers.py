"""The optimizers a ViT trains with, and the variables they do not decay."""

from __future__ import annotations

import keras

# Variables that AdamW must not decay (biases, norms, tokens, positions).
NO_WEIGHT_DECAY = ["bias", "gamma", "beta", "class_token", "position_embedding"]


def make_optimizer(name, learning_rate, weight_decay=0.05, clipnorm=1.0, momentum=0.9, ema_momentum=None):
    """AdamW, Adam or SGD with momentum, with global-norm gradient clipping.

    Args:
        name: `"adamw"`, `"adam"` or `"sgd"`.
        learning_rate: float or a schedule.
        weight_decay: float, decoupled weight decay (AdamW and SGD); biases,
            norms, the class token and position embeddings are not decayed.
        clipnorm: float or None, global gradient-norm clip (keeps the early
            steps of a ViT from blowing up).
        momentum: float, for SGD (Nesterov).
        ema_momentum: optional float in `(0, 1)`: keep an exponential moving
            average of the weights, which replaces the weights when `fit`
            ends (Keras' `use_ema`); `None` for no EMA.
    """
    name = name.lower()
    common = dict(learning_rate=learning_rate, global_clipnorm=clipnorm)
    if ema_momentum is not None:
        if not 0.0 < ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in (0, 1), got {ema_momentum}.")
        common.update(use_ema=True, ema_momentum=ema_momentum)
    if name == "adamw":
        optimizer = keras.optimizers.AdamW(weight_decay=weight_decay, **common)
    elif name == "adam":
        optimizer = keras.optimizers.Adam(**common)
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(
            momentum=momentum, nesterov=True, weight_decay=weight_decay or None, **common
        )
    else:
        raise ValueError(f"Unknown optimizer {name!r}; choose adamw, adam or sgd.")
    if optimizer.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
    return optimizer
