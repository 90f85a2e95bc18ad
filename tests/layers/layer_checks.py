"""The shared layer test: every keras_vit layer, in the configurations of `CASES`, passes `check_layer`.

`check_layer(layer_class, kwargs, input_shape)` checks what every serializable
Keras layer owes its users:

- config: `get_config()` holds constructor arguments only, `from_config`
  rebuilds a layer that (with the weights copied) computes the same output,
  and the registered name (`keras_vit>ClassName`, what `.keras` files name)
  round-trips;
- saving: a small model of the layer saved to `.keras` and loaded in safe
  mode computes the same output;
- mixed precision: under `mixed_bfloat16` the layer computes in bfloat16
  and keeps float32 variables;
- shapes: `compute_output_shape` says what `call` returns.

`python tests/layers/layer_checks.py DIR` runs it over `CASES` under the
backend of `KERAS_BACKEND` (`tests/layers/test_all_layers.py` does so for JAX
and PyTorch). No pytest here: the subprocesses import this file alone.
"""

from __future__ import annotations

import inspect
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np

import keras_vit.layers as kv_layers


class LayerCase(NamedTuple):
    """One layer configuration to check: the class, its constructor arguments and the input shape."""

    layer_class: type
    kwargs: dict
    input_shape: tuple
    # Inputs the layer takes, all of `input_shape`: 2 for self-attention's (query, value).
    num_inputs: int = 1

    def __str__(self):
        arguments = ",".join(f"{key}={value}" for key, value in self.kwargs.items())
        return f"{self.layer_class.__name__}({arguments})"


CASES = [
    LayerCase(kv_layers.Patches, dict(patch_size=4), (2, 8, 12, 3)),
    LayerCase(kv_layers.Patches, dict(patch_size=4, shifted=True), (2, 8, 8, 3)),
    LayerCase(kv_layers.PatchEncoder, dict(num_patches=6, projection_dim=16, grid_size=(2, 3)), (2, 6, 12)),
    LayerCase(
        kv_layers.PatchEncoder,
        dict(num_patches=4, projection_dim=8, class_token=False, position_embedding="sincos"),
        (2, 4, 12),
    ),
    LayerCase(
        kv_layers.PatchEncoder,
        dict(num_patches=6, projection_dim=16, grid_size=(2, 3), num_registers=2, patch_norm=True),
        (2, 6, 12),
    ),
    LayerCase(kv_layers.LayerNorm, dict(epsilon=1e-6), (2, 5, 8)),
    LayerCase(kv_layers.DropPath, dict(rate=0.25, seed=1), (4, 5, 8)),
    LayerCase(kv_layers.PatchDropout, dict(rate=0.5, num_prefix_tokens=2, seed=3), (3, 10, 8)),
    LayerCase(kv_layers.LocalitySelfAttention, dict(num_heads=2, key_dim=4), (2, 5, 8), num_inputs=2),
    LayerCase(
        kv_layers.HeadMajorAttention, dict(num_heads=2, key_dim=4, dropout=0.1), (2, 5, 8), num_inputs=2
    ),
    LayerCase(
        kv_layers.TransformerBlock,
        dict(num_heads=2, projection_dim=8, mlp_dim=16, dropout=0.1, drop_path=0.1),
        (2, 5, 8),
    ),
    LayerCase(
        kv_layers.TransformerBlock,
        dict(num_heads=2, projection_dim=8, mlp_dim=16, locality_attention=True),
        (2, 5, 8),
    ),
    LayerCase(kv_layers.SequencePooling, dict(mode="token"), (2, 5, 4)),
    LayerCase(kv_layers.SequencePooling, dict(mode="gap", num_registers=1), (2, 5, 4)),
    LayerCase(kv_layers.SequencePooling, dict(mode="seqpool", has_class_token=False), (2, 5, 4)),
]


def cases_for(layer_class):
    """The `CASES` of one layer class (for a `pytest.mark.parametrize`)."""
    return [case for case in CASES if case.layer_class is layer_class]


def public_layer_classes():
    """Every layer class `keras_vit.layers` exports."""
    return {
        value
        for value in map(kv_layers.__dict__.get, kv_layers.__all__)
        if isinstance(value, type) and issubclass(value, keras.layers.Layer)
    }


def numpy(x):
    return keras.ops.convert_to_numpy(keras.ops.cast(x, "float32"))


def random_inputs(input_shape, num_inputs=1, seed=0):
    """`num_inputs` references to one random float32 array of `input_shape`."""
    x = np.random.default_rng(seed).normal(size=input_shape).astype("float32")
    return [x] * num_inputs


