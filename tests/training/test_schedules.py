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


def test_schedule_ends_at_its_final_fraction_and_keeps_a_step_of_decay():
    import keras

    def rates(schedule, steps):
        return [float(keras.ops.convert_to_numpy(schedule(step))) for step in range(steps + 1)]

    floor = rates(learning_rate_schedule(2.0, total_steps=10, warmup_steps=0, final_fraction=0.25), 10)
    assert floor[0] == pytest.approx(2.0) and floor[-1] == pytest.approx(0.5)  # 0.25 of the peak
    assert floor[5] == pytest.approx(0.5 + 1.5 * 0.5)
    # A warmup as long as the run is cut to leave one step of decay: the peak at step 9, then down.
    whole = rates(learning_rate_schedule(1.0, total_steps=10, warmup_steps=50), 10)
    assert whole[0] == 0.0 and whole[9] == pytest.approx(1.0) and whole[10] == pytest.approx(0.0, abs=1e-7)
    assert whole[1] == pytest.approx(1 / 9)


def test_warmup_cosine_clamps_progress_and_takes_no_warmup():
    from keras_vit.training.schedules import warmup_cosine

    assert warmup_cosine(-0.5, 0.2) == 0.0 and warmup_cosine(1.5, 0.2, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(0.0, 0.0) == pytest.approx(1.0) and warmup_cosine(0.5, 0.0) == pytest.approx(0.5)
    assert warmup_cosine(0.6, 0.2, 0.5) == pytest.approx(0.5 + 0.5 * 0.5)
    assert warmup_cosine(1.0, 1.0) == 1.0  # all warmup: no division by a decay of length 0


def test_a_one_step_run_trains_at_the_peak():
    """No room for a warmup: the only step is taken at the peak rate, not at 0."""
    import keras

    schedule = learning_rate_schedule(0.3, total_steps=1, warmup_steps=5)
    assert float(keras.ops.convert_to_numpy(schedule(0))) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("warmup_steps", "initial"), [(10, 0.0), (0, 0.5)], ids=["warmup from 0", "no warmup: starts at the peak"]
)
def test_schedule_config_says_what_it_does(warmup_steps, initial):
    """The schedule's config (saved with the optimizer in `.keras` files) reads as the rates it gives:
    without a warmup the initial rate is the peak, not a 0 the schedule never reaches."""
    import keras

    schedule = learning_rate_schedule(0.5, total_steps=100, warmup_steps=warmup_steps, final_fraction=0.1)
    config = schedule.get_config()
    assert {key: config[key] for key in config if key != "name"} == {
        "initial_learning_rate": initial,
        "decay_steps": 100 - warmup_steps,
        "alpha": 0.1,
        "warmup_target": 0.5,
        "warmup_steps": warmup_steps,
    }
    assert float(keras.ops.convert_to_numpy(schedule(0))) == pytest.approx(initial)
    revived = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    for step in (0, 5, 10, 60, 100):
        assert float(keras.ops.convert_to_numpy(revived(step))) == pytest.approx(
            float(keras.ops.convert_to_numpy(schedule(step)))
        )
