"""End-to-end tests of `python -m keras_vit.evaluate` / `keras_vit.predict`, and labels.

A tiny 10-class image-folder tree is generated with Pillow and a vit_micro
with a random head is saved next to a `labels.txt`; every expected number is
recomputed here from `model.predict`.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_vit import build_vit, data, evaluate, labels, predict
from keras_vit.data import CIFAR10_CLASSES

CLASSES = tuple(f"shape{i}" for i in range(10))
PER_CLASS = 3


def make_tree(root, classes, per_class=PER_CLASS, seed=0):
    """root/{train,test}/<class>/*.png of 32x32 noisy images tinted by class."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                base = np.array([25 * label, 255 - 25 * label, 120], "float32")
                pixels = np.clip(base + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def save_model(folder, seed=0, label_names=None):
    model = build_vit("vit_micro")
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.path.startswith("head/"):  # zero-initialised: make predictions vary
            w.assign(rng.normal(0.0, 1.0, w.shape).astype("float32"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.keras"
    model.save(path)
    if label_names is not None:
        labels.write_labels(folder / "labels.txt", label_names)
    return model, path


def read_split(root, split, model_classes):
    """Independent loader: every image of a split and its label in the model's order."""
    images, y = [], []
    for name in sorted(os.listdir(root / split)):
        for file in sorted(os.listdir(root / split / name)):
            with Image.open(root / split / name / file) as im:
                images.append(np.asarray(im.convert("RGB")))
            y.append(model_classes.index(name))
    return np.stack(images).astype("float32"), np.array(y)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    tree = make_tree(base / "data", CLASSES)
    # labels.txt in another order than the folders: labels must be matched by name.
    model_classes = list(reversed(CLASSES))
    model, model_path = save_model(base / "run", label_names=model_classes)
    return dict(base=base, tree=tree, model=model, model_path=model_path, classes=model_classes)


def error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error message on stderr"
    return err[-1]


# --------------------------------------------------------------------------
# evaluate.


def test_evaluate_end_to_end(setup, tmp_path, capsys):
    out = tmp_path / "eval"
    status = evaluate.main([str(setup["model_path"]), "--data-dir", str(setup["tree"]), "--output", str(out),
                            "--no-cache", "--batch-size", "8"])
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
    assert 0 <= results["top5_accuracy"] <= 1 and results["loss"] > 0

    with Image.open(out / "confusion_matrix.png") as im:
        im.verify()
    assert f"Accuracy: {expected_accuracy:.4f}" in printed
    assert "shape3" in printed  # per-class table


def evaluate_with_tta(setup, out, capsys, tta):
    """`python -m keras_vit.evaluate --tta TTA` on the test tree: its results, and the test images and labels."""
    status = evaluate.main([str(setup["model_path"]), "--data-dir", str(setup["tree"]), "--output", str(out),
                            "--no-cache", "--batch-size", "8", "--tta", tta])
    assert status == 0, capsys.readouterr().err
    return json.loads((out / "evaluation.json").read_text()), *read_split(setup["tree"], "test", setup["classes"])


def test_evaluate_flip_tta_averages_the_mirror_images(setup, tmp_path, capsys):
    results, x, y = evaluate_with_tta(setup, tmp_path / "eval_tta", capsys, "flip")
    logits = (setup["model"].predict(x, verbose=0) + setup["model"].predict(x[:, :, ::-1], verbose=0)) / 2
    assert results["tta"] == "flip"
    assert results["accuracy"] == pytest.approx(float(np.mean(logits.argmax(-1) == y)), abs=1e-12)
    # The mirror images really change the logits (the test would pass vacuously otherwise).
    assert not np.allclose(logits, setup["model"].predict(x, verbose=0), atol=1e-4)
    with pytest.raises(ValueError, match="tta"):
        evaluate.tta_logits(setup["model"], x, "rotate")


def test_evaluate_flip_shift_tta_averages_ten_views(setup, tmp_path, capsys):
    from conftest import reference_tta_views

    results, x, y = evaluate_with_tta(setup, tmp_path / "eval_flip_shift", capsys, "flip-shift")
    views = [setup["model"].predict(view, verbose=0) for view in reference_tta_views(x, "flip-shift")]
    assert len(views) == 10 and results["tta"] == "flip-shift"
    logits = np.mean(views, axis=0)
    assert results["accuracy"] == pytest.approx(float(np.mean(logits.argmax(-1) == y)), abs=1e-12)
    np.testing.assert_allclose(evaluate.tta_logits(setup["model"], x, "flip-shift", 8, progress=False), logits,
                               atol=1e-5)
    # Every shifted view changes the logits, and the flip-shift mean is not the flip mean.
    assert all(not np.allclose(view, views[0], atol=1e-4) for view in views[1:])
    assert not np.allclose(logits, (views[0] + views[1]) / 2, atol=1e-4)
    # One pass over the ten views scores all three augmentations.
    scored = evaluate.tta_accuracies(evaluate.view_logits(setup["model"], x, "flip-shift", 8, progress=False), y)
    assert scored["none"] == pytest.approx(float(np.mean(views[0].argmax(-1) == y)))
    assert scored["flip"] == pytest.approx(float(np.mean((views[0] + views[1]).argmax(-1) == y)))
    assert scored["flip-shift"] == results["accuracy"]


def test_evaluate_limit_and_default_output(setup, capsys):
    status = evaluate.main([str(setup["model_path"]), "--data-dir", str(setup["tree"]), "--limit", "10",
                            "--split", "train", "--no-cache"])
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


def test_evaluate_test_only_folder(setup, tmp_path, capsys, monkeypatch):
    """A tree with only test/ evaluates like the full tree; train/ is never read."""
    tree = tmp_path / "test_only"
    shutil.copytree(setup["tree"] / "test", tree / "test")
    read = []
    real_read = data._read_rgb
    monkeypatch.setattr(data, "_read_rgb", lambda path, size: read.append(path) or real_read(path, size))
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
    assert evaluate.main([*argv, "--split", "train", "--output", str(tmp_path / "c")]) == 1
    line = error_line(capsys)
    assert line.startswith("error: ") and f"Missing split folder {tree / 'train'}" in line


def test_evaluate_decodes_only_the_evaluated_split(setup, tmp_path, monkeypatch):
    read = []
    real_read = data._read_rgb
    monkeypatch.setattr(data, "_read_rgb", lambda path, size: read.append(path) or real_read(path, size))
    assert evaluate.main([str(setup["model_path"]), "--data-dir", str(setup["tree"]), "--no-cache",
                          "--output", str(tmp_path)]) == 0
    assert len(set(read)) == 10 * PER_CLASS
    assert all(Path(p).parent.parent.name == "test" for p in read)


def test_evaluate_errors(setup, tmp_path, capsys):
    tree = str(setup["tree"])
    assert evaluate.main([str(tmp_path / "missing.keras"), "--data-dir", tree]) == 1
    assert error_line(capsys) == f"error: model file {tmp_path / 'missing.keras'} does not exist"

    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"this is not a zip file")
    assert evaluate.main([str(corrupt), "--data-dir", tree]) == 1
    assert error_line(capsys).startswith(f"error: could not load model {corrupt}")

    assert evaluate.main([str(setup["model_path"]), "--data-dir", str(tmp_path / "nodata"), "--no-cache"]) == 1
    line = error_line(capsys)
    assert line.startswith("error: ") and "nodata" in line

    # A 10-class model without labels.txt gets CIFAR-10 names, which the tree lacks.
    _, bare = save_model(tmp_path / "bare")
    assert evaluate.main([str(bare), "--data-dir", tree, "--no-cache"]) == 1
    assert "not among the model's classes" in error_line(capsys)

    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--help"])
    assert exit_info.value.code == 0
    assert "--data-dir" in capsys.readouterr().out


def test_evaluate_without_data_lists_what_it_tried(setup, tmp_path, monkeypatch, capsys):
    """No --data-dir, no $KERAS_VIT_DATA_DIR, nothing in the standard places, offline: the error names every
    source searched and how to point at a local copy, not just "not found"."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.chdir(tmp_path)  # ./data/cifar10 and ./data/cifar-10-batches-py: absent
    monkeypatch.setattr(data, "_network_available", lambda *a, **k: False)
    assert evaluate.main([str(setup["model_path"]), "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Could not find CIFAR-10. Tried:")
    for expected in (f"${data.DATA_DIR_ENV}: not set", str(tmp_path / "keras_home" / "datasets"),
                     "data/cifar10", "tensorflow_datasets", "keras.datasets.cifar10: no network", "--data-dir DIR"):
        assert expected in err, expected


# --------------------------------------------------------------------------
# predict.


def test_predict_json_matches_softmax(setup, tmp_path, capsys):
    files = sorted((setup["tree"] / "test" / "shape2").glob("*.png"))[:2]
    big = tmp_path / "big.jpg"  # another size and format: resized to 32x32
    Image.fromarray(np.full((64, 48, 3), 200, np.uint8)).save(big)
    status = predict.main([str(setup["model_path"]), *map(str, files), str(big), "--top-k", "3", "--json"])
    assert status == 0
    output = json.loads(capsys.readouterr().out)
    assert [p["image"] for p in output["predictions"]] == [*map(str, files), str(big)]
    assert output["errors"] == []

    x = np.stack([predict.load_image(f, (32, 32)) for f in [*files, big]]).astype("float32")
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
    assert predict.main([str(setup["model_path"]), *map(str, files), "--top-k", "1", "--json", "--tta",
                         "flip-shift"]) == 0
    output = json.loads(capsys.readouterr().out)
    x = np.stack([predict.load_image(f, (32, 32)) for f in files])
    logits = np.mean([setup["model"].predict(v.astype("float32"), verbose=0) for v in reference_tta_views(x, "flip-shift")], 0)
    probs = evaluate.softmax(logits)
    np.testing.assert_allclose([item["top_k"][0]["probability"] for item in output["predictions"]], probs.max(-1),
                               atol=1e-5)
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
    assert predict.main([str(tmp_path / "none.keras"), image]) == 1
    assert error_line(capsys) == f"error: model file {tmp_path / 'none.keras'} does not exist"
    assert predict.main([str(setup["model_path"]), str(tmp_path / "nope.png")]) == 1
    assert "nope.png" in error_line(capsys)
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    assert predict.main([str(setup["model_path"]), image, "--labels", str(short)]) == 1
    assert "has 2 names but the model has 10 classes" in error_line(capsys)


def test_predict_module_entry_point(tmp_path):
    """`python -m keras_vit.predict` exits non-zero with a one-line error."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "keras_vit.predict", str(tmp_path / "missing.keras"), "x.png"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"error: model file {tmp_path / 'missing.keras'} does not exist"
    assert proc.stdout == ""


# --------------------------------------------------------------------------
# labels.


def test_labels_round_trip_and_validation(tmp_path):
    path = labels.write_labels(tmp_path / "sub" / "labels.txt", ["cat", "dog", "sea lion"])
    assert path.read_text() == "cat\ndog\nsea lion\n"
    assert labels.read_labels(path) == ("cat", "dog", "sea lion")
    assert not [n for n in os.listdir(path.parent) if n.endswith(".tmp")]

    (tmp_path / "crlf.txt").write_bytes(b"cat\r\ndog\r\n\r\n")
    assert labels.read_labels(tmp_path / "crlf.txt") == ("cat", "dog")
    (tmp_path / "gap.txt").write_text("cat\n\ndog\n")
    with pytest.raises(ValueError, match="blank line"):
        labels.read_labels(tmp_path / "gap.txt")
    (tmp_path / "dup.txt").write_text("cat\ncat\n")
    with pytest.raises(ValueError, match="twice"):
        labels.read_labels(tmp_path / "dup.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        labels.read_labels(tmp_path / "empty.txt")
    with pytest.raises(ValueError):
        labels.write_labels(tmp_path / "bad.txt", ["a\nb"])
    with pytest.raises(ValueError):
        labels.write_labels(tmp_path / "bad.txt", ["a", "a"])


def test_labels_for_model_precedence(tmp_path):
    model_path = tmp_path / "model.keras"
    assert labels.labels_for_model(model_path, 10) == tuple(CIFAR10_CLASSES)
    with pytest.raises(ValueError, match="--labels"):
        labels.labels_for_model(model_path, 3)
    labels.write_labels(tmp_path / "labels.txt", ["a", "b", "c"])
    assert labels.labels_for_model(model_path, 3) == ("a", "b", "c")
    with pytest.raises(ValueError, match="has 3 names but the model has 10"):
        labels.labels_for_model(model_path, 10)
    explicit = labels.write_labels(tmp_path / "other.txt", ["x", "y", "z"])
    assert labels.labels_for_model(model_path, 3, explicit) == ("x", "y", "z")
    with pytest.raises(FileNotFoundError):
        labels.labels_for_model(model_path, 3, tmp_path / "missing.txt")


def test_tta_variants_benchmark(tiny_tree, tmp_path):
    """benchmarks/tta_variants.py: its flip-shift variant is `--tta flip-shift`, and the other shifts differ."""
    import importlib.util

    from conftest import reference_tta_views

    spec = importlib.util.spec_from_file_location(
        "tta_variants", Path(__file__).resolve().parents[1] / "benchmarks" / "tta_variants.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    model, path = save_model(tmp_path / "m", seed=3)
    output = tmp_path / "variants.json"
    assert script.main([str(path), "--data-dir", str(tiny_tree), "--batch-size", "20", "--output", str(output)]) == 0
    rows = {row["variant"]: row for row in json.loads(output.read_text())["rows"]}
    test = data.load_cifar10(str(tiny_tree), splits=("test",))
    x, y = test.x_test, test.y_test
    views = [model.predict(view.astype("float32"), verbose=0) for view in reference_tta_views(x, "flip-shift")]
    assert rows["plain"]["accuracy"] == pytest.approx(float(np.mean(views[0].argmax(-1) == y)))
    flip_shift = rows["shift 1, diagonal, reflect (--tta flip-shift)"]
    assert flip_shift["views"] == 10 and rows["shift 1, all 8 directions, reflect"]["views"] == 18
    assert flip_shift["accuracy"] == pytest.approx(float(np.mean(np.mean(views, 0).argmax(-1) == y)))
    # The fill modes and shift sizes really give other images.
    image = x[:1]
    variants = [script.shift_images(image, 1, 1, "reflect"), script.shift_images(image, 1, 1, "edge"),
                script.shift_images(image, 1, 1, "constant"), script.shift_images(image, 2, 2, "reflect")]
    assert len({v.tobytes() for v in variants}) == 4
    np.testing.assert_array_equal(script.shift_images(image, 1, 1, "reflect")[0, :-1, :-1], image[0, 1:, 1:])
