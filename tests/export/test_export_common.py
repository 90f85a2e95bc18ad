"""Tests for export/common.py: the backend is chosen by the commands (not by an import), labels."""

import importlib.util
import signal
import warnings

import pytest
from conftest import run_python
from export_helpers import CLASSES, REPO, error_lines, explain

from export.common import ExportError, labels_with_source

pytest_plugins = ["export_fixtures"]


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
def test_keras_imported_with_other_backend_is_a_clear_error(trained):
    code = (
        "import keras, sys\n"
        "from export import common, tflite\n"
        "sys.exit(common.run_cli(tflite.main, [sys.argv[1], sys.argv[2]]))\n"
    )
    proc = run_python(code, trained["path"], "/tmp/unused-keras-vit.tflite", timeout=None, cwd=REPO)
    assert proc.returncode == 2, explain(proc)
    assert "'jax' backend" in proc.stderr and len(error_lines(proc)) == 1, explain(proc)


def test_importing_export_chooses_no_backend():
    """Importing the export modules imports neither Keras nor TensorFlow and leaves KERAS_BACKEND alone;
    the commands choose the backend (`run_cli` -> `use_tensorflow_backend`)."""
    code = (
        "import os, sys\n"
        "import export.__main__, export.benchmark, export.formats\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'tf2onnx', 'onnx')]\n"
        "assert not heavy, heavy\n"
        "assert os.environ['KERAS_BACKEND'] == 'jax', os.environ['KERAS_BACKEND']\n"
        "from export import common\n"
        "common.use_tensorflow_backend()\n"
        "assert os.environ['KERAS_BACKEND'] == 'tensorflow'\n"
    )
    proc = run_python(code, backend="jax", cwd=REPO)
    assert proc.returncode == 0, explain(proc)


def test_labels_with_source(tmp_path):
    """The rules of keras_vit.labels, with a sentence saying where the names came from (for the report)."""
    model = tmp_path / "m.keras"
    labels, source = labels_with_source(model, 10)
    assert labels == list(CLASSES) and source.startswith("note")  # no file: CIFAR-10 names, said so
    assert "CIFAR-10 class names" in source
    with pytest.raises(ExportError, match="--labels"):
        labels_with_source(model, 3)
    (tmp_path / "labels.txt").write_text("x\ny\nz\n\n")  # keras_vit.train's file
    assert labels_with_source(model, 3) == (["x", "y", "z"], f"labels from {tmp_path / 'labels.txt'}")
    (tmp_path / "m.labels.txt").write_text("a\nb\nc\n")  # the twin of one model among others comes first
    assert labels_with_source(model, 3)[0] == ["a", "b", "c"]
    (tmp_path / "given.txt").write_text("p\nq\n")
    with pytest.raises(ExportError, match="2 names but the model has 3"):
        labels_with_source(model, 3, tmp_path / "given.txt")
    (tmp_path / "twice.txt").write_text("p\nq\np\n")
    with pytest.raises(ExportError, match="twice"):
        labels_with_source(model, 3, tmp_path / "twice.txt")


def test_export_data_reads_only_the_images_it_uses(tmp_path, monkeypatch):
    """The test split for the proofs, the training split only for int8's calibration, each at its own count:
    an export never decodes a whole training set it does not use (a test-only folder is enough)."""
    from conftest import write_colour_tree

    from export import common

    calls = []
    load_image_folder = common.load_image_folder

    def spy(root, **kwargs):
        calls.append((kwargs["splits"], kwargs["limit"]))
        return load_image_folder(root, **kwargs)

    monkeypatch.setattr(common, "load_image_folder", spy)
    tree = write_colour_tree(tmp_path / "data", ["a", "b"], size=40, counts=(("train", 6), ("test", 4)))
    io = common.ModelIO(40, 40, 3, 2)
    data = common.load_data(tree, io, ["a", "b"], eval_images=3, calib_images=0)
    assert calls == [("test", 3)] and len(data.x_eval) == 3 and data.x_calib is None and data.real
    calls.clear()
    data = common.load_data(tree, io, ["a", "b"], eval_images=None, calib_images=5)
    assert calls == [("test", None), ("train", 5)] and (len(data.x_eval), len(data.x_calib)) == (8, 5)

    test_only = write_colour_tree(tmp_path / "test_only", ["a", "b"], size=40, counts=(("test", 2),))
    assert len(common.load_data(test_only, io, ["a", "b"], eval_images=None).x_eval) == 4
    with pytest.raises(ExportError, match="train"):  # int8 needs the training split: said, with the path
        common.load_data(test_only, io, ["a", "b"], eval_images=None, calib_images=5)


