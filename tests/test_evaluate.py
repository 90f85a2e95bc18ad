"""End-to-end tests of `python -m keras_vit.evaluate` on a tiny image tree (see cli_models)."""

import errno
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from cli_models import (
    PER_CLASS,
    bad_model_files,
    error_line,
    make_setup,
    make_tree,
    read_split,
    record_decodes,
    save_model,
)
from conftest import heavy_imports_of
from PIL import Image

from keras_vit import cli_utils, evaluate, inference, tta
from keras_vit.data import CIFAR10_CLASSES, DATA_DIR_ENV, cifar10


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("cli"))


def test_evaluate_end_to_end(setup, tmp_path, capsys):
    out = tmp_path / "eval"
    status = evaluate.main(
        [
            str(setup["model_path"]),
            "--data-dir",
            str(setup["tree"]),
            "--output",
            str(out),
            "--no-cache",
            "--batch-size",
            "8",
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0

    results = json.loads((out / "evaluation.json").read_text())
    x, y = read_split(setup["tree"], "test", setup["classes"])
    predicted = setup["model"].predict(x, verbose=0).argmax(axis=-1)
    expected_accuracy = float(np.mean(predicted == y))
    assert results["num_images"] == len(y) == 10 * PER_CLASS
    assert results["accuracy"] == pytest.approx(expected_accuracy, abs=1e-12)
    assert results["correct"] == int(np.sum(predicted == y))
    expected_cm = np.zeros((10, 10), int)
    np.add.at(expected_cm, (y, predicted), 1)
    np.testing.assert_array_equal(results["confusion_matrix"], expected_cm)
    assert results["class_names"] == setup["classes"]
    for i, row in enumerate(results["per_class"]):
        assert row["class"] == setup["classes"][i] and row["count"] == PER_CLASS
        assert row["accuracy"] == pytest.approx(np.mean(predicted[y == i] == i))
    # Top-5 accuracy and loss, recomputed from the model's logits with Keras's own metric and loss.
    logits = setup["model"].predict(x, verbose=0)
    top5 = keras.metrics.SparseTopKCategoricalAccuracy(k=5)
    top5.update_state(y, logits)
    expected_top5 = float(top5.result())
    assert results["top5_accuracy"] == pytest.approx(expected_top5, abs=1e-6)
    expected_loss = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits))
    assert results["loss"] == pytest.approx(expected_loss, rel=1e-5)

    with Image.open(out / "confusion_matrix.png") as im:
        im.verify()
    assert f"Accuracy: {expected_accuracy:.4f}" in printed
    assert "shape3" in printed  # per-class table


def evaluate_with_tta(setup, out, capsys, tta):
    """`python -m keras_vit.evaluate --tta TTA` on the test tree: its results, and the test images and labels."""
    status = evaluate.main(
        [
            str(setup["model_path"]),
            "--data-dir",
            str(setup["tree"]),
            "--output",
            str(out),
            "--no-cache",
            "--batch-size",
            "8",
            "--tta",
            tta,
        ]
    )
    assert status == 0, capsys.readouterr().err
    return json.loads((out / "evaluation.json").read_text()), *read_split(
        setup["tree"], "test", setup["classes"]
    )


def test_evaluate_flip_tta_averages_the_mirror_images(setup, tmp_path, capsys):
    results, x, y = evaluate_with_tta(setup, tmp_path / "eval_tta", capsys, "flip")
    logits = (setup["model"].predict(x, verbose=0) + setup["model"].predict(x[:, :, ::-1], verbose=0)) / 2
    assert results["tta"] == "flip"
    assert results["accuracy"] == pytest.approx(float(np.mean(logits.argmax(-1) == y)), abs=1e-12)
    # The mirror images really change the logits (the test would pass vacuously otherwise).
    assert not np.allclose(logits, setup["model"].predict(x, verbose=0), atol=1e-4)
    with pytest.raises(ValueError, match="tta"):
        inference.tta_logits(setup["model"], x, "rotate")


