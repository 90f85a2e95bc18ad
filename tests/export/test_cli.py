"""Tests for export/cli.py, through the commands: --help, bad input (one clear line, nothing written),
failed proofs, and ViT variants through the one-format commands."""

import os
import sys
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from conftest import heavy_imports_of
from export_helpers import Background, error_lines, explain, no_data_env, run

import keras_vit
from export import cli, runtime
from export import output as output_module

pytest_plugins = ["export_fixtures"]


def test_help_of_every_command():
    """Each command's own --help: only those that write int8 speak of calibration, and each says what it does
    without real images (--data-dir)."""
    helps = {}
    for module in (
        "export",
        "export.savedmodel",
        "export.tflite",
        "export.onnx",
        "export.runtime",
        "export.benchmark",
    ):
        proc = run([module, "--help"])
        assert proc.returncode == 0 and "usage:" in proc.stdout, explain(proc)
        helps[module] = " ".join(proc.stdout.split())  # argparse's line breaks undone
    assert "--opset" in helps["export.onnx"]
    for module in ("export.savedmodel", "export.onnx"):
        assert (
            "calibrat" not in helps[module]
            and "local places; else a random batch, with a warning" in helps[module]
        )
    assert "real images for the proof and int8 calibration" in helps["export.tflite"]
    assert (
        "else a random batch, with a warning (not for int8, which stops without real images)"
        in helps["export.tflite"]
    )
    assert "local places; without real images it stops, as int8 needs them" in helps["export"]


@pytest.mark.parametrize(
    ("make_parser_args", "says_int8", "without_images"),
    [
        ({}, False, "else a random batch"),  # export.savedmodel, export.onnx
        ({"int8": "optional"}, True, "not for int8"),  # export.tflite
        ({"int8": "always"}, True, "it stops"),  # python -m export
    ],
)
def test_the_help_says_what_the_command_does_without_images(make_parser_args, says_int8, without_images):
    """Only a command that writes int8 speaks of calibration, and each says what it does without real images."""
    parser = cli.make_parser("prog", "", "out", **make_parser_args)
    data_dir, eval_images = (
        parser._option_string_actions[flag].help for flag in ("--data-dir", "--eval-images")
    )
    assert ("int8" in data_dir) is says_int8 and ("int8" in eval_images) is says_int8
    assert without_images in data_dir


def test_benchmark_help_gives_each_default_once():
    text = " ".join(run(["export.benchmark", "--help"]).stdout.split())
    assert "(default: None)" not in text and text.count("(default: 100)") == 1


@pytest.mark.parametrize("module", ["export", "export.tflite", "export.onnx", "export.runtime"])
def test_help_and_bad_flags_answer_without_loading_tensorflow(module):
    """--help and a usage error come before TensorFlow and Keras (seconds to import) are loaded."""
    assert heavy_imports_of(module, "--help")[::2] == (0, [])
    assert heavy_imports_of(module, "--no-such-flag")[::2] == (2, [])


def test_failed_proof_keeps_the_previous_file(trained, data_tree, tmp_path):
    """A one-format export that fails its proof writes nothing and keeps the previous file and its card.

    Issue 37 changed this contract: the previous file used to be deleted (so that it could not pass for this
    export); the error line now says that it is untouched.
    """
    root, _ = data_tree
    out = tmp_path / "model.onnx"
    out.write_bytes(b"an older export")
    (tmp_path / "model.onnx.json").write_text("{}")
    proc = run(
        ["export.onnx", trained["path"], out, "--data-dir", root, "--atol", "1e-12"],
        env={"KERAS_VIT_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 1, explain(proc)
    assert "FAIL onnx float32" in proc.stdout and "max|dlogit|" in proc.stdout  # the numbers
    lines = error_lines(proc)
    assert len(lines) == 1 and "proof failed" in lines[0] and f"{out} is untouched" in lines[0], explain(proc)
    assert out.read_bytes() == b"an older export" and (tmp_path / "model.onnx.json").read_text() == "{}"
    # No temporary files, no labels file (nothing was published); the lock file stays, empty.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".model.lock",
        "cache",
        "model.onnx",
        "model.onnx.json",
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["export.onnx", "m.keras", "out.tflite"],
        ["export.tflite", "m.keras", "out"],
        ["export.tflite", "m.keras", "out.onnx", "--quantize", "int8"],
    ],
    ids=["onnx_to_tflite", "tflite_without_extension", "int8_to_onnx"],
)
def test_a_wrong_output_extension_is_a_usage_error_before_any_work(args, tmp_path):
    """Checked with the flags: exit 2, one line, before TensorFlow loads (the model does not even exist)."""
    module, model, out, *flags = args
    args = [module, tmp_path / model, tmp_path / out, *flags]
    proc = run(args, cwd=tmp_path)
    assert proc.returncode == 2, explain(proc)
    lines = error_lines(proc)
    extension = ".onnx" if module == "export.onnx" else ".tflite"
    assert len(lines) == 1 and f"{tmp_path / out} must end in {extension}" in lines[0], explain(proc)
    assert heavy_imports_of(*args)[::2] == (2, [])
    assert os.listdir(tmp_path) == []


