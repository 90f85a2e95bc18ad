"""Classification metrics from logits, in numpy: what `evaluate`, `predict` and the runtime report.

numpy only (no Keras), so that the TF-free deployment runtime turns logits
into probabilities with the same `softmax` as `keras_vit.predict`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def softmax(logits) -> np.ndarray:
    """Softmax over the last axis, computed in float64 (stable for large logits).

    Args:
        logits: array `(..., num_classes)`.

    Returns:
        float32 probabilities of the same shape; each row sums to 1.
    """
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def log_softmax(logits) -> np.ndarray:
    """Log-probabilities over the last axis, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def accuracy(logits, labels) -> float:
    """Share of rows whose largest logit is at the true label.

    Args:
        logits: `(n, num_classes)` scores (logits or probabilities).
        labels: `(n,)` int labels.

    Returns:
        The accuracy as a float in [0, 1].
    """
    return float(np.mean(np.asarray(logits).argmax(axis=-1) == np.asarray(labels).reshape(-1)))


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts (true label, predicted label) pairs.

    Args:
        y_true: 1-D integer labels.
        y_pred: 1-D integer predictions, same length.
        num_classes: number of classes.

    Returns:
        int64 array of shape `(num_classes, num_classes)`; entry `[i, j]` is
        the number of samples of class `i` predicted as class `j`.

    Raises:
        ValueError: on mismatched lengths or labels outside
            `[0, num_classes)`.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}.")
    num_classes = int(num_classes)
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} has labels outside [0, {num_classes}): min {y.min()}, max {y.max()}.")
    index = y_true.astype("int64") * num_classes + y_pred.astype("int64")
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def evaluation_metrics(logits, labels, class_names: Sequence[str]) -> dict:
    """Accuracy, top-5 accuracy, loss, per-class accuracy and confusion matrix.

    Args:
        logits: `(n, num_classes)` model outputs.
        labels: `(n,)` true labels in the model's label order.
        class_names: the model's `num_classes` class names.

    Returns:
        A JSON-serialisable dict: `num_images`, `correct`, `accuracy`,
        `top5_accuracy` (for more than 5 classes), `loss` (mean
        cross-entropy), `mean_per_class_accuracy` (over the classes present),
        `per_class` (a list of `{"class", "count", "correct", "accuracy"}`,
        accuracy `None` for absent classes) and `confusion_matrix` (rows =
        true class).

    Raises:
        ValueError: if the shapes of `logits`, `labels` and `class_names`
            do not match.
    """
    logits = np.asarray(logits, dtype="float64")
    labels = np.asarray(labels).astype("int64").reshape(-1)
    num_classes = len(class_names)
    if logits.shape != (len(labels), num_classes):
        raise ValueError(f"logits {logits.shape} do not match {len(labels)} labels x {num_classes} classes.")
    predicted = logits.argmax(axis=-1)
    correct = predicted == labels
    matrix = confusion_matrix(labels, predicted, num_classes)
    per_class = []
    for i, name in enumerate(class_names):
        count = int(matrix[i].sum())
        hits = int(matrix[i, i])
        per_class.append(
            {"class": name, "count": count, "correct": hits, "accuracy": hits / count if count else None}
        )
    present = [c["accuracy"] for c in per_class if c["count"]]
    results = {
        "num_images": int(len(labels)),
        "correct": int(correct.sum()),
        "accuracy": float(correct.mean()),
    }
    if num_classes > 5:
        top5 = np.argsort(-logits, axis=-1, kind="stable")[:, :5]
        results["top5_accuracy"] = float((top5 == labels[:, None]).any(axis=-1).mean())
    results.update(
        loss=float(-log_softmax(logits)[np.arange(len(labels)), labels].mean()),
        mean_per_class_accuracy=float(np.mean(present)),
        per_class=per_class,
        confusion_matrix=matrix.tolist(),
    )
    return results


def top_k(probabilities, class_names: Sequence[str], k: int) -> list[list[dict]]:
    """The `k` most probable classes of each row, most probable first.

    Args:
        probabilities: `(n, num_classes)` array.
        class_names: the `num_classes` names.
        k: how many classes to keep (at least 1, at most `num_classes`).

    Returns:
        For each row, a list of `{"label", "index", "probability"}` dicts.
    """
    probabilities = np.asarray(probabilities)
    k = max(1, min(int(k), probabilities.shape[-1]))
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return [
        [{"label": class_names[i], "index": int(i), "probability": float(row[i])} for i in idx]
        for row, idx in zip(probabilities, order)
    ]


def format_predictions(predictions: list[dict]) -> str:
    """The text the prediction CLIs print: each image, then its ranked classes and probabilities.

    Args:
        predictions: one `{"image", "top_k"}` dict per image, `top_k` as
            `top_k` returns it.

    Returns:
        The lines, joined.
    """
    lines = []
    for item in predictions:
        lines.append(str(item["image"]))
        width = max(len(p["label"]) for p in item["top_k"])
        for rank, p in enumerate(item["top_k"], 1):
            lines.append(f"  {rank}. {p['label']:<{width}}  {100 * p['probability']:6.2f}%")
    return "\n".join(lines)
