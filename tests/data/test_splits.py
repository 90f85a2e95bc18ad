"""Tests for keras_vit.data.splits: `Splits`, the balanced `limit` selection."""

import numpy as np
import pytest

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


def _splits_with_ids(per_class=20, classes=4):
    """Splits whose every training image holds its own index in pixel (0, 0, 0), and a test split of ids >= 1000."""
    from keras_vit.data import Splits

    n = per_class * classes
    x_train = np.zeros((n, 2, 2, 3), np.uint8)
    ids = np.arange(n)
    x_train[:, 0, 0, 0], x_train[:, 0, 0, 1] = ids % 256, ids // 256
    y_train = (ids % classes).astype(np.int32)
    x_test = np.full((8, 2, 2, 3), 255, np.uint8)
    return Splits(
        x_train, y_train, x_test, np.arange(8, dtype=np.int32) % classes, tuple("abcd"[:classes]), "ids"
    )


def _ids(x):
    return set((x[:, 0, 0, 0].astype(int) + 256 * x[:, 0, 0, 1].astype(int)).tolist())


def test_hold_out_is_disjoint_balanced_reproducible_and_leaves_the_test_split_alone():
    splits = _splits_with_ids()
    held = splits.hold_out(0.25, seed=3)
    assert len(held.y_val) == 20 and len(held.y_train) == 60
    assert np.bincount(held.y_val).tolist() == [5, 5, 5, 5]  # class-balanced
    assert not _ids(held.x_val) & _ids(held.x_train)  # disjoint
    assert _ids(held.x_val) | _ids(held.x_train) == _ids(splits.x_train)  # nothing lost
    assert held.x_test is splits.x_test and held.y_test is splits.y_test
    assert _ids(splits.hold_out(0.25, seed=3).x_val) == _ids(held.x_val)  # the seed decides
    assert _ids(splits.hold_out(0.25, seed=4).x_val) != _ids(held.x_val)
    assert "20 validation (5/class)" in held.summary()
    assert splits.hold_out(0.0) is splits


def test_hold_out_refuses_bad_fractions_and_empty_classes():
    splits = _splits_with_ids(per_class=1)
    for fraction in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            splits.hold_out(fraction)
    with pytest.raises(ValueError, match="leaves no"):
        splits.hold_out(0.5)  # 2 of 4 classes would have no validation image
    with pytest.raises(ValueError, match="holds out no image of 4; use a larger --validation-split"):
        splits.hold_out(0.1)  # rounds to none: said so, not an error about a `limit` never given
    once = _splits_with_ids().hold_out(0.25)
    assert once.hold_out(0.25) is once  # a validation split there already (e.g. shipped) is kept


def test_with_validation_takes_a_shipped_split_unless_a_fraction_is_given():
    from keras_vit.data import Splits

    plain = _splits_with_ids()
    assert _ids(plain.with_validation(None, seed=3).x_val) == _ids(
        plain.hold_out(0.1, seed=3).x_val
    )  # default
    assert _ids(plain.with_validation(None, seed=3, default=0.25).x_val) == _ids(
        plain.hold_out(0.25, 3).x_val
    )
    assert plain.with_validation(0).x_val is None
    assert _ids(plain.with_validation(0.25, seed=3).x_val) == _ids(plain.hold_out(0.25, seed=3).x_val)
    # A data set that ships its validation split (an image folder's val/): used when no fraction is given,
    # left out with 0 (no validation), and refused with another fraction.
    held = plain.hold_out(0.25, seed=3)
    shipped = Splits(
        held.x_train,
        held.y_train,
        held.x_test,
        held.y_test,
        held.class_names,
        "ids",
        x_val=held.x_val,
        y_val=held.y_val,
    )
    assert shipped.with_validation(None) is shipped
    none = shipped.with_validation(0)
    assert none.x_val is None and none.y_val is None and len(none.y_train) == len(shipped.y_train)
    with pytest.raises(ValueError, match=r"--validation-split 0.2 would hold out .* val/ folder, 20 images"):
        shipped.with_validation(0.2)
