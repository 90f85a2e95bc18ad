"""python -m keras_vit.train end to end: outputs, honest metrics, resume, bad input."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import heavy_imports_of, run_interrupted

from keras_vit import load_model, train
from keras_vit.data import load_cifar10

ROOT = Path(__file__).resolve().parents[1]


ARGS = ["--preset", "vit_micro", "--epochs", "2", "--batch-size", "32", "--verbose", "0"]


def test_train_writes_everything_and_reports_true_accuracy(tiny_tree, tmp_path):
    out = tmp_path / "run"
    assert train.main(ARGS + ["--data-dir", str(tiny_tree), "--output", str(out)]) == 0
    for name in ("model.keras", "labels.txt", "history.csv", "curves.png", "metrics.json"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "checkpoint").exists()  # removed once training finished
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["parameters"] > 0 and metrics["wall_clock_seconds"] > 0
    assert metrics["resumes"] == []  # trained in one go
    # What a rerun elsewhere needs: the versions (the package's own too) and the machine.
    import keras_vit

    assert metrics["machine"]["keras_vit"] == keras_vit.__version__ and metrics["machine"]["keras"]
    splits = load_cifar10(tiny_tree)
    model = load_model(out / "model.keras")
    accuracy = np.mean(
        np.argmax(model.predict(splits.x_test.astype("float32"), verbose=0), -1) == splits.y_test
    )
    assert metrics["test_accuracy"] == pytest.approx(accuracy)
    # The test-time augmentations' accuracies are the saved model's too.
    from conftest import reference_tta_views

    views = [
        model.predict(v.astype("float32"), verbose=0)
        for v in reference_tta_views(splits.x_test, "flip-shift")
    ]
    for key, count in (("test_accuracy_flip_tta", 2), ("test_accuracy_flip_shift_tta", 10)):
        assert metrics[key] == pytest.approx(
            np.mean(np.mean(views[:count], 0).argmax(-1) == splits.y_test)
        ), key
    assert (out / "labels.txt").read_text().split()[:2] == ["airplane", "automobile"]


def test_rerun_resumes_after_an_interruption(tiny_tree, tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = ARGS[:] + ["--data-dir", str(tiny_tree), "--output", str(out)]
    args[args.index("--epochs") + 1] = "3"
    run_interrupted(train.main, args)
    assert (out / "checkpoint").exists()
    assert train.main(args) == 0
    history = (out / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1", "2"]  # epoch 0 not redone
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3


def test_time_budget_sets_the_schedule_and_stops(tiny_tree, tmp_path):
    out = tmp_path / "budget"
    args = ARGS + [
        "--data-dir",
        str(tiny_tree),
        "--output",
        str(out),
        "--time-budget",
        "1",
        "--warmup-epochs",
        "1",
    ]
    assert train.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # The first epoch (compilation included) takes more than the 1 s budget: it is the only one.
    assert metrics["epochs"] == 1 and metrics["time_budget_seconds"] == 1.0
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert "learning_rate" in header and "planned_epochs" in header
    assert train.main(ARGS + ["--data-dir", str(tiny_tree), "--output", str(out), "--time-budget", "0"]) == 2


def test_gpu_recipe_flags_and_time_limit(tiny_tree, tmp_path):
    # The flags of benchmarks/gpu_cifar10.sh, on a tiny run: the time limit
    # stops it after the first epoch, and the model is still saved and scored.
    out = tmp_path / "run"
    args = ARGS + [
        "--data-dir",
        str(tiny_tree),
        "--output",
        str(out),
        "--augment",
        "lee2021",
        "--num-heads",
        "4",
        "--registers",
        "1",
        "--steps-per-execution",
        "2",
        "--ema-momentum",
        "0.9",
        "--checkpoint-every",
        "2",
        "--time-limit",
        "0.001",
        "--shifted-patches",
        "--locality-attention",
        "--patch-dropout",
        "0.5",
        "--model-arg",
        "mlp_dim=48",
        "--model-arg",
        "position_embedding=sincos",
    ]
    args[args.index("--epochs") + 1] = "4"
    assert train.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["epochs_requested"] == 4
    assert metrics["stopped_by_time_limit"] and not metrics["diverged"]
    model = load_model(out / "model.keras")
    assert model.get_layer("block_0").num_heads == 4 and model.get_layer("patch_encoder").num_registers == 1
    assert model.get_layer("patches").shifted and model.get_layer("block_0").mlp_dim == 48
    assert model.get_layer("block_0").locality_attention and model.get_layer("patch_dropout").rate == 0.5
    assert model.get_layer("patch_encoder").position_embedding_type == "sincos"
    assert metrics["args"]["model_args"] == [["mlp_dim", 48], ["position_embedding", "sincos"]]
    # Scored after the stop: the saved model's (EMA weights, patch dropout off in inference) test accuracy.
    test = load_cifar10(tiny_tree, splits=("test",))
    x = test.x_test.astype("float32")
    logits = model.predict(x, verbose=0)
    assert metrics["test_accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == test.y_test))
    flipped = (logits + model.predict(x[:, :, ::-1], verbose=0)).argmax(-1)
    assert metrics["test_accuracy_flip_tta"] == pytest.approx(np.mean(flipped == test.y_test))


def test_unmasked_finish_flag(tiny_tree, tmp_path, capsys):
    out = tmp_path / "run"
    args = ARGS + ["--data-dir", str(tiny_tree), "--output", str(out), "--unmasked-finish", "0.5"]
    assert train.main(args) == 2  # no PatchDropout to turn off
    assert "needs --patch-dropout" in capsys.readouterr().err
    # Refused before the data loads (it was refused after): no data folder is needed to say so.
    assert train.main([*args, "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "needs --patch-dropout" in capsys.readouterr().err
    assert train.main(args + ["--patch-dropout", "0.5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["unmasked_from_epoch"] == 2
    lines = (out / "history.csv").read_text().splitlines()
    column = lines[0].split(",").index("unmasked")
    assert [float(line.split(",")[column]) for line in lines[1:]] == [0.0, 1.0]


def test_ema_weights_are_saved_even_when_the_time_limit_stops_early(tiny_tree, tmp_path):
    # With momentum ~1 the average barely leaves the initial weights, while
    # training moves them: the saved model must be the average.
    import keras

    from keras_vit import build_vit

    out = tmp_path / "run"
    args = ARGS + [
        "--data-dir",
        str(tiny_tree),
        "--output",
        str(out),
        "--ema-momentum",
        "0.9999999",
        "--learning-rate",
        "1e-2",
        "--time-limit",
        "0.001",
    ]
    args[args.index("--epochs") + 1] = "3"
    assert train.main(args) == 0
    assert json.loads((out / "metrics.json").read_text())["stopped_by_time_limit"]
    keras.utils.set_random_seed(0)  # what train.main does before building
    initial = build_vit("vit_micro", num_classes=10, image_size=(32, 32))
    saved = load_model(out / "model.keras")
    drift = max(float(np.max(np.abs(a - b))) for a, b in zip(initial.get_weights(), saved.get_weights()))
    assert drift < 1e-4, drift


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch (the dev extra's)")
def test_steps_per_execution_on_pytorch_is_refused_before_the_data_loads(tmp_path):
    """Keras runs one step per call on PyTorch: --steps-per-execution 2 was a traceback from inside `fit`."""
    from conftest import run_python

    code = "import sys; from keras_vit import train; sys.exit(train.main(sys.argv[1:]))"
    args = [
        *ARGS,
        "--steps-per-execution",
        "2",
        "--data-dir",
        tmp_path / "nowhere",
        "--output",
        tmp_path / "run",
    ]
    result = run_python(code, *args, backend="torch")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --steps-per-execution must be 1 on the PyTorch backend (Keras runs one step per call there)"
    )


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch (the dev extra's)")
def test_teacher_and_gpu_recipe_train_under_pytorch(tiny_tree, tmp_path):
    """The README says any Keras backend: the GPU recipe's whole path (RandAugment, MixUp/CutMix, bf16, a distilled
    teacher with its flip, EMA, PatchDropout with an unmasked finish, the time budget) on PyTorch, and the file it
    saves computes the same under TensorFlow."""
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT)}
    common = ["--data-dir", str(tiny_tree), "--batch-size", "32", "--verbose", "0"]
    teacher = tmp_path / "teacher"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_vit.teacher",
            *common,
            "--width",
            "4",
            "--epochs",
            "1",
            "--augment",
            "cutout",
            "--output",
            str(teacher),
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    out = tmp_path / "vit"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_vit.train",
            *common,
            "--recipe",
            "cifar10_gpu",
            "--preset",
            "vit_micro",
            "--num-heads",
            "4",
            "--epochs",
            "2",
            "--max-epochs",
            "2",
            "--time-budget",
            "600",
            "--validation-freq",
            "1",
            "--teacher",
            str(teacher / "model.keras"),
            "--teacher-flip",
            "--ema-momentum",
            "0.9",
            "--patch-dropout",
            "0.5",
            "--unmasked-finish",
            "0.5",
            "--output",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backend"] == "torch" and metrics["args"]["mixed_precision"] == "bfloat16"
    assert (
        metrics["args"]["augment"] == "lee2021"
        and metrics["epochs"] == 2
        and metrics["unmasked_from_epoch"] == 2
    )
    assert json.loads((teacher / "metrics.json").read_text())["backend"] == "torch"
    splits = load_cifar10(tiny_tree)
    model = load_model(out / "model.keras")  # here: TensorFlow
    accuracy = np.mean(
        np.argmax(model.predict(splits.x_test.astype("float32"), verbose=0), -1) == splits.y_test
    )
    # The same float32 model on another backend: at most one borderline image apart.
    assert metrics["test_accuracy"] == pytest.approx(accuracy, abs=1.01 / len(splits.y_test))


def test_bad_input_exits_non_zero(tmp_path, capsys, tiny_tree):
    assert train.main(["--epochs", "0"]) == 2
    for bad in (["--model-arg", "nope=1"], ["--model-arg", "num_classes=3"], ["--model-arg", "depth"]):
        with pytest.raises(SystemExit):
            train.main(bad)
    assert train.main(["--model-arg", "num_heads=2", "--num-heads", "2"]) == 2
    for rate in ("1", "-0.1", "half"):  # --patch-dropout takes a share in [0, 1)
        with pytest.raises(SystemExit) as stop:
            train.main(["--patch-dropout", rate])
        assert stop.value.code == 2
    assert "num_heads given both" in capsys.readouterr().err
    run = ARGS + ["--data-dir", str(tiny_tree), "--output", str(tmp_path / "bad")]
    assert train.main(run + ["--model-arg", "pooling=avg"]) == 2
    assert "cannot build the model" in capsys.readouterr().err
    assert train.main(["--ema-momentum", "1.5"]) == 2
    assert train.main(["--time-limit", "-1"]) == 2
    with pytest.raises(SystemExit):
        train.main(["--num-heads", "0"])
    assert train.main(["--data-dir", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o" / "p")]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # the folders it made, lock file included, removed again
    (tmp_path / "kept").mkdir()
    assert train.main(["--data-dir", str(tmp_path / "nowhere"), "--output", str(tmp_path / "kept")]) == 2
    assert (tmp_path / "kept").is_dir()  # the user's folder stays
    with pytest.raises(SystemExit):
        train.main(["--preset", "vit_gigantic"])
    assert train.main(["--mix-prob", "1.5", "--augment", "lee2021"]) == 2
    assert train.main(["--mix-prob", "1", "--augment", "basic"]) == 2  # nothing to mix
    assert "no MixUp/CutMix" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-epochs", "5"], "--max-epochs caps a --time-budget run"),
        (["--loader-workers", "4"], "--loader-workers is for --stream"),
        (["--coordinator", "127.0.0.1:1234", "--num-processes", "1"], "--coordinator joins a job"),
    ],
)
def test_a_flag_that_would_do_nothing_is_refused(flags, message):
    """These flags were ignored without a word; each needs another flag to mean anything."""
    assert train.check_args(train.parse_args(flags)).startswith(message)
    assert (
        train.check_args(
            train.parse_args([*flags, "--time-budget", "60", "--stream", "--num-processes", "2"])
        )
        is None
    )


@pytest.mark.parametrize("count", [[], ["--num-processes", "4"]], ids=["count-from-the-environment", "four"])
def test_a_coordinator_of_several_processes_is_not_refused(count):
    """--coordinator is refused with --num-processes 1 only: without the flag the count comes from
    $KERAS_DISTRIBUTION_NUM_PROCESSES, and any count above one is a job."""
    assert (
        train.check_args(train.parse_args(["--coordinator", "h:1", "--distribute", "data", *count])) is None
    )


@pytest.mark.parametrize(
    ("args", "status"),
    [(["--help"], 0), (["--epochs", "0"], 2), (["--pooling", "nope"], 2), (["--mesh", "2x"], 2)],
    ids=["help", "check_args", "choice", "mesh"],
)
def test_help_and_bad_flags_answer_without_loading_keras(args, status):
    """--help and a bad flag come before Keras and its backend (seconds to import) are loaded."""
    code, out, heavy = heavy_imports_of("keras_vit.train", *args)
    assert (code, heavy) == (status, [])
    for flag in (
        "--preset",
        "--data-dir",
        "--epochs",
        "--optimizer",
        "--mixed-precision",
        "--model-arg",
        "--output",
    ):
        assert flag in out or status


def test_a_model_arg_is_checked_against_the_vit_arguments(capsys):
    with pytest.raises(SystemExit) as stop:
        train.main(["--model-arg", "depht=3"])
    assert stop.value.code == 2
    assert "unknown build_vit argument 'depht'" in capsys.readouterr().err


def test_fit_validates_on_a_held_out_split_and_the_test_set_is_scored_once_after(
    tiny_tree, tmp_path, monkeypatch
):
    from keras_vit.training import pipeline

    calls = []
    fit, score = pipeline.fit, pipeline.score

    def spy_fit(trainer, batches, **kwargs):
        inputs, validation_labels = kwargs["validation_data"]
        np.testing.assert_array_equal(inputs["labels"], validation_labels)
        calls.append(("fit", inputs["images"], batches.images, validation_labels))
        return fit(trainer, batches, **kwargs)

    def spy_score(model, images, labels, tta, batch_size):
        calls.append(("score", images, None, labels))
        return score(model, images, labels, tta, batch_size)

    monkeypatch.setattr(pipeline, "fit", spy_fit)
    monkeypatch.setattr(pipeline, "score", spy_score)
    out = tmp_path / "run"
    assert (
        train.main(ARGS + ["--validation-split", "0.25", "--data-dir", str(tiny_tree), "--output", str(out)])
        == 0
    )
    assert [name for name, *_ in calls] == ["fit", "score"]  # the test set once, after training
    _, validation, trained_on, validation_labels = calls[0]
    test_images = load_cifar10(tiny_tree).x_test
    assert len(validation) == 30 and len(trained_on) == 90  # a quarter of the 120 training images
    as_rows = lambda x: {row.tobytes() for row in x}  # noqa: E731
    assert not as_rows(validation) & as_rows(trained_on)  # held out of the training images
    assert not as_rows(validation) & as_rows(test_images)  # and not the test set
    assert calls[1][1].shape == test_images.shape
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation_images"] == 30 and metrics["train_images"] == 90
    assert metrics["test_images"] == len(test_images)
    # The reported validation accuracy is the last validation's: at the last of the 2 epochs (every epoch by
    # default), so with the final weights, those saved: the saved model's accuracy on the validation images.
    assert metrics["epochs"] == 2 and metrics["validation_accuracy"] is not None
    model = load_model(out / "model.keras")
    predicted = np.argmax(model.predict(np.asarray(validation, "float32"), verbose=0), -1)
    assert metrics["validation_accuracy"] == pytest.approx(np.mean(predicted == validation_labels))
    header, *rows = [line.split(",") for line in (out / "history.csv").read_text().splitlines()]
    assert len(rows) == 2 and float(rows[-1][header.index("val_accuracy")]) == pytest.approx(
        metrics["validation_accuracy"]
    )


def test_no_validation_split_trains_on_every_image_without_validation(tiny_tree, tmp_path):
    out = tmp_path / "run"
    assert (
        train.main(ARGS + ["--validation-split", "0", "--data-dir", str(tiny_tree), "--output", str(out)])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_images"] == 120 and metrics["validation_images"] == 0
    assert metrics["validation_accuracy"] is None
    header, *rows = [line.split(",") for line in (out / "history.csv").read_text().splitlines()]
    # Keras' CSVLogger always writes val_* columns: without a validation split they hold nothing.
    assert {row[i] for row in rows for i, name in enumerate(header) if name.startswith("val_")} == {"NA"}


def _no_data_load(monkeypatch):
    """Makes loading the data fail the test: what is refused must be refused before it."""
    from keras_vit.training import pipeline

    def load_splits(*args, **kwargs):
        raise AssertionError("the data were loaded")

    monkeypatch.setattr(pipeline, "load_splits", load_splits)


def test_the_model_is_checked_at_the_image_size_before_the_data_loads(
    tiny_tree, tmp_path, capsys, monkeypatch
):
    # --image-size 48 with 6x6 patches trains (the early check built the preset at its own 32x32 and refused it).
    run = [*ARGS, "--epochs", "1", "--data-dir", str(tiny_tree), "--validation-split", "0"]
    out = tmp_path / "patch6"
    assert train.main([*run, "--output", str(out), "--image-size", "48", "--model-arg", "patch_size=6"]) == 0
    assert load_model(out / "model.keras").input_shape == (None, 48, 48, 3)
    # 50x50 does not divide into vit_micro's 8x8 patches: refused before any image is decoded.
    _no_data_load(monkeypatch)
    assert train.main([*run, "--output", str(tmp_path / "bad"), "--image-size", "50"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: cannot build the model: image_size 50x50 is not divisible by patch_size=8."
    )


def test_image_size_is_refused_for_the_cifar10_loader_and_honoured_for_an_image_folder(
    tiny_tree, tmp_path, capsys, monkeypatch
):
    # Under --dataset auto, an image-folder tree of CIFAR-10's classes loads at --image-size (it was 32x32).
    out = tmp_path / "auto"
    run = [*ARGS, "--epochs", "1", "--validation-split", "0", "--image-size", "48"]
    assert train.main([*run, "--data-dir", str(tiny_tree), "--output", str(out)]) == 0
    assert load_model(out / "model.keras").input_shape == (None, 48, 48, 3)
    # The CIFAR-10 loader gives 32x32 only: --dataset cifar10, or CIFAR-10's batch files, refuse another size.
    batches = tmp_path / "cifar-10-batches-py"  # the refusal comes from the folder's layout, before any read
    batches.mkdir()
    (batches / "data_batch_1").write_bytes(b"")
    _no_data_load(monkeypatch)
    for data in (["--data-dir", str(tiny_tree), "--dataset", "cifar10"], ["--data-dir", str(batches)]):
        assert train.main([*run, *data, "--output", str(tmp_path / "bad")]) == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("error: --image-size 48: CIFAR-10 loads at 32x32 only"), error


def test_a_val_folder_is_the_validation_split_unless_validation_split_is_given(tmp_path, capsys):
    from conftest import write_colour_tree

    tree = write_colour_tree(
        tmp_path / "data", ("a", "b", "c"), counts=(("train", 12), ("val", 5), ("test", 4))
    )
    run = [*ARGS, "--epochs", "1", "--data-dir", str(tree)]

    def validation(out):
        metrics = json.loads((out / "metrics.json").read_text())
        header, *rows = [line.split(",") for line in (out / "history.csv").read_text().splitlines()]
        return metrics["validation_images"], metrics["train_images"], rows[-1][header.index("val_accuracy")]

    # Not given: the folder's own val/ split.
    assert train.main([*run, "--output", str(tmp_path / "default")]) == 0
    images, trained, accuracy = validation(tmp_path / "default")
    assert (images, trained) == (15, 36) and accuracy != "NA"
    # 0: no validation at all, as --help says (val/ was used all the same).
    assert train.main([*run, "--validation-split", "0", "--output", str(tmp_path / "none")]) == 0
    assert validation(tmp_path / "none") == (0, 36, "NA")
    # Another share beside a val/ folder: refused, saying what to do.
    assert train.main([*run, "--validation-split", "0.2", "--output", str(tmp_path / "both")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        "--validation-split 0.2 would hold out training images" in error and "val/ folder, 15 images" in error
    )
    assert not (tmp_path / "both" / "model.keras").exists()
