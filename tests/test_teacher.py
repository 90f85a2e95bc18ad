"""The teacher CLI (python -m keras_vit.teacher), and distilling teachers into the ViT (ViTTrainer and
keras_vit.train)."""

import json

import keras
import numpy as np
import pytest
from conftest import assert_a_finished_run_is_refused, heavy_imports_of

from keras_vit import teacher, train
from keras_vit.data import load_cifar10
from keras_vit.models.teachers import build_airbench, build_resnet9, load_teacher
from keras_vit.training.recipes import DEFAULT_VALIDATION_SPLIT


def assert_reports_the_saved_teachers_accuracies(metrics, path, tiny_tree):
    """`metrics` (the teacher command's) report the saved teacher's accuracy on the test split the command
    scores (all of tiny_tree's test images: no --limit), plain and averaged with its mirror images (the view
    of --teacher-flip)."""
    test = load_cifar10(str(tiny_tree), splits=("test",))
    x, y = test.x_test.astype("float32"), test.y_test
    model = keras.saving.load_model(path)
    plain = model.predict(x, verbose=0)
    mirrored = model.predict(x[:, :, ::-1], verbose=0)
    # The mirror images change the logits: the flip accuracy is not the plain one by construction.
    assert not np.allclose(plain, mirrored, atol=1e-4)
    assert metrics["test_images"] == len(y)
    assert metrics["test_accuracy"] == pytest.approx(float(np.mean(plain.argmax(-1) == y)))
    assert metrics["test_accuracy_flip"] == pytest.approx(float(np.mean((plain + mirrored).argmax(-1) == y)))


