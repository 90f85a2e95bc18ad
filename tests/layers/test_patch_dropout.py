"""keras_vit.layers.patch_dropout: the prefix tokens and a random subset of the patches, in training only."""

import keras
import numpy as np
import pytest

from keras_vit.layers import PatchDropout

from .layer_checks import assert_round_trip, cases_for, check_case


@pytest.mark.parametrize("case", cases_for(PatchDropout), ids=str)
def test_shared_layer_checks(case, tmp_path):
    check_case(case, tmp_path)


def test_patch_dropout_keeps_the_prefix_and_a_random_subset_of_patches():
    # 2 prefix tokens (class token, register) and 16 patches; every token is its own id.
    batch, prefix, patches = 64, 2, 16
    ids = np.broadcast_to(
        np.arange(prefix + patches, dtype="float32")[None, :, None], (batch, prefix + patches, 3)
    )
    layer = PatchDropout(0.25, num_prefix_tokens=prefix, seed=3)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer(ids)), ids
    )  # outside training: every token
    out = keras.ops.convert_to_numpy(layer(ids, training=True))
    assert out.shape == (batch, prefix + 12, 3) and layer.kept_patches(patches) == 12
    np.testing.assert_array_equal(out[:, :prefix, 0], np.broadcast_to(np.arange(prefix), (batch, prefix)))
    kept = out[:, prefix:, 0]
    assert np.all(kept >= prefix) and all(len(set(row)) == 12 for row in kept)  # patches only, no repeats
    np.testing.assert_array_equal(out[..., 0], out[..., 2])  # whole tokens move, features stay together
    assert len({tuple(sorted(row)) for row in kept}) > batch // 2  # a different subset per image
    counts = np.bincount(kept.astype(int).ravel(), minlength=prefix + patches)[prefix:]
    assert counts.min() > 0.5 * counts.mean()  # no patch position favoured (each expected 48 times)
    assert_round_trip(layer, ids)
    assert PatchDropout(0.9).kept_patches(4) == 1  # at least one patch
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError):
            PatchDropout(bad)
