"""python -m keras_vit.convert: a checkpoint to a checked `.keras` file and its labels twin; bad input is one line
and a non-zero exit with nothing written."""

import numpy as np
import pytest

import keras_vit
from keras_vit import cli_utils
from keras_vit.convert import __main__ as convert_cli
from keras_vit.convert import command as convert_command
from keras_vit.convert import sources
from keras_vit.labels import labels_for_model
from tests.convert.helpers import assert_same_logits, random_pixels
from tests.convert.test_sources import save_hugging_face_folder


@pytest.fixture
def hub_folder(tmp_path):
    folder = tmp_path / "vit-tiny"
    save_hugging_face_folder(folder, labels=["cat", "dog", "owl", "eel"])
    return folder


def written(folder):
    """The files in `folder`, hidden temporary ones included."""
    return sorted(path.name for path in folder.iterdir())


def test_a_hugging_face_folder_converts_to_a_checked_file_with_its_labels(hub_folder, tmp_path, capsys):
    output = tmp_path / "out" / "vit_tiny.keras"
    assert convert_cli.main([str(hub_folder), str(output)]) == 0
    printed = capsys.readouterr().out
    assert "against the source on 4 random images: max |logit difference|" in printed
    assert "the same top class on 4 of 4" in printed and "4 classes out" in printed
    assert f"next: python -m export {output}" in printed
    assert written(output.parent) == ["vit_tiny.keras", "vit_tiny.labels.txt"]
    # The labels twin is what predict, evaluate and python -m export find beside the model.
    assert labels_for_model(output, 4) == ("cat", "dog", "owl", "eel")
    model = keras_vit.load_model(output)
    pixels = random_pixels(32)
    reference = sources.load_source(hub_folder).reference(pixels)
    assert_same_logits(reference, model.predict(pixels, verbose=0))


def test_a_model_that_differs_from_its_source_is_not_written(hub_folder, tmp_path, monkeypatch, capsys):
    load = sources.load_source

    def off_by_one(*args):
        converted = load(*args)
        reference = converted.reference
        converted.reference = lambda pixels: reference(pixels) + np.eye(4, dtype="float32")[0]
        return converted

    monkeypatch.setattr(convert_command, "load_source", off_by_one)
    output = tmp_path / "out" / "vit.keras"
    assert convert_cli.main([str(hub_folder), str(output)]) == 1
    assert (
        "error: the converted model differs from its source by 1: nothing written" in capsys.readouterr().err
    )
    assert not output.parent.exists()  # nothing written: the folder it made is gone too