def test_evaluate_flip_shift_tta_averages_ten_views(setup, tmp_path, capsys):
    from conftest import reference_tta_views

    results, x, y = evaluate_with_tta(setup, tmp_path / "eval_flip_shift", capsys, "flip-shift")
    views = [setup["model"].predict(view, verbose=0) for view in reference_tta_views(x, "flip-shift")]
    assert len(views) == 10 and results["tta"] == "flip-shift"
    logits = np.mean(views, axis=0)
    assert results["accuracy"] == pytest.approx(float(np.mean(logits.argmax(-1) == y)), abs=1e-12)
    np.testing.assert_allclose(
        inference.tta_logits(setup["model"], x, "flip-shift", 8, progress=False), logits, atol=1e-5
    )
    # Every shifted view changes the logits, and the flip-shift mean is not the flip mean.
    assert all(not np.allclose(view, views[0], atol=1e-4) for view in views[1:])
    assert not np.allclose(logits, (views[0] + views[1]) / 2, atol=1e-4)
    # One pass over the ten views scores all three augmentations.
    scored = tta.tta_accuracies(inference.view_logits(setup["model"], x, "flip-shift", 8, progress=False), y)
    assert scored["none"] == pytest.approx(float(np.mean(views[0].argmax(-1) == y)))
    assert scored["flip"] == pytest.approx(float(np.mean((views[0] + views[1]).argmax(-1) == y)))
    assert scored["flip-shift"] == results["accuracy"]


def test_evaluate_limit_and_default_output(setup, capsys):
    status = evaluate.main(
        [
            str(setup["model_path"]),
            "--data-dir",
            str(setup["tree"]),
            "--limit",
            "10",
            "--split",
            "train",
            "--no-cache",
        ]
    )
    assert status == 0, capsys.readouterr().err
    results = json.loads((setup["model_path"].parent / "evaluation.json").read_text())
    assert results["num_images"] == 10 and results["split"] == "train"
    assert sum(row["count"] for row in results["per_class"]) == 10
    assert (setup["model_path"].parent / "confusion_matrix.png").stat().st_size > 0


def test_evaluate_never_writes_into_the_package(tmp_path):
    from keras_vit.pretrained import model_path

    assert evaluate.default_output_dir(model_path()) == Path("runs") / "evaluate" / "vit_cifar10"
    assert evaluate.default_output_dir(tmp_path / "model.keras") == tmp_path


