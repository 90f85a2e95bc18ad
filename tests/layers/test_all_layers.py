"""All of keras_vit.layers at once: the shared checks cover every layer, on each backend; mixed precision."""

from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import run_python

from keras_vit.layers import PatchEncoder, Patches, SequencePooling, TransformerBlock

from .layer_checks import CASES, public_layer_classes

LAYER_CHECKS = Path(__file__).with_name("layer_checks.py")
# Runs layer_checks.py's main() in a fresh process (its own backend) with the saved files in DIR.
RUN_LAYER_CHECKS = (
    "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def test_every_layer_has_a_case():
    assert {case.layer_class for case in CASES} == public_layer_classes()


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_shared_layer_checks_on_other_backends(backend, tmp_path):
    """The checks of every case under JAX and PyTorch (the in-process tests run them under TensorFlow)."""
    pytest.importorskip(backend)
    result = run_python(RUN_LAYER_CHECKS, LAYER_CHECKS, tmp_path, backend=backend, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-3:] == ["ok", str(len(CASES)), backend]


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_layers_under_mixed_precision(policy):
    images = np.random.default_rng(5).uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    layers = [
        Patches(4, dtype=policy),
        PatchEncoder(4, 16, dtype=policy),
        TransformerBlock(2, 16, 32, drop_path=0.1, dtype=policy),
        SequencePooling("token", dtype=policy),
    ]
    x = images
    for layer in layers:
        x = layer(x, training=True) if isinstance(layer, TransformerBlock) else layer(x)
        assert keras.backend.standardize_dtype(x.dtype) == policy.split("_")[1], type(layer).__name__
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32"))))
    # Variables stay float32 under mixed precision.
    assert {w.dtype for layer in layers for w in layer.weights} <= {"float32"}
