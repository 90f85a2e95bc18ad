"""Tests for keras_vit.tta: the views Keras and the deployment runtime average."""

import numpy as np
import pytest
from conftest import reference_tta_views

from keras_vit import tta


def test_tta_views_shift_by_one_pixel_with_reflection():
    images = np.random.default_rng(0).integers(0, 256, (3, 6, 5, 3), dtype=np.uint8)
    for name, count in (("none", 1), ("flip", 2), ("flip-shift", 10)):
        views = list(tta.tta_views(images, name))
        assert len(views) == count == tta.TTA_VIEW_COUNTS[name]
        for view, expected in zip(views, reference_tta_views(images, name)):
            np.testing.assert_array_equal(view, expected)
            assert view.flags["C_CONTIGUOUS"] and view.dtype == np.uint8
    # Ten different views: no shift is repeated or the identity.
    views = list(tta.tta_views(images, "flip-shift"))
    assert len({view.tobytes() for view in views}) == 10
    with pytest.raises(ValueError, match="tta"):
        list(tta.tta_views(images, "rotate"))
    with pytest.raises(ValueError, match="tta"):
        tta.tta_views(images, "rotate")  # at the call, before the first view


def test_tta_accuracies_score_every_prefix():
    labels = np.array([0, 1, 1])
    # View 0 gets one image right, flip two, the ten views all three.
    views = [np.array([[2.0, 0.0], [1.0, 0.0], [1.0, 0.0]]), np.array([[0.0, 1.0], [0.0, 3.0], [0.0, 0.0]])]
    views += [np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])] * 8
    assert tta.tta_accuracies(views[:1], labels) == {"none": pytest.approx(1 / 3)}
    assert tta.tta_accuracies(views[:2], labels) == {
        "none": pytest.approx(1 / 3),
        "flip": pytest.approx(2 / 3),
    }
    assert tta.tta_accuracies(views, labels)["flip-shift"] == 1.0


def test_shift_images_and_names():
    image = np.arange(2 * 4 * 5 * 1).reshape(2, 4, 5, 1)
    np.testing.assert_array_equal(tta.shift_images(image, 1, 1)[:, :-1, :-1], image[:, 1:, 1:])
    np.testing.assert_array_equal(tta.shift_images(image, -1, 0)[:, 1:], image[:, :-1])
    assert not tta.shift_images(image, 1, 1, "constant")[:, -1].any()
    assert tta.shift_images(image, 2, -2).shape == image.shape
    assert [tta.tta_metric_name(name) for name in tta.TTA_CHOICES] == [
        "accuracy",
        "accuracy_flip_tta",
        "accuracy_flip_shift_tta",
    ]
    assert tta.tta_metric_name("flip", "val_accuracy") == "val_accuracy_flip_tta"
    assert tta.check_tta("flip") == "flip" and "flip-shift" in tta.TTA_HELP
