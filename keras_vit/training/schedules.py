"""Learning-rate shapes: linear warmup, then a cosine decay."""

from __future__ import annotations

import math

import keras


def warmup_cosine(progress, warmup, final_fraction=0.0):
    """Warmup + cosine as a share of the peak rate, at `progress` in [0, 1] of a run.

    Linear from 0 to 1 over the first `warmup` share of the run, then a
    cosine from 1 down to `final_fraction` at the end.
    """
    progress = min(max(float(progress), 0.0), 1.0)
    if progress < warmup:
        return progress / warmup
    decayed = (progress - warmup) / max(1.0 - warmup, 1e-12)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * decayed))


def learning_rate_schedule(learning_rate, total_steps, warmup_steps, final_fraction=0.0):
    """Linear warmup from 0 to `learning_rate`, then cosine decay.

    Args:
        learning_rate: float, the peak rate.
        total_steps: int, optimizer steps of the whole run.
        warmup_steps: int, steps of linear warmup (part of `total_steps`).
        final_fraction: float, the end rate as a fraction of the peak.
    """
    warmup_steps = int(min(warmup_steps, max(total_steps - 1, 0)))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=final_fraction,
        warmup_target=learning_rate,
        warmup_steps=warmup_steps,
    )
