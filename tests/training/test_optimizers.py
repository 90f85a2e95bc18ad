"""Tests for keras_vit.training.optimizers."""

import keras
import numpy as np
import pytest

from keras_vit.training.optimizers import make_optimizer


def test_optimizers():
    assert isinstance(make_optimizer("adamw", 1e-3), keras.optimizers.AdamW)
    assert isinstance(make_optimizer("adam", 1e-3), keras.optimizers.Adam)
    sgd = make_optimizer("sgd", 0.1, weight_decay=5e-4)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov
    with pytest.raises(ValueError, match="Unknown optimizer"):
        make_optimizer("lamb", 1e-3)


def test_adamw_decays_kernels_only():
    """One AdamW step with zero gradients changes weights by the decay alone: kernels shrink by
    `1 - learning_rate * weight_decay`; biases, norm gammas and betas, the class token and the
    position embedding stay as they are."""
    from keras_vit.layers import LayerNorm, PatchEncoder

    inputs = keras.Input((4, 6))
    tokens = PatchEncoder(4, 8, grid_size=(2, 2), name="encoder")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(LayerNorm(name="norm")(tokens)))
    for i, w in enumerate(model.trainable_variables):
        w.assign(np.full(w.shape, 1.0 + i, "float32"))
    before = {w.path: np.array(w) for w in model.trainable_variables}
    optimizer = make_optimizer("adamw", 0.1, weight_decay=0.5)
    optimizer.apply_gradients([(keras.ops.zeros_like(w), w) for w in model.trainable_variables])
    after = {w.path: np.array(w) for w in model.trainable_variables}
    kept = ("bias", "gamma", "beta", "class_token", "position_embedding")
    names = {path.rsplit("/", 1)[-1] for path in before}
    assert names == {"kernel", *kept}, names
    for path in before:
        factor = 1.0 if path.rsplit("/", 1)[-1] in kept else 1.0 - 0.1 * 0.5
        np.testing.assert_allclose(after[path], before[path] * factor, rtol=1e-6, err_msg=path)


# Runs as a script under each backend: three steps of a scaled optimizer against, per variable, Keras' own
# optimizer at the rate times that variable's factor (decay included); prints the largest difference.
SCALED_AGAINST_PLAIN = """
import sys
import keras
import numpy as np
from keras_vit.training.optimizers import make_optimizer

rng = np.random.default_rng(0)
shapes = {"dense/kernel": (3, 4), "dense/bias": (4,), "head/kernel": (4, 2)}
start = {path: rng.normal(size=shape).astype("float32") for path, shape in shapes.items()}
grads = [{path: rng.normal(size=shape).astype("float32") for path, shape in shapes.items()} for _ in range(3)]
factors = {"dense/kernel": 0.25, "dense/bias": 0.5}


def variables():
    return {path: keras.Variable(value, name=path.replace("/", "_")) for path, value in start.items()}


def train(optimizer, weights):
    for step in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(step[p]), weights[p]) for p in weights])
    return {path: keras.ops.convert_to_numpy(w) for path, w in weights.items()}


for name in sys.argv[1:]:
    scaled_weights = variables()
    multipliers = {scaled_weights[p].path: f for p, f in factors.items()}
    assert len({w.path for w in scaled_weights.values()}) == len(shapes)
    scaled = train(
        make_optimizer(name, 0.1, weight_decay=0.3, clipnorm=None, learning_rate_multipliers=multipliers),
        scaled_weights,
    )
    worst = 0.0
    for path in shapes:
        # All variables at this one's rate (Keras' torch AdamW fails on a list of only undecayed variables).
        plain = train(make_optimizer(name, 0.1 * factors.get(path, 1.0), weight_decay=0.3, clipnorm=None), variables())
        worst = max(worst, float(np.max(np.abs(plain[path] - scaled[path]))))
    moved = min(float(np.max(np.abs(scaled[p] - start[p]))) for p in shapes)
    print(f"{name} {worst:.3g} {moved:.3g}")
"""

OPTIMIZERS = ("adamw", "adam", "sgd")


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_scaled_rates_match_keras_at_each_variables_rate(backend, tmp_path):
    """Each optimizer with per-variable rate multipliers moves each variable as Keras' own optimizer at that
    variable's rate does (one child process per backend, the three optimizers in it)."""
    script = tmp_path / "scaled.py"
    script.write_text(SCALED_AGAINST_PLAIN)
    from conftest import run_python

    done = run_python(f"exec(open({str(script)!r}).read())", *OPTIMIZERS, backend=backend)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [
        line.split()
        for line in done.stdout.splitlines()
        if line.split()[:1] and line.split()[0] in OPTIMIZERS
    ]
    assert [name for name, *_ in rows] == list(OPTIMIZERS), done.stdout[-2000:]
    for name, worst, moved in rows:
        assert float(worst) < 1e-6, (backend, name, worst)
        assert float(moved) > 1e-3, (backend, name, moved)  # every variable trained


def test_scaled_optimizer_round_trips_its_config():
    from keras_vit.training.optimizers import ScaledAdamW

    optimizer = make_optimizer("adamw", 1e-3, learning_rate_multipliers={"block_0/dense/kernel": 0.5})
    assert isinstance(optimizer, ScaledAdamW) and isinstance(optimizer, keras.optimizers.AdamW)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is ScaledAdamW
    assert restored.learning_rate_multipliers == {"block_0/dense/kernel": 0.5}
    assert type(make_optimizer("adamw", 1e-3, learning_rate_multipliers={})) is keras.optimizers.AdamW


def test_only_the_matrices_are_decayed():
    """Weight decay alone (zero gradients) moves the kernels only: biases, norms, tokens, position embeddings
    and Locality Self-Attention's temperature stay where they are."""
    from keras_vit import build_vit

    model = build_vit("vit_micro", num_registers=1, distillation_token=True, locality_attention=True)
    for variable in model.trainable_variables:  # every variable away from zero, so decay would show
        variable.assign(np.full(variable.shape, 0.5, "float32"))
    optimizer = make_optimizer("adamw", 1.0, weight_decay=0.5, clipnorm=None)
    optimizer.apply_gradients([(keras.ops.zeros_like(v), v) for v in model.trainable_variables])
    moved = {
        v.path.rsplit("/", 1)[-1]
        for v in model.trainable_variables
        if np.any(keras.ops.convert_to_numpy(v) != 0.5)
    }
    kept = {v.path.rsplit("/", 1)[-1] for v in model.trainable_variables} - moved
    assert moved == {"kernel"}
    assert {"bias", "gamma", "beta", "class_token", "distillation_token", "registers"} <= kept
    assert {"position_embedding", "log_temperature"} <= kept
