"""Tests for keras_vit.training.plan."""

import numpy as np
import pytest


def test_describe_length():
    from keras_vit.training.plan import describe_length

    assert describe_length(6) == describe_length(6, None, 24) == "6 epochs"
    assert describe_length(280, 340.0) == (
        "340 s of fit (first estimate 280 epochs, planned again from each epoch's time)"
    )
    assert describe_length(60, 70.0, 240) == (
        "70 s of fit (first estimate 60 epochs, at most 240, planned again from each epoch's time)"
    )


def test_learning_rate_plan_of_an_ordinary_run():
    """Warmup + cosine over steps_per_epoch * epochs: the peak at the end of the warmup, ~0 exactly
    at the last step of the last epoch, and not before."""
    import keras

    from keras_vit.training.plan import plan_learning_rate

    steps, epochs, peak = 10, 6, 1e-3
    schedule, budget = plan_learning_rate(peak, steps, epochs, warmup_epochs=2)
    assert budget is None
    rate = [float(keras.ops.convert_to_numpy(schedule(step))) for step in range(steps * epochs + 1)]
    assert rate[0] == 0.0
    np.testing.assert_allclose(rate[:21], np.linspace(0, peak, 21), rtol=1e-5, atol=1e-9)  # linear warmup
    assert max(rate) == pytest.approx(peak) and int(np.argmax(rate)) == 2 * steps
    assert all(b <= a for a, b in zip(rate[20:], rate[21:], strict=False))  # decays after the warmup
    # Cosine over the 40 steps after the warmup: half the peak halfway, ~0 at step 60, not at step 50.
    np.testing.assert_allclose(
        rate[20:], peak * 0.5 * (1 + np.cos(np.pi * np.arange(41) / 40)), rtol=1e-4, atol=1e-9
    )
    assert rate[-1] == pytest.approx(0.0, abs=1e-9)
    assert rate[(epochs - 1) * steps] > 0.01 * peak


def test_learning_rate_plan_without_warmup_starts_at_the_peak():
    import keras

    from keras_vit.training.plan import plan_learning_rate

    schedule, _ = plan_learning_rate(0.5, 4, 3, warmup_epochs=0)
    rate = [float(keras.ops.convert_to_numpy(schedule(step))) for step in range(13)]
    assert rate[0] == pytest.approx(0.5)
    np.testing.assert_allclose(rate, 0.25 * (1 + np.cos(np.pi * np.arange(13) / 12)), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
    ("epochs", "warmup_epochs", "max_epochs", "warmup", "planned"),
    [(20, 2, 60, 0.1, 20), (4, 3, None, 0.5, 4), (50, 5, 30, 0.1, 30)],
)
def test_a_time_budget_plans_with_a_constant_rate_and_a_budget_callback(
    epochs, warmup_epochs, max_epochs, warmup, planned
):
    """Under a budget the optimizer gets the float peak rate, and the budget plans: the warmup a share of the
    first estimate (at most half the run), the estimate capped by the epochs fit runs."""
    from keras_vit.training.callbacks import TimeBudget
    from keras_vit.training.plan import plan_learning_rate

    rate, budget = plan_learning_rate(
        3e-3, 10, epochs, warmup_epochs, time_budget=90.0, max_epochs=max_epochs
    )
    assert type(rate) is float and rate == 3e-3
    assert isinstance(budget, TimeBudget)
    assert budget.seconds == 90.0 and budget.learning_rate == 3e-3
    assert budget.warmup == pytest.approx(warmup) and budget.max_epochs == max_epochs
    assert budget.planned_epochs == planned and budget.final_fraction == 0.0
