"""Tests for keras_vit.metrics: numbers recomputed by hand."""

import numpy as np
import pytest

from keras_vit import metrics


def test_softmax():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -1000.0]])
    p = metrics.softmax(logits)
    assert p.dtype == np.float32 and p.shape == (2, 3)
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(p[0], e / e.sum(), rtol=1e-6)
    np.testing.assert_allclose(p[1], [0.5, 0.5, 0.0], atol=1e-7)  # large logits: no overflow
    np.testing.assert_allclose(metrics.softmax([0.0, 0.0]), [0.5, 0.5])
    np.testing.assert_allclose(np.exp(metrics.log_softmax(logits[:1])), p[:1], rtol=1e-6)


def test_accuracy():
    assert metrics.accuracy([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], [1, 1, 1]) == pytest.approx(2 / 3)


def test_confusion_matrix_matches_hand_count():
    y_true = [0, 0, 1, 2, 2, 2, 1]
    y_pred = [0, 1, 1, 2, 0, 2, 1]
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    cm = metrics.confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == len(y_true)
    # A class that never occurs still gets its (zero) row and column.
    np.testing.assert_array_equal(
        metrics.confusion_matrix([0, 0], [0, 0], 3), [[2, 0, 0], [0, 0, 0], [0, 0, 0]]
    )


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix([0, 1], [-1, 1], 3)
    with pytest.raises(ValueError, match="length"):
        metrics.confusion_matrix([0, 1, 2], [0, 1], 3)


def test_evaluation_metrics():
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [2.0, 0.0, 1.0], [0.0, 0.0, 5.0]])
    labels = np.array([0, 1, 1, 0])
    results = metrics.evaluation_metrics(logits, labels, ["a", "b", "c"])
    assert results["num_images"] == 4 and results["correct"] == 2 and results["accuracy"] == 0.5
    assert "top5_accuracy" not in results  # 3 classes
    expected_loss = -np.mean(np.log(metrics.softmax(logits).astype(np.float64)[np.arange(4), labels]))
    assert results["loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert results["per_class"] == [
        {"class": "a", "count": 2, "correct": 1, "accuracy": 0.5},
        {"class": "b", "count": 2, "correct": 1, "accuracy": 0.5},
        {"class": "c", "count": 0, "correct": 0, "accuracy": None},
    ]
    assert results["mean_per_class_accuracy"] == 0.5  # over the classes present
    assert results["confusion_matrix"] == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    many = metrics.evaluation_metrics(np.eye(7)[[0, 1, 2]] + np.arange(7) * 0.01, [0, 6, 1], list("abcdefg"))
    assert many["accuracy"] == pytest.approx(1 / 3) and many["top5_accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="do not match"):
        metrics.evaluation_metrics(logits, labels, ["a", "b"])


def test_top_k_and_its_text():
    probabilities = np.array([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    ranked = metrics.top_k(probabilities, ["cat", "dog", "sea lion"], 2)
    assert ranked[0] == [
        {"label": "dog", "index": 1, "probability": 0.6},
        {"label": "sea lion", "index": 2, "probability": 0.3},
    ]
    assert [r["index"] for r in ranked[1]] == [0, 1]  # ties: the lower index first
    assert len(metrics.top_k(probabilities, ["a", "b", "c"], 20)[0]) == 3
    assert len(metrics.top_k(probabilities, ["a", "b", "c"], 0)[0]) == 1
    text = metrics.format_predictions([{"image": "x.png", "top_k": ranked[0]}])
    assert text.splitlines() == ["x.png", "  1. dog        60.00%", "  2. sea lion   30.00%"]
