"""python -m keras_vit.train resumed after an interruption ends with an uninterrupted run's weights."""

import json

import numpy as np
from conftest import assert_a_finished_run_is_refused, run_interrupted
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
    resumes = json.loads((tmp_path / "pieces" / "metrics.json").read_text())["resumes"]
    assert resumes == [{"epoch": 1, "length before": {"--epochs": 2, "--time-budget": None}}]


def test_a_resumed_run_draws_what_an_uninterrupted_run_draws(tiny_tree, tmp_path):
    """With every random part on (RandAugment, random erasing, MixUp/CutMix, dropout, stochastic depth, patch
    dropout) and the weights averaged (EMA), the run resumed after epoch 1 ends with the uninterrupted run's
    weights, bit for bit: each generator's state and the average come back from the checkpoint."""
    random_parts = ["--augment", "strong", "--drop-path", "0.1", "--patch-dropout", "0.25"]
    random_parts += ["--model-arg", "dropout=0.1", "--ema-momentum", "0.9"]

    def args(name):
        return [*ARGS, *random_parts, "--data-dir", str(tiny_tree), "--output", str(tmp_path / name)]

    assert train.main(args("whole")) == 0
    run_interrupted(train.main, args("pieces"))
    assert train.main(args("pieces")) == 0
    whole = _weights(tmp_path / "whole" / "model.keras")
    pieces = _weights(tmp_path / "pieces" / "model.keras")
    assert _distance(whole, pieces) == 0.0


def test_a_run_resumed_mid_way_counts_each_earlier_epoch_once(tiny_tree, tmp_path, monkeypatch):
    """Resumed after epoch 1 of 3, the run's wall-clock seconds are epoch 1's (read from the history) plus the
    resumed fit's own: epoch 1 is counted once, the epochs trained now not again from the history."""
    from keras_vit.training import pipeline

    class Timer(pipeline.EpochTimer):
        """Epoch N says it took 10^(N + 3) s: each epoch's share of a sum can be told apart."""

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            self.times[-1] = logs["epoch_seconds"] = 10.0 ** (epoch + 4)

    monkeypatch.setattr(pipeline, "EpochTimer", Timer)
    args = [*ARGS, "--data-dir", str(tiny_tree), "--output", str(tmp_path / "run")]
    args[args.index("--epochs") + 1] = "3"
    run_interrupted(train.main, args)  # the checkpoint of epoch 1
    args[args.index("--epochs") + 1] = "4"  # the length may change on resume
    assert train.main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # Epoch 1's 10^4 s and the resumed fit's own seconds (far fewer than 10^3 s), not epoch 2's 10^5 s.
    assert metrics["epochs"] == 4 and 1e4 < metrics["wall_clock_seconds"] < 1e4 + 1e3
    # The resume and the length asked before it are recorded.
    assert metrics["resumes"] == [{"epoch": 1, "length before": {"--epochs": 3, "--time-budget": None}}]


def test_a_checkpoint_of_another_run_is_refused_and_left_as_it_was(tmp_path, capsys):
    """A rerun into the same --output with other data, classes, image size or model does not resume the old
    weights: one line names what changed and points at --fresh; the checkpoint and its history are untouched."""
    from conftest import write_colour_tree

    first = write_colour_tree(tmp_path / "abc", ("a", "b", "c"))
    other = write_colour_tree(tmp_path / "xyz", ("x", "y", "z"), seed=1)  # as many classes, other names
    out = tmp_path / "run"

    def args(data, *extra):
        return [*ARGS, "--data-dir", str(data), "--output", str(out), "--validation-split", "0", *extra]

    run_interrupted(train.main, args(first))  # stopped after the checkpoint of epoch 1
    checkpoint = out / "checkpoint"
    kept = {path.name: path.read_bytes() for path in checkpoint.iterdir()}
    assert "history.csv" in kept
    capsys.readouterr()
    for data, extra, change in (
        (
            other,
            (),
            f"its data was '{first}', now '{other}'; its class names were ['a', 'b', 'c'], now ['x', 'y', 'z']",
        ),
        (first, ("--image-size", "24"), "its image size was [32, 32], now [24, 24]"),
        (first, ("--model-arg", "depth=3"), "its model differs (depth 2 -> 3)"),
        (first, ("--seed", "1"), "its --seed was 0, now 1"),
        (first, ("--mixed-precision", "bfloat16"), "its precision was 'float32', now 'mixed_bfloat16'"),
        # What each step computes: the images held out, the augmentation, the batch, the optimizer's settings.
        (first, ("--validation-split", "0.5"), "its validation images were 0, now 18"),
        (
            first,
            ("--augment", "cutout"),
            "its augmentation differs (--augment 'basic' -> 'cutout', erasing 0.0 -> 1.0, erasing_max_area 0.25 -> 0.125)",
        ),
        (first, ("--batch-size", "16"), "its --batch-size was 32, now 16"),
        (first, ("--learning-rate", "0.01"), "its --learning-rate was 0.001, now 0.01"),
        (first, ("--label-smoothing", "0"), "its --label-smoothing was 0.1, now 0.0"),
    ):
        assert train.main(args(data, *extra)) == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error == (
            f"error: the checkpoint in {checkpoint} is of another run: {change}; rerun with --fresh to start over "
            "(it removes that checkpoint), or choose another --output"
        )
        assert {path.name: path.read_bytes() for path in checkpoint.iterdir()} == kept
        assert not (out / "model.keras").exists()
    # Another data folder with the same classes is another run too.
    same_classes = write_colour_tree(tmp_path / "abc2", ("a", "b", "c"), seed=2)
    assert train.main(args(same_classes)) == 2
    assert (
        f"is of another run: its data was '{first}', now '{same_classes}'; rerun" in capsys.readouterr().err
    )
    # A checkpoint written before runs were recorded (no "run" in checkpoint.json) resumes as before.
    metadata = json.loads((checkpoint / "checkpoint.json").read_text())
    del metadata["run"]
    (checkpoint / "checkpoint.json").write_text(json.dumps(metadata))
    assert train.main(args(first)) == 0
    assert "Resuming from the checkpoint of epoch 1" in capsys.readouterr().out
    # --fresh starts over.
    run_interrupted(train.main, args(first, "--fresh"))
    assert train.main(args(other, "--fresh")) == 0
    assert (out / "labels.txt").read_text().split() == ["x", "y", "z"]


