"""python -m keras_vit.train --stream: an image folder read from disk a batch at a time trains as in memory."""

from pathlib import Path

import numpy as np
import pytest
from test_train import ARGS

from keras_vit import load_model, train


def _args(tiny_tree, output, *extra):
    return [*ARGS, "--data-dir", str(tiny_tree), "--output", str(output), "--image-size", "24", *extra]


def test_a_streamed_run_ends_with_the_in_memory_runs_weights(tiny_tree, tmp_path, capsys):
    assert train.main(_args(tiny_tree, tmp_path / "memory", "--dataset", "folder")) == 0
    assert train.main(_args(tiny_tree, tmp_path / "stream", "--stream", "--loader-workers", "2")) == 0
    assert "(streamed from disk)" in capsys.readouterr().out
    memory = load_model(tmp_path / "memory" / "model.keras")
    stream = load_model(tmp_path / "stream" / "model.keras")
    assert stream.input_shape == (None, 24, 24, 3)  # --image-size
    for a, b in zip(memory.get_weights(), stream.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


_STREAM_AGAINST_MEMORY = """
import sys
import numpy as np
from keras_vit import load_model, train
data, out, *args = sys.argv[1:]
for name, extra in (("memory", ["--dataset", "folder"]), ("stream", ["--stream", "--loader-workers", "2"])):
    assert train.main([*args, "--data-dir", data, "--output", f"{out}/{name}", *extra]) == 0
memory, stream = (load_model(f"{out}/{name}/model.keras").get_weights() for name in ("memory", "stream"))
print("largest difference", max(float(np.max(np.abs(a - b))) for a, b in zip(memory, stream, strict=True)))
"""


def test_a_streamed_run_on_jax_ends_with_the_in_memory_runs_weights(tiny_tree, tmp_path):
    """On JAX (and PyTorch) Keras reads a batch to build the model before the first epoch: Keras' own loader
    threads then served batches of one epoch's order in the next, and the streamed run ended elsewhere."""
    from conftest import run_python

    args = [*ARGS, "--image-size", "24", "--validation-split", "0"]
    result = run_python(_STREAM_AGAINST_MEMORY, tiny_tree, tmp_path, *args, backend="jax")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "largest difference 0.0"


@pytest.mark.parametrize("workers", ["1", "2"])  # one thread reading ahead, or several
def test_a_file_broken_after_the_scan_stops_the_run_with_its_name(tiny_tree, tmp_path, capsys, workers):
    import shutil

    from keras_vit.training import pipeline
    from keras_vit.training.batches import TrainingBatches

    data = tmp_path / "data"
    shutil.copytree(tiny_tree, data)
    # A file of the last batch of epoch 0 (the run's batches: its default validation split, batch size, seed),
    # read inside TensorFlow's tf.data pipeline; the first batch is also read eagerly, for its shapes.
    splits = pipeline.load_splits(str(data), image_size=(24, 24), stream=True).hold_out(0.1, seed=0)
    batches = TrainingBatches(splits.x_train, splits.y_train, int(ARGS[ARGS.index("--batch-size") + 1]))
    assert len(batches) >= 3
    rows = batches._order[(len(batches) - 1) * batches.batch_size : len(batches) * batches.batch_size]
    first = set(splits.x_train.paths[batches._order[: batches.batch_size]])
    broken = Path(splits.x_train.paths[rows[0]])
    assert str(broken) not in first
    broken.write_bytes(b"truncated")
    assert train.main(_args(data, tmp_path / "run", "--stream", "--loader-workers", workers)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "InvalidArgumentError" not in err
    (error,) = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert error == err.strip().splitlines()[-1]
    assert f"cannot read {broken}:" in error and "model.keras was not written" in error
    assert not (tmp_path / "run" / "model.keras").exists()


def test_stream_needs_an_image_folder(tmp_path, capsys):
    assert (
        train.main([*ARGS, "--output", str(tmp_path / "run"), "--stream", "--data-dir", str(tmp_path)]) == 2
    )
    assert "--stream reads an image-folder tree" in capsys.readouterr().err