def sidecars(folder):
    """The exported file `model.onnx`, its labels and its card, by name: their bytes (None: missing)."""
    names = ("model.onnx", "model.labels.txt", "model.onnx.json")
    return {name: (folder / name).read_bytes() if (folder / name).is_file() else None for name in names}


def hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".model.lock")


def test_publishing_moves_the_labels_and_card_in_only_after_the_file(tmp_path, monkeypatch):
    """Staged beside the file, they replace the old ones right after it, never before (issue: a kill between
    left the old model next to the new labels)."""
    old = {"model.onnx": b"old model", "model.labels.txt": b"old\n", "model.onnx.json": b"{}"}
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)
    renamed, replace = [], os.replace
    monkeypatch.setattr(
        os, "replace", lambda src, dst: (renamed.append(os.path.basename(dst)), replace(src, dst))
    )
    job = SimpleNamespace(output=str(tmp_path / "model.onnx"), published=False)
    with cli.publishing(job) as publication:
        publication.path.write_bytes(b"new model")
        publication.start()
        publication.stage(tmp_path / "model.labels.txt").write_bytes(b"new\n")
        publication.stage(tmp_path / "model.onnx.json").write_bytes(b"{}\n")
        assert sidecars(tmp_path) == old and len(hidden(tmp_path)) == 3  # all three staged, none in place
    assert job.published and renamed[0] == "model.onnx"
    assert sorted(renamed) == sorted(old)
    assert sidecars(tmp_path) == {
        "model.onnx": b"new model",
        "model.labels.txt": b"new\n",
        "model.onnx.json": b"{}\n",
    }
    assert hidden(tmp_path) == []

    # A block that fails publishes nothing, staged files included.
    with pytest.raises(RuntimeError):
        with cli.publishing(
            SimpleNamespace(output=str(tmp_path / "model.onnx"), published=False)
        ) as publication:
            publication.stage(tmp_path / "model.labels.txt").write_bytes(b"newer\n")
            raise RuntimeError("proof failed")
    assert (tmp_path / "model.labels.txt").read_bytes() == b"new\n" and hidden(tmp_path) == []


