"""Tests for keras_vit.data.splits: `Splits`, the balanced `limit` selection."""

import numpy as np

from keras_vit import data
from keras_vit.data import splits


def test_stratified_indices():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 2)
    idx = data.stratified_indices(labels, 9, seed=3)
    assert len(set(idx.tolist())) == 9
    assert np.bincount(labels[idx]).tolist() in ([4, 3, 2], [3, 4, 2])  # class 2 short
    np.testing.assert_array_equal(idx, data.stratified_indices(labels, 9, seed=3))
    assert sorted(data.stratified_indices(labels, None, 0).tolist()) == list(range(22))
    assert sorted(data.stratified_indices(labels, 100, 0).tolist()) == list(range(22))


def test_finish_empties_unrequested_split():
    x = np.zeros((4, 32, 32, 3), np.uint8)
    y = np.arange(4) % 2
    s = splits.splits_from_arrays(x, y, x[:2], y[:2], ("a", "b"), "arrays", None, 0, ("test",))
    assert s.x_train.shape == (0, 32, 32, 3) and s.y_train.shape == (0,)
    assert s.x_test.shape == (2, 32, 32, 3) and s.y_test.dtype == np.int32
