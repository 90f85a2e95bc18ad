"""Tests for keras_vit.training.schedules."""

import pytest

from keras_vit.training.schedules import learning_rate_schedule


def test_schedule_warms_up_then_decays():
    schedule = learning_rate_schedule(1e-3, total_steps=100, warmup_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert values[0] == 0.0 and abs(values[1] - 5e-4) < 1e-9 and abs(values[2] - 1e-3) < 1e-9
    assert values[2] > values[3] > values[4] and values[4] < 1e-8


def test_warmup_cosine_shape():
    from keras_vit.training.schedules import warmup_cosine

    assert warmup_cosine(0.0, 0.1) == 0.0 and warmup_cosine(0.05, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(0.1, 0.1) == pytest.approx(1.0) and warmup_cosine(1.0, 0.1) == pytest.approx(0.0)
    assert warmup_cosine(0.55, 0.1) == pytest.approx(0.5) and warmup_cosine(1.0, 0.1, 0.2) == pytest.approx(
        0.2
    )
    values = [warmup_cosine(p / 100, 0.1) for p in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))
