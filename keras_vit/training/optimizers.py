"""The optimizers a ViT trains with, the variables they do not decay, and per-variable learning rates."""

from __future__ import annotations

import keras
from keras import ops

# Variables that AdamW must not decay (biases, norms, tokens, positions, and Locality Self-Attention's
# log-temperature, which decay would pull towards a temperature of 1 instead of its start, 1/sqrt(key_dim)).
NO_WEIGHT_DECAY = [
    "bias",
    "gamma",
    "beta",
    "class_token",
    "distillation_token",
    "registers",
    "position_embedding",
    "log_temperature",
]


class _ScaledRates:
    """Mixin: each variable trains at the schedule's rate times its own factor, its decoupled weight decay too.

    Keras applies one rate to every variable; fine-tuning a pretrained ViT
    wants smaller rates for the lower layers (`finetune.layer_decay_multipliers`).
    Factors are keyed by `variable.path`; a variable not listed gets 1.
    """

    def __init__(self, *args, learning_rate_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.learning_rate_multipliers = dict(learning_rate_multipliers or {})

    def build(self, variables):
        super().build(variables)
        self._factors = [float(self.learning_rate_multipliers.get(v.path, 1.0)) for v in variables]

    def _factor(self, variable):
        return self._factors[self._get_variable_index(variable)]

    def _apply_weight_decay(self, variables):
        # Each variable's decay is applied in `update_step`, at its own rate.
        return

    def update_step(self, gradient, variable, learning_rate):
        factor = self._factor(variable)
        if self.weight_decay is not None and self._use_weight_decay(variable):
            rate = ops.cast(learning_rate, variable.dtype) * factor
            variable.assign(variable - variable * ops.cast(self.weight_decay, variable.dtype) * rate)
        super().update_step(gradient, variable, learning_rate * factor)

    def get_config(self):
        return {**super().get_config(), "learning_rate_multipliers": dict(self.learning_rate_multipliers)}


@keras.saving.register_keras_serializable(package="keras_vit")
class ScaledAdamW(_ScaledRates, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with a learning-rate factor per variable (`learning_rate_multipliers`)."""


@keras.saving.register_keras_serializable(package="keras_vit")
class ScaledAdam(_ScaledRates, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with a learning-rate factor per variable (`learning_rate_multipliers`)."""


@keras.saving.register_keras_serializable(package="keras_vit")
class ScaledSGD(_ScaledRates, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with a learning-rate factor per variable (`learning_rate_multipliers`)."""


_CLASSES = {
    "adamw": (keras.optimizers.AdamW, ScaledAdamW),
    "adam": (keras.optimizers.Adam, ScaledAdam),
    "sgd": (keras.optimizers.SGD, ScaledSGD),
}


def make_optimizer(
    name,
    learning_rate,
    weight_decay=0.05,
    clipnorm=1.0,
    momentum=0.9,
    ema_momentum=None,
    learning_rate_multipliers=None,
):
    """AdamW, Adam or SGD with momentum, with global-norm gradient clipping.

    Args:
        name: `"adamw"`, `"adam"` or `"sgd"`.
        learning_rate: float or a schedule.
        weight_decay: float, decoupled weight decay (AdamW and SGD); biases,
            norms, the tokens, position embeddings and attention temperatures are not decayed.
        clipnorm: float or None, global gradient-norm clip (keeps the early
            steps of a ViT from blowing up).
        momentum: float, for SGD (Nesterov).
        ema_momentum: optional float in `(0, 1)`: keep an exponential moving
            average of the weights, which replaces the weights when `fit`
            ends (Keras' `use_ema`); `None` for no EMA.
        learning_rate_multipliers: optional `{variable path: factor}`: those
            variables train at the rate times their factor, and are decayed
            at it (layer-wise decay: `finetune.layer_decay_multipliers`);
            None or `{}` for Keras' own optimizer.
    """
    name = name.lower()
    if name not in _CLASSES:
        raise ValueError(f"Unknown optimizer {name!r}; choose adamw, adam or sgd.")
    common = dict(learning_rate=learning_rate, global_clipnorm=clipnorm)
    if ema_momentum is not None:
        if not 0.0 < ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in (0, 1), got {ema_momentum}.")
        common.update(use_ema=True, ema_momentum=ema_momentum)
    if name == "adamw":
        common.update(weight_decay=weight_decay)
    elif name == "sgd":
        common.update(momentum=momentum, nesterov=True, weight_decay=weight_decay or None)
    plain, scaled = _CLASSES[name]
    if learning_rate_multipliers:
        optimizer = scaled(learning_rate_multipliers=learning_rate_multipliers, **common)
    else:
        optimizer = plain(**common)
    if optimizer.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
    return optimizer
