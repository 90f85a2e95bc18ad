"""python -m keras_vit.train resumed after an interruption ends with an uninterrupted run's weights."""

import numpy as np
from conftest import run_interrupted
from test_train import ARGS

from keras_vit import load_model, train


def _weights(path):
    return [np.asarray(w, dtype=np.float64) for w in load_model(path).get_weights()]


def _distance(a, b):
    """The L2 norm of the difference of all weights."""
    return float(np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(a, b, strict=True))))


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(tiny_tree, tmp_path, monkeypatch):
    """2 epochs in one go, 2 epochs in two pieces (epoch 1 from the checkpoint), and 1 epoch only.

    The checkpoint holds the weights, the optimizer and the random generators'
    states, and epoch 1's batches come in epoch 1's order whether or not the
    process ran epoch 0: the resumed run ends with the uninterrupted run's
    weights, bit for bit.
    """

    def args(name, epochs):
        out = ARGS[:] + ["--data-dir", str(tiny_tree), "--output", str(tmp_path / name)]
        out[out.index("--epochs") + 1] = str(epochs)
        return out

    assert train.main(args("whole", 2)) == 0
    assert train.main(args("one", 1)) == 0

    run_interrupted(train.main, args("pieces", 2))
    assert (tmp_path / "pieces" / "checkpoint").exists()
    assert train.main(args("pieces", 2)) == 0

    whole = _weights(tmp_path / "whole" / "model.keras")
    pieces = _weights(tmp_path / "pieces" / "model.keras")
    one = _weights(tmp_path / "one" / "model.keras")
    resumed_gap, second_epoch = _distance(whole, pieces), _distance(whole, one)
    assert second_epoch > 1e-2  # the second epoch moves the weights
    assert resumed_gap == 0.0, (resumed_gap, second_epoch)