def test_evaluate_cifar_named_tree_uses_cifar_names(setup, tmp_path, capsys):
    tree = make_tree(tmp_path / "cifar", CIFAR10_CLASSES, per_class=2, seed=1)
    model, model_path = save_model(tmp_path / "run", seed=1)  # no labels.txt: CIFAR-10 names
    assert evaluate.main([str(model_path), "--data-dir", str(tree), "--no-cache"]) == 0
    results = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    x, y = read_split(tree, "test", list(CIFAR10_CLASSES))
    expected = float(np.mean(model.predict(x, verbose=0).argmax(-1) == y))
    assert results["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert results["class_names"] == list(CIFAR10_CLASSES)
    assert "from the data_dir argument" in results["data"]  # read by load_cifar10

    # The same tree without train/: evaluation needs only test/.
    shutil.rmtree(tree / "train")
    out = tmp_path / "test_only"
    assert evaluate.main([str(model_path), "--data-dir", str(tree), "--no-cache", "--output", str(out)]) == 0
    again = json.loads((out / "evaluation.json").read_text())
    assert again["accuracy"] == results["accuracy"] and again["num_images"] == 10 * 2
    assert again["confusion_matrix"] == results["confusion_matrix"]


def test_evaluate_streamed_gives_the_results_of_a_load_in_memory(setup, tmp_path, capsys, monkeypatch):
    """--stream: a split larger than memory is decoded a chunk at a time, with the same results; an unreadable
    image stops it in one line naming the file; a source that is not an image-folder tree is refused."""
    tree = setup["tree"]
    argv = [
        str(setup["model_path"]),
        "--data-dir",
        str(tree),
        "--no-cache",
        "--tta",
        "flip",
        "--batch-size",
        "4",
    ]
    assert evaluate.main([*argv, "--output", str(tmp_path / "memory")]) == 0
    chunks = []
    real = inference.tta_logits_in_chunks

    def spy(model, images, *args, **kwargs):
        chunks.append(type(images).__name__)
        return real(model, images, *args, **kwargs)

    monkeypatch.setattr(inference, "tta_logits_in_chunks", spy)
    assert evaluate.main([*argv, "--stream", "--output", str(tmp_path / "streamed")]) == 0
    assert chunks == ["FileImages"]  # never an array of the whole split
    memory, streamed = (
        json.loads((tmp_path / name / "evaluation.json").read_text()) for name in ("memory", "streamed")
    )
    assert (
        streamed["confusion_matrix"] == memory["confusion_matrix"]
        and streamed["num_images"] == memory["num_images"]
    )
    assert streamed["loss"] == pytest.approx(memory["loss"], abs=1e-5)
    assert "streamed from disk" in streamed["data"]

    broken = tmp_path / "broken"
    shutil.copytree(tree, broken)
    victim = sorted((broken / "test").glob("*/*.png"))[3]
    victim.write_bytes(b"no longer a picture")  # after the listing: found when its chunk is read
    capsys.readouterr()
    out = tmp_path / "made" / "here"
    assert evaluate.main([*argv[:2], str(broken), *argv[3:], "--stream", "--output", str(out)]) == 2
    line = error_line(capsys)
    assert line.startswith(f"error: cannot read {victim}: ") and line.endswith(
        "remove or replace it and rerun"
    )
    assert not (tmp_path / "made").exists()

    batches = tmp_path / "cifar-10-batches-py"  # CIFAR-10's batch files: refused before they are read
    batches.mkdir()
    (batches / "data_batch_1").write_bytes(b"")
    assert evaluate.main([str(setup["model_path"]), "--data-dir", str(batches), "--stream"]) == 2
    assert "streaming reads an image-folder tree" in error_line(capsys)


def test_evaluate_writes_into_its_folder_even_if_another_commands_failure_removed_it(tmp_path):
    """Two commands into one new folder: the one that failed removes the folder it made, empty, while the other
    still runs; that one's results were then lost (FileNotFoundError)."""
    results = {
        "confusion_matrix": [[1, 0], [0, 1]],
        "class_names": ["a", "b"],
        "split": "test",
        "num_images": 2,
        "accuracy": 1.0,
    }
    output = tmp_path / "shared" / "new"  # made by the other command, then removed by it
    json_path, plot_path = evaluate._write_results(output, results, "m.keras")
    assert json.loads(json_path.read_text()) == results and plot_path.stat().st_size > 0


def test_evaluate_test_only_folder(setup, tmp_path, capsys, monkeypatch):
    """A tree with only test/ evaluates like the full tree; train/ is never read."""
    tree = tmp_path / "test_only"
    shutil.copytree(setup["tree"] / "test", tree / "test")
    read = record_decodes(monkeypatch)
    cache = tmp_path / "cache"
    argv = [str(setup["model_path"]), "--data-dir", str(tree), "--cache-dir", str(cache), "--batch-size", "8"]
    assert evaluate.main([*argv, "--output", str(tmp_path / "a")]) == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "a" / "evaluation.json").read_text())
    x, y = read_split(setup["tree"], "test", setup["classes"])
    predicted = setup["model"].predict(x, verbose=0).argmax(axis=-1)
    assert results["num_images"] == len(y) == 10 * PER_CLASS
    assert results["accuracy"] == pytest.approx(float(np.mean(predicted == y)), abs=1e-12)
    assert len(set(read)) == 10 * PER_CLASS
    assert [f.name.split("-")[1] for f in cache.glob("*.npz")] == ["test"]

    # Second run: from the test split's cache, nothing decoded.
    read.clear()
    assert evaluate.main([*argv, "--output", str(tmp_path / "b")]) == 0
    cached = json.loads((tmp_path / "b" / "evaluation.json").read_text())
    assert read == [] and "cached" in cached["data"]
    assert cached["accuracy"] == results["accuracy"]
    assert cached["confusion_matrix"] == results["confusion_matrix"]

    # Asking for the missing split is a clear one-line error naming it.
    capsys.readouterr()
    assert evaluate.main([*argv, "--split", "train", "--output", str(tmp_path / "c" / "d")]) == 2
    line = error_line(capsys)
    assert line.startswith("error: ") and f"Missing split folder {tree / 'train'}" in line
    assert not (
        tmp_path / "c"
    ).exists()  # the folders it made for its output, removed again: nothing was written