def test_teacher_cli_and_train_with_teacher(tiny_tree, tmp_path, capsys):
    out = tmp_path / "teacher"
    assert (
        teacher.main(
            [
                "--data-dir",
                str(tiny_tree),
                "--width",
                "4",
                "--epochs",
                "2",
                "--batch-size",
                "32",
                "--output",
                str(out),
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["wall_clock_seconds"] > 0
    assert_reports_the_saved_teachers_accuracies(metrics, out / "model.keras", tiny_tree)
    assert (out / "labels.txt").read_text().split()[0] == "airplane"
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 2  # a header and an epoch a line
    student = tmp_path / "student"
    args = [
        "--preset",
        "vit_micro",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--verbose",
        "0",
        "--data-dir",
        str(tiny_tree),
        "--output",
        str(student),
    ]
    assert (
        train.main(
            args
            + [
                "--teacher",
                str(out / "model.keras"),
                "--distillation",
                "soft",
                "--temperature",
                "2",
                "--teacher-flip",
            ]
        )
        == 0
    )
    # Both held out their default share at the same seed: the teacher never saw the student's validation images.
    assert "warning: the teacher" not in capsys.readouterr().out
    saved = json.loads((student / "metrics.json").read_text())
    assert saved["args"]["teacher"] == [str(out / "model.keras")] and saved["args"]["distillation"] == "soft"
    assert saved["args"]["teacher_flip"] is True
    # The saved model is the ViT alone.
    assert keras.saving.load_model(student / "model.keras").count_params() == saved["parameters"]
    capsys.readouterr()
    args.append("--fresh")  # past the finished student: the teacher's checks come after that one
    assert train.main(args + ["--teacher", str(tmp_path / "missing.keras")]) == 2
    assert "no such file" in capsys.readouterr().err
    build_resnet9(num_classes=3, width=4).save(tmp_path / "three.keras")
    assert train.main(args + ["--teacher", str(tmp_path / "three.keras")]) == 2
    assert "3 outputs" in capsys.readouterr().err
    assert train.main(args + ["--teacher", str(out / "model.keras"), "--distillation-weight", "2"]) == 2
    capsys.readouterr()
    assert train.main(args + ["--teacher-flip"]) == 2  # nothing to flip: said, not ignored
    assert "--teacher-flip needs --teacher" in capsys.readouterr().err
    assert teacher.main(["--data-dir", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o" / "p")]) == 2
    assert not (tmp_path / "o").exists()  # the folders it made, lock file included, removed again


def test_teacher_cli_airbench(tiny_tree, tmp_path):
    out = tmp_path / "airbench"
    assert (
        teacher.main(
            [
                "--arch",
                "airbench",
                "--data-dir",
                str(tiny_tree),
                "--width",
                "4",
                "--epochs",
                "2",
                "--batch-size",
                "32",
                "--output",
                str(out),
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["arch"] == "airbench" and metrics["epochs"] == 2
    assert_reports_the_saved_teachers_accuracies(metrics, out / "model.keras", tiny_tree)
    # The arch's SGD settings unless given.
    assert metrics["args"]["learning_rate"] == 0.5 and metrics["args"]["weight_decay"] == 0.0133
    loaded = load_teacher(out / "model.keras", (32, 32), 10)
    assert loaded.name == "airbench_teacher" and not loaded.get_layer("whiten").trainable
    # Two teachers distilled at once: their logits averaged.
    other = tmp_path / "other.keras"
    build_resnet9(width=4).save(other)
    student = tmp_path / "student"
    assert (
        train.main(
            [
                "--preset",
                "vit_micro",
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--verbose",
                "0",
                "--data-dir",
                str(tiny_tree),
                "--output",
                str(student),
                "--teacher",
                str(out / "model.keras"),
                str(other),
            ]
        )
        == 0
    )
    saved = json.loads((student / "metrics.json").read_text())
    assert saved["args"]["teacher"] == [str(out / "model.keras"), str(other)]
    assert (
        train.main(
            [
                "--data-dir",
                str(tiny_tree),
                "--output",
                str(student),
                "--teacher",
                str(other),
                str(tmp_path / "missing.keras"),
            ]
        )
        == 2
    )


def test_teacher_time_budget(tiny_tree, tmp_path, capsys):
    """--time-budget stops the teacher once the next epoch would pass it, and plans its rate per epoch."""
    out = tmp_path / "teacher"
    # The first epoch holds the compilation, far longer than 0.5 s: the budget stops fit after it.
    assert (
        teacher.main(
            [
                "--data-dir",
                str(tiny_tree),
                "--width",
                "4",
                "--epochs",
                "3",
                "--batch-size",
                "32",
                "--time-budget",
                "0.5",
                "--output",
                str(out),
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["epochs"] == 1 and metrics["stopped_by_time_budget"] and metrics["time_budget_seconds"] == 0.5
    )
    header, row = (out / "history.csv").read_text().splitlines()
    rate = float(row.split(",")[header.split(",").index("learning_rate")])
    # Epoch 1 of the 3 planned, warmup a fifth of them: the rate at the epoch's middle is 0.5/3/0.2 of the peak.
    assert rate == pytest.approx(0.4 * (0.5 / 3) / 0.2)
    # A budget larger than --max-epochs need: the cap ends the run, which says so and is not a budget stop.
    capsys.readouterr()
    assert (
        teacher.main(
            [
                "--data-dir",
                str(tiny_tree),
                "--width",
                "4",
                "--epochs",
                "2",
                "--max-epochs",
                "2",
                "--batch-size",
                "32",
                "--time-budget",
                "600",
                "--output",
                str(out),
                "--verbose",
                "0",
                "--fresh",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and not metrics["stopped_by_time_budget"]
    assert "2 epochs ended before the 600 s budget" in capsys.readouterr().out
    assert teacher.main(["--data-dir", str(tiny_tree), "--time-budget", "0", "--output", str(out)]) == 2
    assert "--time-budget must be positive" in capsys.readouterr().err


def test_teacher_ensemble_benchmark(tiny_tree, tmp_path):
    """benchmarks/teacher_ensemble.py: each teacher's test accuracy, plain and with flip, then their average's."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "teacher_ensemble", Path(__file__).resolve().parents[1] / "benchmarks" / "teacher_ensemble.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    members = [build_resnet9(width=4), build_airbench(width=4)]
    paths = [str(tmp_path / f"t{i}.keras") for i in range(2)]
    for member, path in zip(members, paths):
        member.save(path)
    output = tmp_path / "ensemble.json"
    assert (
        script.main([*paths, "--data-dir", str(tiny_tree), "--batch-size", "20", "--output", str(output)])
        == 0
    )
    rows = json.loads(output.read_text())["rows"]
    assert [row["teachers"] for row in rows] == [[paths[0]], [paths[1]], paths]
    test = load_cifar10(str(tiny_tree), splits=("test",))
    x, y = test.x_test, test.y_test
    logits = [m.predict(x, verbose=0) for m in members]
    mirrored = [m.predict(x[:, :, ::-1], verbose=0) for m in members]
    assert rows[0]["accuracy"] == pytest.approx(float(np.mean(logits[0].argmax(1) == y)))
    assert rows[2]["accuracy"] == pytest.approx(float(np.mean((logits[0] + logits[1]).argmax(1) == y)))
    assert rows[2]["accuracy_flip"] == pytest.approx(float(np.mean(sum(logits + mirrored).argmax(1) == y)))
    assert "accuracy_flip_shift" not in rows[2]
    from conftest import reference_tta_views

    assert (
        script.main(
            [
                *paths,
                "--data-dir",
                str(tiny_tree),
                "--batch-size",
                "20",
                "--tta",
                "flip-shift",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    rows = json.loads(output.read_text())["rows"]
    views = [
        sum(m.predict(view, verbose=0) for m in members) for view in reference_tta_views(x, "flip-shift")
    ]
    assert rows[2]["accuracy_flip_shift"] == pytest.approx(float(np.mean(sum(views).argmax(1) == y)))
    assert rows[2]["accuracy_flip"] == pytest.approx(float(np.mean(sum(logits + mirrored).argmax(1) == y)))
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "missing.keras"), "--data-dir", str(tiny_tree)])


@pytest.mark.parametrize(
    ("flag", "share"), [(["--validation-split", "0.25"], 0.25), ([], DEFAULT_VALIDATION_SPLIT)]
)
def test_teacher_leaves_out_the_students_validation_images(tiny_tree, tmp_path, monkeypatch, flag, share):
    """`--validation-split` at the student's seed, or neither given: the teacher trains on the student's training
    images only."""
    from keras_vit.training import pipeline, teacher_command

    trained = []

    class Recording(teacher_command.TrainingBatches):
        def __init__(self, images, labels, *args, **kwargs):
            trained.append(images)
            super().__init__(images, labels, *args, **kwargs)

    monkeypatch.setattr(teacher_command, "TrainingBatches", Recording)
    out = tmp_path / "teacher"
    flags = ["--data-dir", str(tiny_tree), "--width", "4", "--epochs", "1", "--batch-size", "30"]
    assert teacher.main([*flags, "--seed", "3", *flag, "--output", str(out), "--verbose", "0"]) == 0
    student = pipeline.load_splits(str(tiny_tree), seed=3).hold_out(share, 3)
    np.testing.assert_array_equal(trained[0], student.x_train)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation_images"] == round(120 * share) == len(student.y_val)
    assert metrics["train_images"] == 120 - metrics["validation_images"]
    # The held-out images are not among those trained on.
    flat = {image.tobytes() for image in trained[0]}
    assert not any(image.tobytes() in flat for image in student.x_val)


def test_a_teacher_for_a_student_of_another_image_size(tmp_path, capsys):
    """--image-size: an image folder loads at the student's size (here 16x16), the teacher takes it, and
    keras_vit.train at that size distils it; a size the network cannot take, or another size than CIFAR-10's
    for its loader, is one line, exit 2."""
    from conftest import write_colour_tree

    tree = write_colour_tree(
        tmp_path / "data", ["cat", "dog", "fox"], size=24, counts=(("train", 8), ("test", 2))
    )
    common = [
        "--data-dir",
        str(tree),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--verbose",
        "0",
        "--validation-split",
        "0",
    ]
    out = tmp_path / "teacher"
    teacher_flags = [*common, "--width", "4", "--image-size", "16"]
    assert teacher.main([*teacher_flags, "--output", str(out)]) == 0
    assert keras.saving.load_model(out / "model.keras").input_shape == (None, 16, 16, 3)
    student = [*common, "--preset", "vit_micro", "--image-size", "16"]
    assert train.main([*student, "--teacher", str(out / "model.keras"), "--output", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    assert teacher.main([*common, "--image-size", "12", "--output", str(tmp_path / "bad")]) == 2
    assert "--arch resnet9 at --image-size 12: image_size must divide by 8" in capsys.readouterr().err
    # The CIFAR-10 loader gives 32x32 only: another size is refused before any image is read.
    cifar = [*common, "--dataset", "cifar10", "--image-size", "16", "--output", str(tmp_path / "cifar")]
    assert teacher.main(cifar) == 2
    assert "--image-size 16: CIFAR-10 loads at 32x32 only" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "status"), [(["--help"], 0), (["--time-budget", "0"], 2), (["--arch", "vgg"], 2)]
)
def test_help_and_bad_flags_answer_without_loading_keras(args, status):
    code, out, heavy = heavy_imports_of("keras_vit.teacher", *args)
    assert (code, heavy) == (status, [])
    assert status or ("--arch {airbench,resnet9}" in out and "--time-budget" in out)


def test_every_teacher_has_its_sgd_settings():
    from keras_vit.models.teachers import TEACHER_ARCHS
    from keras_vit.training.recipes import TEACHER_RECIPES

    assert sorted(TEACHER_RECIPES) == sorted(TEACHER_ARCHS)


@pytest.mark.parametrize(
    ("teacher_flags", "student_flags", "warned"),
    [
        ({"validation_split": 0.0}, [], True),  # the teacher trained on every training image
        ({"validation_split": None, "seed": 1}, [], True),  # another seed holds out other images
        ({"validation_split": 0.2}, ["--validation-split", "0.2"], False),
        ({"validation_split": None, "limit": 100}, ["--limit", "100"], False),
        ({"validation_split": 0.0, "data_dir": "elsewhere"}, [], False),  # other data: not judged
        # The default share, recorded by one run and implied in the other, is the same selection.
        ({"validation_split": DEFAULT_VALIDATION_SPLIT}, [], False),
        ({"validation_split": None}, ["--validation-split", str(DEFAULT_VALIDATION_SPLIT)], False),
    ],
)
def test_train_warns_of_a_teacher_that_trained_on_its_validation_images(
    tmp_path, capsys, teacher_flags, student_flags, warned
):
    """A --teacher whose metrics.json records another held-out selection than the student's is named in a warning,
    with the flags that differ; one of the same selection, or of other data, is not."""
    from keras_vit.train import parse_args
    from keras_vit.training import train_command

    data = str(tmp_path / "data")
    recorded = {"data_dir": data, "limit": None, "seed": 0, **teacher_flags}
    if recorded["data_dir"] == "elsewhere":
        recorded["data_dir"] = str(tmp_path / "elsewhere")
    (tmp_path / "metrics.json").write_text(json.dumps({"args": recorded}))
    args = parse_args(["--data-dir", data, "--teacher", str(tmp_path / "model.keras"), *student_flags])
    train_command._warn_of_teachers_that_saw_validation(args)
    out = capsys.readouterr().out
    assert ("warning: the teacher" in out) is warned
    assert ("it saw some of this run's validation images" in out) is warned


@pytest.mark.parametrize(("own_val", "calls"), [(False, 1), (True, 0)])
def test_train_looks_for_teachers_that_saw_validation_only_when_it_holds_images_out(
    tmp_path, monkeypatch, own_val, calls
):
    """keras_vit.train judges its teachers when it holds its validation images out of the training images (the
    default), not when the data tree ships its own val/ folder: no teacher trained on those."""
    from conftest import write_colour_tree

    from keras_vit.training import train_command

    counts = (("train", 10), ("test", 1), *((("val", 1),) if own_val else ()))
    tree = write_colour_tree(tmp_path / "data", ["cat", "dog"], size=16, counts=counts)
    judged = []
    monkeypatch.setattr(train_command, "_warn_of_teachers_that_saw_validation", judged.append)
    monkeypatch.setattr(train_command, "run", lambda *args, **kwargs: 0)
    flags = ["--preset", "vit_micro", "--data-dir", str(tree), "--output", str(tmp_path / "out")]
    assert train.main(flags) == 0
    assert [args.data_dir for args in judged] == [str(tree)] * calls


def _tiny_teacher(tiny_tree, out):
    """The flags of a teacher of width 4 trained for one epoch on `tiny_tree` into `out`."""
    return [
        "--data-dir",
        str(tiny_tree),
        "--width",
        "4",
        "--epochs",
        "1",
        "--output",
        str(out),
        "--verbose",
        "0",
    ]


def test_an_interrupted_teacher_leaves_no_working_files(tiny_tree, tmp_path, monkeypatch, capsys):
    """Ctrl-C in training left `.history.partial.csv` behind: the teacher keeps nothing of an interrupted run."""
    from keras_vit.training import pipeline

    def interrupted_fit(trainer, batches, *, history_path, **kwargs):
        history_path.write_text("epoch,loss\n0,1.0\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "fit", interrupted_fit)
    out = tmp_path / "teacher"
    flags = _tiny_teacher(tiny_tree, out)
    assert teacher.main(flags) == 130
    assert "interrupted: the teacher was not saved" in capsys.readouterr().err
    assert not out.exists()  # nothing of the run, the folder it made and its lock included


def test_a_finished_teacher_is_not_trained_over_without_fresh(tiny_tree, tmp_path, monkeypatch, capsys):
    """A rerun into a finished teacher's folder is refused in one line before the data loads, the teacher
    untouched; --fresh trains and replaces it."""
    out = tmp_path / "teacher"
    flags = _tiny_teacher(tiny_tree, out)
    assert teacher.main(flags) == 0
    assert_a_finished_run_is_refused(teacher.main, flags, out, capsys, monkeypatch)
    assert teacher.main([*flags, "--seed", "1", "--fresh"]) == 0
    assert json.loads((out / "metrics.json").read_text())["args"]["seed"] == 1
