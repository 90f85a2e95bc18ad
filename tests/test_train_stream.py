"""python -m keras_vit.train --stream: an image folder read from disk a batch at a time trains as in memory."""

import numpy as np
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


def test_a_file_broken_after_the_scan_stops_the_run_with_its_name(tiny_tree, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_tree, data)
    broken = sorted((data / "train" / "cat").iterdir())[0]
    broken.write_bytes(b"truncated")
    assert train.main(_args(data, tmp_path / "run", "--stream")) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert broken.name in error and "model.keras was not written" in error
    assert not (tmp_path / "run" / "model.keras").exists()


def test_stream_needs_an_image_folder(tmp_path, capsys):
    assert (
        train.main([*ARGS, "--output", str(tmp_path / "run"), "--stream", "--data-dir", str(tmp_path)]) == 2
    )
    assert "--stream reads an image-folder tree" in capsys.readouterr().err