def test_evaluate_decodes_only_the_evaluated_split(setup, tmp_path, monkeypatch):
    read = record_decodes(monkeypatch)
    assert (
        evaluate.main(
            [
                str(setup["model_path"]),
                "--data-dir",
                str(setup["tree"]),
                "--no-cache",
                "--output",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert len(set(read)) == 10 * PER_CLASS
    assert all(Path(p).parent.parent.name == "test" for p in read)


def test_evaluate_errors(setup, tmp_path, capsys):
    tree = str(setup["tree"])
    assert evaluate.main([str(tmp_path / "missing.keras"), "--data-dir", tree]) == 2
    assert error_line(capsys) == f"error: model file {tmp_path / 'missing.keras'} does not exist"

    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"this is not a zip file")
    assert evaluate.main([str(corrupt), "--data-dir", tree]) == 2
    assert error_line(capsys).startswith(f"error: {corrupt} is not a valid .keras file: not a zip archive")

    assert (
        evaluate.main([str(setup["model_path"]), "--data-dir", str(tmp_path / "nodata"), "--no-cache"]) == 2
    )
    line = error_line(capsys)
    assert line.startswith("error: ") and "nodata" in line

    # A 10-class model without labels.txt gets CIFAR-10 names, which the tree lacks.
    _, bare = save_model(tmp_path / "bare")
    assert evaluate.main([str(bare), "--data-dir", tree, "--no-cache"]) == 2
    assert "not among the model's classes" in error_line(capsys)

    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--help"])
    assert exit_info.value.code == 0
    assert "--data-dir" in capsys.readouterr().out


def test_evaluate_without_data_lists_what_it_tried(setup, tmp_path, monkeypatch, capsys):
    """No --data-dir, no $KERAS_VIT_DATA_DIR, nothing in the standard places, offline: the error names every
    source searched and how to point at a local copy, not just "not found"."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.chdir(tmp_path)  # ./data/cifar10 and ./data/cifar-10-batches-py: absent
    monkeypatch.setattr(cifar10, "_network_available", lambda *a, **k: False)
    assert evaluate.main([str(setup["model_path"]), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Could not find CIFAR-10. Tried:")
    for expected in (
        f"${DATA_DIR_ENV}: not set",
        str(tmp_path / "keras_home" / "datasets"),
        "data/cifar10",
        "tensorflow_datasets",
        "keras.datasets.cifar10: no network",
        "--data-dir DIR",
    ):
        assert expected in err, expected


@pytest.fixture(scope="module")
def bad_models(setup, tmp_path_factory):
    return bad_model_files(tmp_path_factory.mktemp("bad_models"), setup["model_path"])


@pytest.mark.parametrize(
    "case", ["truncated", "garbage", "no config", "lambda", "os.system", "28x28x1", "NaN"]
)
def test_evaluate_refuses_a_bad_model_file_in_one_line(
    setup, bad_models, case, tmp_path, capsys, monkeypatch
):
    """Truncated/garbage files ("File not found"), Lambda and os.system configs (a generic Keras message),
    a 28x28x1 CNN (a ValueError traceback) and NaN weights (10% and exit 0): one line each, before any data."""
    path, expected = bad_models[case]
    read = record_decodes(monkeypatch)
    out = tmp_path / "out"
    status = evaluate.main([str(path), "--data-dir", str(setup["tree"]), "--no-cache", "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and expected in err
    assert read == [] and not out.exists()


def test_evaluate_checks_its_output_folder_before_the_data(setup, tmp_path, capsys, monkeypatch):
    """--output naming a file (FileExistsError), a read-only or a full one (EROFS/ENOSPC tracebacks after the
    data had loaded): one line each, and no image decoded."""
    read = record_decodes(monkeypatch)
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")

    def run(output):
        status = evaluate.main(
            [
                str(setup["model_path"]),
                "--data-dir",
                str(setup["tree"]),
                "--no-cache",
                "--output",
                str(output),
            ]
        )
        err = capsys.readouterr().err.strip()
        assert status == 2 and len(err.splitlines()) == 1, err
        return err

    assert run(a_file) == f"error: --output {a_file} exists and is not a folder"
    assert run(a_file / "sub") == f"error: cannot create --output {a_file / 'sub'}: a part of it is a file"
    if os.geteuid() != 0:  # root writes into a read-only folder: the simulated case below stands for it
        read_only = tmp_path / "read_only"
        read_only.mkdir(mode=0o555)
        assert run(read_only) == f"error: cannot write to --output {read_only}: Permission denied"

    def read_only_disk(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    with monkeypatch.context() as patch:
        patch.setattr(cli_utils.tempfile, "mkstemp", read_only_disk)
        assert (
            run(tmp_path / "ro")
            == f"error: cannot write to --output {tmp_path / 'ro'}: Read-only file system"
        )
    with monkeypatch.context() as patch:
        patch.setattr(
            cli_utils.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=0)
        )
        assert run(tmp_path / "full").startswith(f"error: --output {tmp_path / 'full'} has 0 bytes free")
    assert read == []


def test_evaluate_disk_full_while_writing_is_one_line(setup, tmp_path, capsys, monkeypatch):
    def disk_full(path, value):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(evaluate, "atomic_write_json", disk_full)
    out = tmp_path / "out"
    status = evaluate.main(
        [str(setup["model_path"]), "--data-dir", str(setup["tree"]), "--no-cache", "--output", str(out)]
    )
    err = capsys.readouterr().err.strip()
    assert status == 2 and err == f"error: cannot write to {out}: No space left on device"
    # The picture goes first and the results last: no evaluation.json without its picture, no temporary file.
    assert [path.name for path in out.iterdir()] == ["confusion_matrix.png"]


def test_evaluate_one_class_folder_and_symlink_loops(setup, tmp_path, capsys):
    """A trained model is still scored on one class's images (the loader refuses one class for training
    only); a symbolic-link loop in the data is skipped with a warning that names it, not `[Errno 40]`."""
    tree = tmp_path / "one_class"
    shutil.copytree(setup["tree"] / "test" / "shape4", tree / "test" / "shape4")
    (tree / "test" / "shape4" / "loop.png").symlink_to("loop.png")
    (tree / "test" / "elsewhere").symlink_to("elsewhere")
    out = tmp_path / "out"
    with pytest.warns(
        UserWarning, match=r"Skipped 2 entries .*elsewhere \(Too many levels of symbolic links\)"
    ):
        status = evaluate.main(
            [str(setup["model_path"]), "--data-dir", str(tree), "--no-cache", "--output", str(out)]
        )
    assert status == 0, capsys.readouterr().err
    results = json.loads((out / "evaluation.json").read_text())
    assert results["num_images"] == PER_CLASS
    shape4 = setup["classes"].index("shape4")
    assert [row["count"] for row in results["per_class"]] == [
        PER_CLASS if i == shape4 else 0 for i in range(10)
    ]


@pytest.mark.parametrize(("args", "status"), [(["--help"], 0), (["model.keras", "--split", "nope"], 2)])
def test_help_and_bad_flags_answer_without_loading_keras(args, status):
    """--help and a usage error come before Keras (seconds to import) is loaded."""
    code, out, heavy = heavy_imports_of("keras_vit.evaluate", *args)
    assert (code, heavy) == (status, [])
    assert status or "--tta" in out


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT in a background job"])
def test_evaluate_stopped_while_writing_leaves_no_half_of_its_results(setup, tmp_path, how):
    """SIGTERM, or SIGINT sent to a command a script started in the background (which inherits SIGINT ignored),
    while the picture is written: one line, 143 or 130, no temporary file, and no evaluation.json without its
    picture (the results are written last; the previous ones go first)."""
    import signal

    from test_train_faults import Paused

    out = tmp_path / "eval"
    args = [setup["model_path"], "--data-dir", setup["tree"], "--output", out, "--no-cache"]
    assert evaluate.main(list(map(str, args))) == 0  # a previous evaluation in the folder
    paused = Paused(
        args,
        "before-replace:confusion_matrix.png",
        module="keras_vit.evaluate",
        sigint_ignored=how != "SIGTERM",
    )
    status, stderr = paused.stop(signal.SIGTERM if how == "SIGTERM" else signal.SIGINT)
    assert status == (143 if how == "SIGTERM" else 130), stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "error: interrupted"
    assert sorted(path.name for path in out.iterdir()) == ["confusion_matrix.png"]  # the previous picture
