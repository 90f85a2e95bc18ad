"""Tests for keras_vit.training.pipeline: the shared fit -> score -> save steps."""

import os
from pathlib import Path

import pytest

from keras_vit import load_model
from keras_vit.training import pipeline


def test_save_model_atomic_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path):
    from keras_vit import build_vit

    path = tmp_path / "model.keras"
    path.write_bytes(b"the previous model")
    model = build_vit("vit_micro")
    pipeline.save_model_atomic(model, path)
    assert load_model(path).count_params() == model.count_params()
    umask = os.umask(0o022)
    os.umask(umask)
    assert (
        path.stat().st_mode & 0o777 == 0o666 & ~umask
    )  # as `open` makes a file: readable by others under 022
    before = path.read_bytes()

    class Broken:  # fails halfway through writing
        def save(self, filepath):
            Path(filepath).write_bytes(b"half a model")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        pipeline.save_model_atomic(Broken(), path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_save_run_never_leaves_metrics_beside_a_model_they_do_not_describe(tmp_path, monkeypatch):
    """A kill between the new model and the new metrics left the previous run's metrics.json describing the new
    model.keras: the old metrics go before the model is replaced; a save that fails before that keeps them."""
    from keras_vit import build_vit

    model = build_vit("vit_micro")
    pipeline.save_run(tmp_path, model, [str(i) for i in range(10)], {"run": 1})
    assert (tmp_path / "metrics.json").exists()

    class Broken:
        def save(self, filepath):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):  # before the new model: the previous run stays whole
        pipeline.save_run(tmp_path, Broken(), [str(i) for i in range(10)], {"run": 2})
    assert '"run": 1' in (tmp_path / "metrics.json").read_text()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "write_labels", killed)  # stopped after the new model replaced the old one
    with pytest.raises(KeyboardInterrupt):
        pipeline.save_run(tmp_path, model, [str(i) for i in range(10)], {"run": 2})
    assert not (tmp_path / "metrics.json").exists()
    assert not (tmp_path / "labels.txt").exists()  # the previous run's names, which predict would have shown


def test_save_run_refuses_names_a_labels_file_cannot_hold_before_writing_anything(tmp_path):
    """A class `yak ` used to publish model.keras, then fail on labels.txt: a model without its names."""
    from keras_vit import build_vit

    with pytest.raises(ValueError, match="surrounding whitespace"):
        pipeline.save_run(tmp_path, build_vit("vit_micro", num_classes=2), ["ant", "yak "], {"run": 1})
    assert list(tmp_path.iterdir()) == []


def test_describe_device_names_the_cpu_and_its_cores_without_an_accelerator():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: describe_device names it instead")
    assert pipeline.describe_device().endswith(f", {os.cpu_count()} cores (tensorflow)")


def test_trim_history_keeps_the_epochs_before_the_checkpoint(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,2.0\n1,1.5\n2,1.2\n3,1.1\n")
    pipeline.trim_history(path, 2)
    assert path.read_text() == "epoch,loss\n0,2.0\n1,1.5\n"
    pipeline.trim_history(tmp_path / "missing.csv", 2)  # nothing to trim: no error
    # Keras' CSVLogger ends rows with \r\n: the kept rows keep them, so a resumed run's rows match.
    path.write_bytes(b"epoch,loss\r\n0,2.0\r\n1,1.5\r\n2,1.2\r\n")
    pipeline.trim_history(path, 1)
    assert path.read_bytes() == b"epoch,loss\r\n0,2.0\r\n"


def test_locked_output_refuses_a_second_holder_and_removes_leftovers(tmp_path):
    leftover = tmp_path / ".model.tmp-abc.keras"
    leftover.write_bytes(b"half a model")
    exporting = tmp_path / ".export.tmp-xyz"  # `python -m export runs/x/model.keras runs/x/export`, under way
    exporting.mkdir()
    with pipeline.locked_output(tmp_path):
        assert not leftover.exists() and exporting.is_dir()  # the run's own leftovers only
        with pytest.raises(pipeline.CLIError, match="another run is writing to"):
            with pipeline.locked_output(tmp_path):
                pass
    with pipeline.locked_output(tmp_path):  # released
        pass


def test_locked_output_removes_the_folders_it_made_for_a_run_that_wrote_nothing(tmp_path):
    run = tmp_path / "runs" / "a"
    with pytest.raises(pipeline.CLIError, match="no data"):
        with pipeline.locked_output(run):
            assert (run / pipeline.LOCK_NAME).exists()
            with pytest.raises(pipeline.CLIError, match="another run is writing to"):
                with pipeline.locked_output(run):  # busy: removes nothing of the holder's
                    pass
            assert (run / pipeline.LOCK_NAME).exists()
            raise pipeline.CLIError("no data")
    assert list(tmp_path.iterdir()) == []  # the lock file and both folders
    with pipeline.locked_output(run):
        (run / "checkpoint").mkdir()  # an interrupted run's checkpoint: kept for the rerun
    assert sorted(p.name for p in run.iterdir()) == [pipeline.LOCK_NAME, "checkpoint"]


def test_score_reads_a_streamed_split_a_chunk_at_a_time_with_the_same_accuracies(tiny_tree, monkeypatch):
    import numpy as np

    from keras_vit import build_vit
    from keras_vit.data.streaming import FileImages

    paths = sorted((tiny_tree / "train").rglob("*.png"))  # 120 images
    labels = np.arange(len(paths)) % 10
    streamed = FileImages(paths, (32, 32))
    decoded = np.asarray(streamed)
    model = build_vit("vit_micro")
    whole = pipeline.score(model, decoded, labels, "flip-shift", 16, chunk=len(paths))
    largest = []
    original = FileImages._decode
    monkeypatch.setattr(FileImages, "_decode", lambda self, p: largest.append(len(p)) or original(self, p))
    chunked = pipeline.score(model, streamed, labels, "flip-shift", 16, chunk=40)
    assert chunked == pytest.approx(whole, abs=1e-9)
    assert max(largest) == 48 and sum(largest) == len(paths)  # chunks of 3 batches, every image read once


def test_load_splits_reads_the_data_folder_variable_as_it_reads_data_dir(tmp_path, monkeypatch):
    """`python -m keras_vit.train` without --data-dir, $KERAS_VIT_DATA_DIR naming an image-folder tree: the tree
    is loaded at the model's size (auto and --dataset folder), and --stream takes it too."""
    from conftest import write_colour_tree

    from keras_vit import data

    tree = write_colour_tree(
        tmp_path / "flowers", ["daisy", "rose"], size=20, counts=(("train", 2), ("test", 1))
    )
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tree))
    for options in ({}, {"dataset": "folder"}, {"stream": True}):
        splits = pipeline.load_splits(image_size=(16, 16), **options)
        assert splits.image_shape == (16, 16, 3) and splits.class_names == ("daisy", "rose"), options
    monkeypatch.delenv(data.DATA_DIR_ENV)
    with pytest.raises(ValueError, match="--dataset folder needs --data-dir"):
        pipeline.load_splits(dataset="folder")
