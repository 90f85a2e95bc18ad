"""A run's length, fixed epochs or a time budget, and the learning-rate plan that follows it."""

from __future__ import annotations

import time

from keras_vit.training.callbacks import TimeBudget
from keras_vit.training.schedules import learning_rate_schedule


def plan_learning_rate(
    learning_rate,
    steps_per_epoch,
    epochs,
    warmup_epochs,
    time_budget=None,
    max_epochs=None,
    clock=time.perf_counter,
):
    """Warmup + cosine over `epochs`, or over the epochs that fit in `time_budget` seconds of `fit`.

    Args:
        learning_rate: float, the peak rate.
        steps_per_epoch: int, optimizer steps an epoch.
        epochs: int, the run's length; with `time_budget`, the first estimate.
        warmup_epochs: float, epochs of linear warmup (with `time_budget`, as a
            share of `epochs`, at most half the run).
        time_budget: optional float, seconds of `fit` (compilation included).
        max_epochs: optional int, with `time_budget` the epochs `fit` is
            called with: the budget's plan never exceeds them.
        clock: with `time_budget`, the budget's clock (a job of several
            processes: `keras_vit.training.processes.agreed_clock()`).

    Returns:
        `(rate, budget)`: what the optimizer takes (a schedule, or with a
        budget a float that `budget`, a `keras_vit.callbacks.TimeBudget` to
        pass to `fit`, sets at every epoch start; else None).
    """
    if time_budget:
        budget = TimeBudget(
            time_budget,
            learning_rate,
            epochs,
            warmup=min(warmup_epochs / epochs, 0.5),
            max_epochs=max_epochs,
            clock=clock,
        )
        return float(learning_rate), budget
    return learning_rate_schedule(
        learning_rate, steps_per_epoch * epochs, int(steps_per_epoch * warmup_epochs)
    ), None


def describe_length(epochs, time_budget=None, max_epochs=None):
    """A run's length for its start-up line: `"N epochs"`, or with `time_budget`
    its seconds of `fit`, `epochs` as the first estimate (as `plan_learning_rate`
    takes them) and, when given, the cap `max_epochs`."""
    if not time_budget:
        return f"{epochs} epochs"
    cap = "" if max_epochs is None else f", at most {max_epochs}"
    return f"{time_budget:.0f} s of fit (first estimate {epochs} epochs{cap}, planned again from each epoch's time)"