def test_a_backbone_gets_a_new_head_and_no_labels_without_a_labels_file(tmp_path, capsys):
    folder = tmp_path / "backbone"
    save_hugging_face_folder(folder, model_class="ViTModel")
    output = tmp_path / "headless.keras"
    assert (
        convert_cli.main(
            [str(folder), str(output), "--num-classes", "3", "--mean", "0.5", "0.5", "0.5"]
            + ["--std", "0.5", "0.5", "0.5"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "not compared with the source: a new head was made" in printed
    assert "no labels file: the source names no classes: pass --labels FILE" in printed
    assert "mean (0.5, 0.5, 0.5)" in printed and not (tmp_path / "headless.labels.txt").exists()
    names = tmp_path / "names.txt"
    names.write_text("red\ngreen\nblue\n")
    assert convert_cli.main([str(folder), str(output), "--num-classes", "3", "--labels", str(names)]) == 0
    assert labels_for_model(output, 3) == ("red", "green", "blue")
    # Converted again without names: the earlier twin would name this model's classes, so it goes.
    assert (
        convert_cli.main(
            [str(folder), str(output), "--num-classes", "3", "--mean", *["0.5"] * 3, "--std", *["0.5"] * 3]
        )
        == 0
    )
    assert "removed " in capsys.readouterr().out and not (tmp_path / "headless.labels.txt").exists()


def test_a_saved_file_that_reloads_to_other_logits_is_not_left(hub_folder, tmp_path, monkeypatch, capsys):
    class Shifted:
        def __init__(self, model):
            self.model = model

        def predict(self, pixels, verbose=0):
            return self.model.predict(pixels, verbose=verbose) + 0.5

    monkeypatch.setattr(convert_command, "load_keras_model", lambda path: Shifted(keras_vit.load_model(path)))
    output = tmp_path / "out" / "vit.keras"
    assert convert_cli.main([str(hub_folder), str(output)]) == 1  # a check of the work failed (not its input)
    assert "error: the saved file gives logits 0.5 away from the converted model's" in capsys.readouterr().err
    assert not output.parent.exists()  # nothing written: the folder it made is gone too


def test_a_failure_of_the_source_library_is_one_line(tmp_path, monkeypatch, capsys):
    def unknown(*args):
        raise RuntimeError("Unknown model (vit_tyni_patch16_224)\nmore lines of a traceback")

    monkeypatch.setattr(convert_command, "load_source", unknown)
    assert convert_cli.main(["timm:vit_tyni_patch16_224", str(tmp_path / "vit.keras")]) == 2
    error = capsys.readouterr().err
    assert (
        error
        == "error: cannot load timm:vit_tyni_patch16_224: RuntimeError: Unknown model (vit_tyni_patch16_224)\n"
    )


def test_class_names_a_labels_file_cannot_hold_stop_the_conversion_before_it_writes(
    hub_folder, tmp_path, monkeypatch, capsys
):
    load = sources.load_source

    def colliding(*args):
        converted = load(*args)
        converted.class_names = ("a (1)", "a (1)", "b", "c")  # what de-duplication cannot always avoid
        return converted

    monkeypatch.setattr(convert_command, "load_source", colliding)
    output = tmp_path / "out" / "vit.keras"
    assert convert_cli.main([str(hub_folder), str(output)]) == 2
    assert "given more than once: 'a (1)'" in capsys.readouterr().err and not output.parent.exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["weights.pt", "made/out.keras"],
            "no such file or folder: weights.pt",
        ),
        (["missing.safetensors", "made/for/out.keras"], "no such file or folder: missing.safetensors"),
        (["HUB", "out.keras", "--labels", "NAMES"], "NAMES gives 2 class names, the model has 4 classes"),
        (["HUB", "out.keras", "--labels", "missing.txt"], "labels file missing.txt does not exist."),
    ],
    ids=["unknown-source", "missing-file", "labels-count", "missing-labels"],
)
def test_bad_input_is_one_line_and_nothing_is_written(
    arguments, message, hub_folder, tmp_path, monkeypatch, capsys
):
    """Each is the command's own line, exactly: a missing file is not a failure of the source's library; the folders
    made for the output are removed again."""
    monkeypatch.chdir(tmp_path)
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    arguments = [str(hub_folder) if a == "HUB" else str(names) if a == "NAMES" else a for a in arguments]
    message = message.replace("NAMES", str(names))
    before = written(tmp_path)
    assert convert_cli.main(arguments) == 2
    error = capsys.readouterr().err
    assert error == f"error: {message}\n"
    assert written(tmp_path) == before


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["hf:x", "out.onnx"], "the output must be a .keras file"),
        (["hf:x", "out.keras", "--mean", "0.5", "0.5", "0.5"], "--mean and --std go together"),
        (["hf:x", "out.keras", "--tolerance", "0"], "--tolerance must be above 0"),
    ],
)
def test_bad_flags_are_refused_before_anything_loads(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert_cli.main(arguments)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(("stop", "status"), [(KeyboardInterrupt, 130), (cli_utils.Terminated, 143)])
def test_an_interrupted_conversion_says_what_it_wrote(
    hub_folder, tmp_path, monkeypatch, capsys, stop, status
):
    """Ctrl-C or SIGTERM (cli_utils.stop_on_signals) before the model is saved: nothing written, no
    temporary left; after it, before the labels: the line names the model and says to rerun."""
    output = tmp_path / "out" / "vit.keras"

    def interrupted(*args):
        raise stop()

    monkeypatch.setattr(convert_command, "load_keras_model", interrupted)  # the reload inside the atomic save
    assert convert_cli.main([str(hub_folder), str(output)]) == status
    # The last line, after the source library's progress bars.
    assert capsys.readouterr().err.endswith("\nerror: interrupted: nothing written\n")
    assert not output.parent.exists()  # nothing written: the folder it made is gone too
    monkeypatch.undo()
    monkeypatch.setattr(convert_command, "write_labels", interrupted)
    assert convert_cli.main([str(hub_folder), str(output)]) == status
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == f"error: interrupted after {output} was written: run the command again"
    assert written(output.parent) == ["vit.keras"]


@pytest.mark.parametrize(("args", "status"), [(["--help"], 0), (["hf:x", "out.onnx"], 2)])
def test_help_and_bad_flags_answer_without_loading_keras(args, status):
    from conftest import heavy_imports_of

    code, out, heavy = heavy_imports_of("keras_vit.convert", *args)
    assert (code, heavy) == (status, [])
    assert status or ("SOURCE is timm:NAME" in out and sources.SOURCE_KINDS.split(",")[0] in out)


def test_preprocessing_no_mean_and_std_express_is_one_line_and_nothing_is_written(
    hub_folder, tmp_path, capsys
):
    import json

    config = json.loads((hub_folder / "preprocessor_config.json").read_text())
    (hub_folder / "preprocessor_config.json").write_text(json.dumps({**config, "do_rescale": False}))
    output = tmp_path / "out" / "vit.keras"
    output.parent.mkdir()
    assert convert_cli.main([str(hub_folder), str(output)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "preprocessor_config.json says do_rescale=False" in error, error
    assert written(output.parent) == []
