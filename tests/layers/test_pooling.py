"""keras_vit.layers.pooling: class token, mean and learned (seqpool) pooling."""

import keras
import numpy as np
import pytest

from keras_vit.layers import SequencePooling

from .layer_checks import assert_round_trip, cases_for, check_case


@pytest.mark.parametrize("case", cases_for(SequencePooling), ids=str)
def test_shared_layer_checks(case, tmp_path):
    check_case(case, tmp_path)


@pytest.mark.parametrize("mode", ["token", "gap"])
def test_sequence_pooling(mode):
    tokens = np.random.default_rng(4).normal(size=(2, 5, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(SequencePooling(mode)(tokens))
    np.testing.assert_allclose(out, tokens[:, 0] if mode == "token" else tokens[:, 1:].mean(1), atol=1e-6)
    assert_round_trip(SequencePooling(mode), tokens)
    with pytest.raises(ValueError):
        SequencePooling("token", has_class_token=False)
    # With 2 registers after the class token, "gap" averages tokens 3: only.
    pooled = keras.ops.convert_to_numpy(SequencePooling(mode, num_registers=2)(tokens))
    np.testing.assert_allclose(pooled, tokens[:, 0] if mode == "token" else tokens[:, 3:].mean(1), atol=1e-6)
    assert_round_trip(SequencePooling(mode, num_registers=2), tokens)


def test_sequence_pooling_seqpool():
    """A learned softmax over the patch tokens (class token and registers skipped) weights their sum."""
    tokens = np.random.default_rng(4).normal(size=(3, 7, 4)).astype("float32")
    layer = SequencePooling("seqpool", has_class_token=True, num_registers=2)
    out = keras.ops.convert_to_numpy(layer(tokens))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in (layer.score.kernel, layer.score.bias))
    patches = tokens[:, 3:]
    scores = (patches @ kernel + bias)[..., 0]
    weights = np.exp(scores - scores.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    assert np.abs(weights - 1 / 4).max() > 1e-2  # not a plain mean
    np.testing.assert_allclose(out, np.einsum("bp,bpd->bd", weights, patches), atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.pooling_weights(patches)), weights, atol=1e-6)
    assert [w.path.split("/", 1)[1] for w in layer.weights] == [
        "score/kernel",
        "score/bias",
    ]  # named sublayer
    assert_round_trip(SequencePooling("seqpool", has_class_token=False), tokens)
    with pytest.raises(ValueError, match="seqpool"):
        SequencePooling("attention")