def test_export_data_names_where_its_folder_came_from(tmp_path, monkeypatch):
    """The data source of the report and the cards says whether the folder was --data-dir or
    $KERAS_VIT_DATA_DIR (a CIFAR-10 tree, read by load_cifar10)."""
    from conftest import write_colour_tree

    from export import common
    from keras_vit.data import CIFAR10_CLASSES

    tree = write_colour_tree(tmp_path / "data", CIFAR10_CLASSES, counts=(("test", 1),))
    io = common.ModelIO(32, 32, 3, 10)
    monkeypatch.delenv("KERAS_VIT_DATA_DIR", raising=False)
    given = common.load_data(tree, io, list(CIFAR10_CLASSES), eval_images=None)
    assert str(tree) in given.source and "(from the data_dir argument)" in given.source
    monkeypatch.setenv("KERAS_VIT_DATA_DIR", str(tree))
    from_environment = common.load_data(None, io, list(CIFAR10_CLASSES), eval_images=None)
    assert str(tree) in from_environment.source and "(from $KERAS_VIT_DATA_DIR)" in from_environment.source
    # A tree of the user's own classes, for a 32x32 model too: read as such (it was read as CIFAR-10, with a
    # warning that its classes were not CIFAR-10's), its origin named the same way.
    own = write_colour_tree(tmp_path / "own", ["ant", "bee"], counts=(("test", 2),))
    io = common.ModelIO(32, 32, 3, 2)
    monkeypatch.setenv("KERAS_VIT_DATA_DIR", str(own))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_environment = common.load_data(None, io, ["ant", "bee"], eval_images=None)
        assert from_environment.source.startswith(f"image folder {own}")
    assert "(from $KERAS_VIT_DATA_DIR)" in from_environment.source
    monkeypatch.delenv("KERAS_VIT_DATA_DIR")
    assert (
        "(from the data_dir argument)" in common.load_data(own, io, ["ant", "bee"], eval_images=None).source
    )


@pytest.mark.parametrize("then", ["progress", "publish", "finish", "other error"])
def test_a_signal_whose_exception_python_dropped_still_stops_the_export(then, capsys):
    """Ctrl-C landing in a garbage-collector callback (JAX frees buffers in one): Python drops the exception and the
    command goes on. The export then stops at its next step, or before it publishes, never exits 0 as if it had
    not been interrupted, and says so in one line instead of the traceback of what the signal broke."""
    from conftest import signal_inside_a_gc_callback

    from export import common

    published = []

    def main(argv):
        signal_inside_a_gc_callback(signal.SIGINT)
        if then == "progress":
            for _ in common.progress(range(3)):
                pass
        elif then == "publish":
            with common.SignalDeferral() as deferral:
                deferral.defer()
                published.append(True)
        elif then == "other error":
            raise KeyError("a library turned the signal's exception into its own")
        return 0

    assert common.run_cli(main) == 130
    assert published == []
    assert list(common.progress(range(2))) == [0, 1]  # acted on: a later command does not meet it again
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        last
        == {
            "progress": "interrupted (SIGINT) before any output was written",
            "publish": "interrupted (SIGINT) before any output was written",
            "finish": "interrupted (SIGINT) after the output was written (it is complete)",
            "other error": "interrupted (SIGINT)",
        }[then]
    )
