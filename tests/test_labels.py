"""Tests for keras_vit.labels: the one rule set for class-name files."""

import os

import pytest

from keras_vit import labels
from keras_vit.data import CIFAR10_CLASSES


def test_labels_round_trip_and_validation(tmp_path):
    path = labels.write_labels(tmp_path / "sub" / "labels.txt", ["cat", "dog", "sea lion"])
    assert path.read_text() == "cat\ndog\nsea lion\n"
    assert labels.read_labels(path) == ("cat", "dog", "sea lion")
    assert not [n for n in os.listdir(path.parent) if n.endswith(".tmp") or ".tmp-" in n]

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


def test_read_labels_encoding_and_whitespace(tmp_path):
    (tmp_path / "bom.txt").write_bytes("\ufeffcafé\n  dog \n".encode("utf-8"))
    assert labels.read_labels(tmp_path / "bom.txt") == ("café", "dog")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        labels.read_labels(tmp_path / "latin1.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        labels.read_labels(tmp_path / "missing.txt")
    for bad in ([], [" cat"], [""]):
        with pytest.raises(ValueError):
            labels.write_labels(tmp_path / "bad.txt", bad)
    assert not (tmp_path / "bad.txt").exists()


@pytest.mark.parametrize(
    "separator",
    ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"],
    ids=repr,
)
def test_a_name_that_read_labels_would_split_is_refused(tmp_path, separator):
    """`read_labels` splits with `str.splitlines`: a form feed or U+2028 in a name would make it two classes."""
    name = f"sea{separator}lion"
    assert len(name.splitlines()) == 2
    with pytest.raises(ValueError, match="line break"):
        labels.write_labels(tmp_path / "labels.txt", ["cat", name])
    with pytest.raises(ValueError, match="line break"):
        labels.labels_text(["cat", name])
    assert not (tmp_path / "labels.txt").exists()
    # What is kept round-trips: one name per line, inner spaces and non-ASCII letters included.
    kept = ["cat", "sea lion", "café", "crane (134)"]
    assert labels.read_labels(labels.write_labels(tmp_path / "labels.txt", kept)) == tuple(kept)


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


def test_the_model_twin_comes_before_labels_txt(tmp_path):
    """`<stem>.labels.txt` (as keras_vit/pretrained ships) names one model's classes among others in a folder."""
    model_path = tmp_path / "vit_cifar10.keras"
    labels.write_labels(tmp_path / "labels.txt", ["a", "b", "c"])
    assert labels.default_labels_path(model_path) == tmp_path / "labels.txt"
    labels.write_labels(tmp_path / "vit_cifar10.labels.txt", ["p", "q", "r"])
    assert labels.default_labels_path(model_path) == tmp_path / "vit_cifar10.labels.txt"
    assert labels.labels_for_model(model_path, 3) == ("p", "q", "r")
    assert labels.labels_for_model(tmp_path / "other.keras", 3) == ("a", "b", "c")  # not its twin
    assert labels.labels_for_model(model_path, 3, tmp_path / "labels.txt") == ("a", "b", "c")  # --labels wins
    (tmp_path / "vit_cifar10.labels.txt").write_text("p\np\nr\n")  # a broken twin is an error, not skipped
    with pytest.raises(ValueError, match="twice"):
        labels.labels_for_model(model_path, 3)


def test_where_labels_are_looked_for(tmp_path):
    assert labels.LABELS_FILENAME == "labels.txt"
    assert labels.default_labels_path(tmp_path / "m.onnx") == tmp_path / "labels.txt"  # missing: still named
    assert labels.find_labels_file(tmp_path / "m.onnx") is None
    saved_model = tmp_path / "savedmodel"
    saved_model.mkdir()
    assert labels.default_labels_path(saved_model) == saved_model / "labels.txt"  # inside a directory
    labels.write_labels(saved_model / "labels.txt", ["a", "b"])
    assert labels.labels_for_model(saved_model, 2) == ("a", "b")
    assert labels.find_labels_file(tmp_path / "m.onnx", "given.txt") == labels.Path("given.txt")


def test_the_shipped_model_finds_its_twin():
    from keras_vit.pretrained import labels_path, model_path

    assert labels.default_labels_path(model_path()) == labels_path()
    assert labels.labels_for_model(model_path(), 10) == labels.read_labels(labels_path())


def test_a_folder_given_as_the_labels_file_is_named_as_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="is a folder, not a file"):
        labels.read_labels(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        labels.read_labels(tmp_path / "labels.txt")