def keras_base(layer_class):
    """The Keras class `layer_class` extends (`Layer`, `LayerNormalization`, `MultiHeadAttention`, ...)."""
    return next(cls for cls in layer_class.__mro__ if cls.__module__.startswith("keras."))


def added_config_keys(layer):
    """The keys `layer`'s config adds to its Keras base class's config."""
    return set(layer.get_config()) - set(keras_base(type(layer)).get_config(layer))


def own_constructor_arguments(layer_class):
    """The keyword arguments of the constructors between `layer_class` and its Keras base."""
    names = set()
    for cls in layer_class.__mro__[: layer_class.__mro__.index(keras_base(layer_class))]:
        names |= set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    return names


def assert_round_trip(layer, *inputs, **call_kwargs):
    """from_config(get_config()) rebuilds an equal layer; with the weights copied it computes the same."""
    expected = keras.ops.convert_to_numpy(layer(*inputs, **call_kwargs))
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(*inputs, **call_kwargs)  # build
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(*inputs, **call_kwargs)), expected, atol=1e-6)
    # Through the registered serialization too (what .keras files use).
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is type(layer) and revived.get_config() == config


def check_config(layer_class, kwargs, input_shape, num_inputs=1):
    """The config holds constructor arguments only and round-trips; the output has the shape it says."""
    inputs = random_inputs(input_shape, num_inputs)
    layer = layer_class(**kwargs)
    output = layer(*inputs)
    assert tuple(output.shape) == tuple(layer.compute_output_shape(*[input_shape] * num_inputs))
    extra = added_config_keys(layer) - own_constructor_arguments(layer_class)
    assert not extra, f"{layer_class.__name__}.get_config() holds non-constructor keys {sorted(extra)}"
    assert keras.saving.get_registered_name(layer_class) == f"keras_vit>{layer_class.__name__}"
    assert_round_trip(layer, *inputs)


def check_saved_model(layer_class, kwargs, input_shape, directory, num_inputs=1):
    """A model of the layer, random weights, saved and loaded in safe mode, computes the same."""
    tokens = keras.Input(input_shape[1:])
    model = keras.Model(tokens, layer_class(**kwargs, name="checked")(*[tokens] * num_inputs))
    rng = np.random.default_rng(1)
    for weight in model.weights:
        if keras.backend.standardize_dtype(weight.dtype).startswith("float"):
            weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
    inputs = random_inputs(input_shape, 1, seed=2)
    expected = keras.ops.convert_to_numpy(model(*inputs))
    path = Path(directory) / f"{layer_class.__name__}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.get_layer("checked")) is layer_class
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(*inputs)), expected, rtol=1e-6, atol=1e-6)


def check_mixed_precision(layer_class, kwargs, input_shape, num_inputs=1):
    """Under `mixed_bfloat16`: bfloat16 compute and output, float32 variables, finite, training too."""
    layer = layer_class(**kwargs, dtype="mixed_bfloat16")
    inputs = random_inputs(input_shape, num_inputs)
    takes_training = "training" in inspect.signature(layer.call).parameters
    for call_kwargs in ({}, {"training": True}) if takes_training else ({},):
        output = layer(*inputs, **call_kwargs)
        assert keras.backend.standardize_dtype(output.dtype) == "bfloat16", (
            layer_class.__name__,
            call_kwargs,
        )
        assert np.all(np.isfinite(numpy(output)))
    assert (layer.compute_dtype, layer.variable_dtype) == ("bfloat16", "float32")
    assert {keras.backend.standardize_dtype(w.dtype) for w in layer.weights} <= {"float32"}


def check_layer(layer_class, kwargs, input_shape, directory, num_inputs=1):
    """All the checks above for one layer configuration; `directory` takes the saved file."""
    check_config(layer_class, kwargs, input_shape, num_inputs)
    check_saved_model(layer_class, kwargs, input_shape, directory, num_inputs)
    check_mixed_precision(layer_class, kwargs, input_shape, num_inputs)


def check_case(case, directory):
    check_layer(case.layer_class, case.kwargs, case.input_shape, directory, case.num_inputs)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    directory = argv[0] if argv else tempfile.mkdtemp()
    for case in CASES:
        try:
            check_case(case, directory)
        except Exception as error:
            raise AssertionError(f"{case} failed under {keras.backend.backend()}") from error
    print("ok", len(CASES), keras.backend.backend())
    return 0


if __name__ == "__main__":
    sys.exit(main())
