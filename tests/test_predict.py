"""End-to-end tests of `python -m keras_vit.predict` on a tiny image tree (see cli_models)."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_models import PER_CLASS, bad_model_files, decompression_bomb, error_line, make_setup
from conftest import heavy_imports_of
from PIL import Image

from keras_vit import inference, metrics, predict
from keras_vit.data import CIFAR10_CLASSES


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("cli"))


def test_predict_json_matches_softmax(setup, tmp_path, capsys):
    files = sorted((setup["tree"] / "test" / "shape2").glob("*.png"))[:2]
    big = tmp_path / "big.jpg"  # another size and format: resized to 32x32
    Image.fromarray(np.full((64, 48, 3), 200, np.uint8)).save(big)
    status = predict.main([str(setup["model_path"]), *map(str, files), str(big), "--top-k", "3", "--json"])
    assert status == 0
    output = json.loads(capsys.readouterr().out)
    assert [p["image"] for p in output["predictions"]] == [*map(str, files), str(big)]
    assert output["errors"] == []

    x = predict.read_images([*files, big], (32, 32))[0].astype("float32")
    logits = setup["model"].predict(x, verbose=0).astype("float64")
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    for row, item in zip(probs, output["predictions"]):
        top = item["top_k"]
        assert len(top) == 3
        order = np.argsort(-row)[:3]
        assert [t["index"] for t in top] == order.tolist()
        assert [t["label"] for t in top] == [setup["classes"][i] for i in order]
        np.testing.assert_allclose([t["probability"] for t in top], row[order], atol=1e-6)


def test_predict_flip_shift_tta(setup, capsys):
    from conftest import reference_tta_views

    files = sorted((setup["tree"] / "test" / "shape1").glob("*.png"))[:3]
    assert (
        predict.main(
            [str(setup["model_path"]), *map(str, files), "--top-k", "1", "--json", "--tta", "flip-shift"]
        )
        == 0
    )
    output = json.loads(capsys.readouterr().out)
    x = predict.read_images(files, (32, 32))[0]
    logits = np.mean(
        [
            setup["model"].predict(v.astype("float32"), verbose=0)
            for v in reference_tta_views(x, "flip-shift")
        ],
        0,
    )
    probs = metrics.softmax(logits)
    np.testing.assert_allclose(
        [item["top_k"][0]["probability"] for item in output["predictions"]], probs.max(-1), atol=1e-5
    )
    assert [item["top_k"][0]["index"] for item in output["predictions"]] == probs.argmax(-1).tolist()


def test_predict_text_folder_and_unreadable(setup, tmp_path, capsys):
    folder = setup["tree"] / "test" / "shape0"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    status = predict.main([str(setup["model_path"]), str(folder), str(broken), "--top-k", "20"])
    captured = capsys.readouterr()
    assert status == 1  # one image failed
    assert f"error: cannot read image {broken}" in captured.err
    for file in sorted(folder.glob("*.png")):
        assert str(file) in captured.out
    assert captured.out.count("%") == PER_CLASS * 10  # top-k capped at the 10 classes


def test_predict_errors(setup, tmp_path, capsys):
    image = str(next((setup["tree"] / "test" / "shape1").glob("*.png")))
    assert predict.main([str(tmp_path / "none.keras"), image]) == 2
    assert error_line(capsys) == f"error: model file {tmp_path / 'none.keras'} does not exist"
    assert predict.main([str(setup["model_path"]), str(tmp_path / "nope.png")]) == 1
    assert "nope.png" in error_line(capsys)
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    assert predict.main([str(setup["model_path"]), image, "--labels", str(short)]) == 2
    assert "has 2 names but the model has 10 classes" in error_line(capsys)


def test_predict_says_when_it_names_the_classes_as_cifar10s(setup, tmp_path, capsys):
    """A user's 10-class model without labels.txt was shown with CIFAR-10's names, silently."""
    image = str(next((setup["tree"] / "test" / "shape1").glob("*.png")))
    bare = tmp_path / "bare.keras"
    bare.write_bytes(Path(setup["model_path"]).read_bytes())
    assert predict.main([str(bare), image]) == 0
    printed = capsys.readouterr()
    assert printed.err == (
        f"note: no --labels and no labels.txt beside {bare}; the model has 10 outputs, so the CIFAR-10 class "
        "names are used\n"
    )
    assert sum(f" {name} " in printed.out for name in CIFAR10_CLASSES) == 5  # the top 5, by CIFAR-10's names
    assert predict.main([str(setup["model_path"]), image]) == 0
    assert capsys.readouterr().err == ""  # its labels.txt: no note


def test_predict_module_entry_point(tmp_path):
    """`python -m keras_vit.predict` exits non-zero with a one-line error."""
    root = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "keras_vit.predict", str(tmp_path / "missing.keras"), "x.png"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1]
        == f"error: model file {tmp_path / 'missing.keras'} does not exist"
    )
    assert proc.stdout == ""


@pytest.fixture(scope="module")
def bad_models(setup, tmp_path_factory):
    return bad_model_files(tmp_path_factory.mktemp("bad_models"), setup["model_path"])


@pytest.mark.parametrize(
    "case", ["truncated", "garbage", "no config", "lambda", "os.system", "28x28x1", "NaN"]
)
def test_predict_refuses_a_bad_model_file_in_one_line(setup, bad_models, case, capsys):
    """Truncated/garbage files ("File not found"), Lambda and os.system configs (a generic Keras message),
    a 28x28x1 CNN (a ValueError traceback) and NaN weights (`nan%` and exit 0): one line each."""
    path, expected = bad_models[case]
    image = str(next((setup["tree"] / "test" / "shape1").glob("*.png")))
    assert predict.main([str(path), image]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and expected in err, err
    assert captured.out == ""


def test_predict_reports_each_bad_image_and_classifies_the_rest(setup, tmp_path, capsys):
    good = sorted((setup["tree"] / "test" / "shape2").glob("*.png"))[:2]
    bomb = decompression_bomb(tmp_path / "bomb.png")
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop.name)
    missing = tmp_path / "missing.png"
    assert (
        predict.main(
            [str(setup["model_path"]), str(good[0]), str(bomb), str(loop), str(missing), str(good[1])]
        )
        == 1
    )
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"error: cannot read image {bomb}: DecompressionBombError: Image size (900000000 pixels) exceeds limit "
        f"of {2 * Image.MAX_IMAGE_PIXELS} pixels, could be decompression bomb DOS attack.",
        f"error: cannot read image {loop}: OSError: [Errno {errno.ELOOP}] {os.strerror(errno.ELOOP)}: '{loop}'",
        f"error: cannot read image {missing}: file does not exist",
    ]
    assert str(good[0]) in captured.out and str(good[1]) in captured.out


def test_predict_interrupted_is_one_line(setup, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, "tta_logits", interrupt)
    image = str(next((setup["tree"] / "test" / "shape1").glob("*.png")))
    try:
        status = predict.main([str(setup["model_path"]), image])
    except KeyboardInterrupt:  # caught here: escaping, it would stop the whole test session
        pytest.fail("KeyboardInterrupt escaped main(): a traceback, not one line")
    assert status == 130
    assert capsys.readouterr().err == "error: interrupted\n"


@pytest.mark.parametrize(("args", "status"), [(["--help"], 0), (["model.keras"], 2)])
def test_help_and_bad_flags_answer_without_loading_keras(args, status):
    """--help and a usage error come before Keras (seconds to import) is loaded."""
    code, out, heavy = heavy_imports_of("keras_vit.predict", *args)
    assert (code, heavy) == (status, [])
    assert status or "--top-k" in out