def test_a_fine_tuning_checkpoint_refuses_another_optimizer_or_trained_set(tmp_path, capsys):
    """Resumed with another --freeze-blocks, --layer-decay or --optimizer, Keras would drop the saved optimizer
    state (other variables): the rerun is refused in one line, the checkpoint left as it was."""
    from conftest import write_colour_tree

    from keras_vit.models import build_vit

    data = write_colour_tree(tmp_path / "abc", ("a", "b", "c"))
    build_vit("vit_micro", num_classes=3).save(tmp_path / "vit.keras")
    out = tmp_path / "run"

    def args(*extra):
        fine = ["--init-from", str(tmp_path / "vit.keras"), "--validation-split", "0"]
        return [*ARGS, "--data-dir", str(data), "--output", str(out), *fine, *extra]

    run_interrupted(train.main, args("--freeze-blocks", "1", "--layer-decay", "0.75"))
    checkpoint = out / "checkpoint"
    kept = {path.name: path.read_bytes() for path in checkpoint.iterdir()}
    capsys.readouterr()
    for extra, change in (
        (("--freeze-blocks", "2", "--layer-decay", "0.75"), "its --freeze-blocks was 1, now 2"),
        (("--freeze-blocks", "1"), "its --layer-decay was 0.75, now None"),
        (
            ("--freeze-blocks", "1", "--layer-decay", "0.75", "--optimizer", "sgd"),
            "its --optimizer was 'adamw', now 'sgd'",
        ),
        # The averaged weights are optimizer variables too.
        (
            ("--freeze-blocks", "1", "--layer-decay", "0.75", "--ema-momentum", "0.99"),
            "its --ema-momentum was None, now 0.99",
        ),
    ):
        assert train.main(args(*extra)) == 2
        assert capsys.readouterr().err.strip() == (
            f"error: the checkpoint in {checkpoint} is of another run: {change}; rerun with --fresh to start over "
            "(it removes that checkpoint), or choose another --output"
        )
        assert {path.name: path.read_bytes() for path in checkpoint.iterdir()} == kept
    # A checkpoint written before these were recorded resumes as before.
    metadata = json.loads((checkpoint / "checkpoint.json").read_text())
    for key in ("--optimizer", "--freeze-blocks", "--layer-decay", "--ema-momentum"):
        metadata["run"].pop(key, None)
    (checkpoint / "checkpoint.json").write_text(json.dumps(metadata))
    assert train.main(args("--freeze-blocks", "1", "--layer-decay", "0.75")) == 0
    assert "Resuming from the checkpoint of epoch 1" in capsys.readouterr().out


def test_a_finished_run_is_not_trained_over_without_fresh(tiny_tree, tmp_path, capsys, monkeypatch):
    """A rerun into the folder of a finished run is refused in one line before the data loads, the run's files
    untouched; --fresh trains and replaces them; an interrupted --fresh run says to resume without --fresh."""
    from keras_vit.training import callbacks

    out = tmp_path / "run"
    args = [*ARGS, "--data-dir", str(tiny_tree), "--output", str(out)]
    assert train.main(args) == 0
    finished = (out / "model.keras").read_bytes()
    assert_a_finished_run_is_refused(train.main, args, out, capsys, monkeypatch)

    # Interrupted, a --fresh run keeps its checkpoint and says how to resume it: without --fresh, which would
    # start over; the finished run's files stay until the new run ends.
    original = callbacks.EpochTimer.on_epoch_begin

    def interrupt(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, logs)

    with monkeypatch.context() as patched:
        patched.setattr(callbacks.EpochTimer, "on_epoch_begin", interrupt)
        assert train.main([*args, "--seed", "1", "--fresh"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"interrupted: the checkpoint of epoch 1 in {out / 'checkpoint'} is kept; rerun the same command without "
        "--fresh to resume"
    )
    assert (out / "model.keras").read_bytes() == finished
    # A checkpoint resumes over the finished run, without --fresh.
    assert train.main([*args, "--seed", "1"]) == 0
    assert "Resuming from the checkpoint of epoch 1" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["args"]["seed"] == 1
    assert (out / "model.keras").read_bytes() != finished