def test_a_card_that_cannot_be_moved_in_says_the_file_was_written(trained, data_tree, tmp_path):
    """The file is in place when its card's rename fails: the error line says so, not "nothing was changed"."""
    root, _ = data_tree
    out = tmp_path / "model.onnx"
    (tmp_path / "model.onnx.json").mkdir()  # a folder where the card goes: renaming a file over it fails
    (tmp_path / "model.onnx.json" / "keep").write_text("x")
    proc = run(
        ["export.onnx", trained["path"], out, "--data-dir", root, "--eval-images", "20"],
        env={"KERAS_VIT_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 2, explain(proc)
    lines = error_lines(proc)
    assert len(lines) == 1 and f"{out} itself was written" in lines[0], explain(proc)
    assert f"{tmp_path / 'model.onnx.json'}: " in lines[0] and "was changed" not in lines[0], explain(proc)
    assert out.is_file() and hidden(tmp_path) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds processes through /proc")
def test_killed_as_the_file_is_renamed_in_keeps_the_previous_labels_and_card(trained, data_tree, tmp_path):
    """SIGKILL at the moment the proven file is about to replace the old one: the old file, labels and card
    are all still there, the new labels and card only staged, and removed as leftovers by the next export."""
    root, _ = data_tree
    folder = tmp_path / "out"
    folder.mkdir()
    old = {"model.onnx": b"an older export", "model.labels.txt": b"old\n", "model.onnx.json": b"{}"}
    for name, data in old.items():
        (folder / name).write_bytes(data)
    pause = "before-replace:model.onnx"
    args = ["export.onnx", trained["path"], folder / "model.onnx", "--data-dir", root, "--eval-images", "20"]
    env = {"KERAS_VIT_CACHE_DIR": str(tmp_path / "cache")}
    killed = Background(args, pause=pause, log=tmp_path / "log.txt", env=env)
    try:
        killed.wait_for(f"paused at {pause}")
        killed.process.kill()
        killed.finish()
    finally:
        killed.kill_leftovers()
    assert sidecars(folder) == old, killed.output()
    staged = hidden(folder)
    assert [name.split(".tmp-")[0] for name in staged] == [".model.labels", ".model.onnx", ".model"], staged
    assert sorted(p.name for p in output_module.leftovers(folder / "model.onnx")) == staged


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "garbage",
        "corrupt",
        "unknown_quantize",
        "unwritable",
        "int8_no_data",
        "all_formats_no_data",
        "unknown_input_shape",
        "bad_opset",
        "not_an_export_dir",
        "output_dir_is_a_file",
        "output_file_is_a_dir",
    ],
)
def test_bad_input(case, trained, odd_models, tmp_path):
    model = trained["path"]
    env = no_data_env(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = tmp_path / "out.tflite"
    args, message, status = {
        "missing": (["export.tflite", tmp_path / "nope.keras", out], "does not exist", 2),
        "garbage": (["export.tflite", odd_models / "garbage.keras", out], "not a .keras file", 2),
        "corrupt": (["export.tflite", odd_models / "corrupt.keras", out], "is not a valid .keras file", 2),
        "unknown_quantize": (
            ["export.tflite", model, out, "--quantize", "int4"],
            "invalid choice: 'int4'",
            2,
        ),
        "unwritable": (["export.tflite", model, blocker / "out.tflite"], "cannot create output directory", 2),
        "int8_no_data": (["export.tflite", model, out, "--quantize", "int8"], "calibration images", 2),
        # Every format includes int8: the error says how to export without images.
        "all_formats_no_data": (["export", model, tmp_path / "o"], "export one format at a time", 2),
        "unknown_input_shape": (
            ["export.onnx", odd_models / "any_size.keras", tmp_path / "o.onnx"],
            "unknown height",
            2,
        ),
        "bad_opset": (["export.onnx", model, tmp_path / "o.onnx", "--opset", "21"], "--opset", 2),
        "not_an_export_dir": (["export", model, tmp_path], "is not a previous export", 2),
        "output_dir_is_a_file": (["export", model, blocker], "exists and is not a directory", 2),
        "output_file_is_a_dir": (["export.tflite", model, tmp_path], "is a directory", 2),
    }[case]
    proc = run(args, env=env, cwd=tmp_path)
    assert proc.returncode == status, explain(proc)
    lines = error_lines(proc)
    assert len(lines) == 1 and message in lines[0], explain(proc)
    assert "Traceback" not in proc.stderr, explain(proc)
    assert not out.exists() and not (tmp_path / "o.onnx").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "variant",
    [
        dict(num_registers=1, patch_dropout=0.5),
        dict(shifted_patches=True, locality_attention=True),
        dict(pooling="seqpool"),
        dict(num_registers=1, pooling="gap"),
        dict(num_registers=1, pooling="seqpool"),
    ],
    ids=["registers_patch_dropout", "shifted_locality", "seqpool", "registers_gap", "registers_seqpool"],
)
def test_model_variants_export(variant, data_tree, tmp_path, monkeypatch, capsys):
    """ViTs with a register token, with shifted patches and locality attention, or
    with the seqpool head, convert to int8 TFLite and ONNX, proven (the commands run in
    this process: the same code as `python -m`, without two more TensorFlow start-ups).

    Registers with a mean-pooled head (gap, seqpool: no class token) once made a file that
    XNNPACK, LiteRT's default delegate, refused to run; the proof runs it with that delegate."""
    from export import common, onnx, tflite

    root, arrays = data_tree
    x, y = arrays["train"]
    keras.utils.set_random_seed(1)
    model = keras_vit.build_vit("vit_micro", **variant)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.astype("float32"), y, epochs=15, batch_size=32, verbose=0)
    x_test = arrays["test"][0].astype("float32")
    logits = np.asarray(model.predict(x_test, verbose=0))
    assert np.abs(logits).max() > 1.0  # a trained model, not a vacuous comparison
    model.save(tmp_path / "variant.keras")
    monkeypatch.setenv("KERAS_VIT_CACHE_DIR", str(tmp_path / "cache"))
    for command, out, extra, tolerance in (
        (tflite.main, "vit_int8.tflite", ["--quantize", "int8"], None),
        (onnx.main, "vit.onnx", [], 1e-4),
    ):
        argv = [str(tmp_path / "variant.keras"), str(tmp_path / out), "--data-dir", str(root), *extra]
        status = common.run_cli(command, argv)
        printed = capsys.readouterr()
        assert status == 0, printed.out[-2000:] + printed.err[-3000:]
        assert "PASS" in printed.out
        predicted = runtime.load(tmp_path / out).predict(x_test)
        if tolerance is None:  # int8: the same classes
            assert (predicted.argmax(1) == logits.argmax(1)).mean() >= 0.95
        else:
            np.testing.assert_allclose(predicted, logits, atol=tolerance, rtol=0)


def test_a_model_with_non_finite_weights_is_not_exported(tmp_path):
    from cli_models import save_non_finite_model

    path = save_non_finite_model(tmp_path / "diverged")
    proc = run(["export.onnx", path, tmp_path / "out" / "vit.onnx"])
    assert proc.returncode != 0
    assert "not finite" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "vit.onnx").exists()


def test_a_lambda_model_is_refused_by_export(tmp_path):
    from cli_models import save_lambda_model

    path = tmp_path / "lambda.keras"
    save_lambda_model(path)
    proc = run(["export", path, tmp_path / "out"])
    assert proc.returncode != 0
    assert "Lambda" in proc.stderr and "Traceback" not in proc.stderr
