"""Tests for keras_vit.files: the one atomic write."""

import json
import os

import numpy as np
import pytest

from keras_vit import files
from keras_vit.files import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temporaries,
    stale_temporaries,
)


def names(folder):
    return sorted(os.listdir(folder))


def test_atomic_path_replaces_on_success_and_keeps_the_extension_last(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    with atomic_path(target, suffix=".part") as tmp:
        assert tmp.parent == tmp_path and tmp.exists() and tmp.stat().st_size == 0
        assert tmp.name.startswith(".model.tmp-") and tmp.name.endswith(".part.keras")
        assert target.read_bytes() == b"old"  # readers still see the old file
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and names(tmp_path) == ["model.keras"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == 0o666 & ~umask


@pytest.mark.parametrize("umask", [0o077, 0o002, 0o022], ids=["077", "002", "022"])
@pytest.mark.parametrize("proc", [True, False], ids=["proc_status", "umask_call"])
def test_atomic_path_gives_the_mode_the_umask_allows(tmp_path, monkeypatch, umask, proc):
    """Files 0o666 and folders 0o777 less the umask, as `open` and `mkdir` make them; not a fixed 0o644."""
    if not proc:  # a system without /proc/self/status: the umask is read by setting it back at once
        real_open = open

        def open_without_proc(path, *args, **kwargs):
            if path == "/proc/self/status":
                raise FileNotFoundError(path)
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr("builtins.open", open_without_proc)
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "labels.txt", "cat\n")
        with atomic_path(tmp_path / "savedmodel", directory=True) as tmp:
            (tmp / "saved_model.pb").write_bytes(b"")
        assert files._umask() == umask
    finally:
        os.umask(previous)
    assert (tmp_path / "labels.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "savedmodel").stat().st_mode & 0o777 == 0o777 & ~umask


def test_atomic_path_leaves_the_old_file_when_the_block_fails(tmp_path):
    target = tmp_path / "labels.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old\n" and names(tmp_path) == ["labels.txt"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "new.txt"):
            raise KeyboardInterrupt
    assert names(tmp_path) == ["labels.txt"]


def test_two_writers_get_their_own_temporary_paths(tmp_path):
    with atomic_path(tmp_path / "a.json") as first, atomic_path(tmp_path / "a.json") as second:
        assert first != second
        first.write_text("1")
        second.write_text("2")
    # The inner block finishes first; the outer one, finishing last, wins: a whole file either way.
    assert (tmp_path / "a.json").read_text() == "1" and names(tmp_path) == ["a.json"]


def test_atomic_directory(tmp_path):
    target = tmp_path / "savedmodel"
    with atomic_path(target, directory=True) as tmp:
        assert tmp.is_dir() and not list(tmp.iterdir())
        (tmp / "saved_model.pb").write_bytes(b"one")
    assert (target / "saved_model.pb").read_bytes() == b"one"
    with atomic_path(target, directory=True) as tmp:  # replaces the previous directory as a whole
        (tmp / "other.pb").write_bytes(b"two")
        assert (target / "saved_model.pb").exists()
    assert names(target) == ["other.pb"] and names(tmp_path) == ["savedmodel"]
    with pytest.raises(ValueError):
        with atomic_path(target, directory=True) as tmp:
            (tmp / "broken").write_bytes(b"")
            raise ValueError("conversion failed")
    assert names(target) == ["other.pb"] and names(tmp_path) == ["savedmodel"]


def test_atomic_directory_with_windows_renames(tmp_path, monkeypatch):
    """Windows renames no folder onto an existing one, even an empty one: the old folder was moved onto an empty
    temporary one, and every second export into a folder failed there."""
    from keras_vit import files

    real = os.replace

    def windows_replace(source, destination):
        if os.path.isdir(destination):
            raise PermissionError(5, "Access is denied", str(source), None, str(destination))
        real(source, destination)

    monkeypatch.setattr(files.os, "replace", windows_replace)
    target = tmp_path / "export"
    for content in (b"one", b"two"):
        with atomic_path(target, directory=True) as tmp:
            (tmp / "model.onnx").write_bytes(content)
    assert (target / "model.onnx").read_bytes() == b"two" and names(tmp_path) == ["export"]


def test_atomic_writes(tmp_path):
    assert atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01") == tmp_path / "a.bin"
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    atomic_write_text(str(tmp_path / "a.txt"), "é\n")
    assert (tmp_path / "a.txt").read_bytes() == "é\n".encode()
    path = atomic_write_json(tmp_path / "a.json", {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(2)})
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "n": 3' in text
    assert json.loads(text) == {"n": 3, "x": 0.5, "a": [0, 1]}
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()
    assert names(tmp_path) == ["a.bin", "a.json", "a.txt"]


def test_stale_temporaries_of_named_files_leave_another_writers_alone(tmp_path):
    """Training cleans its own outputs' temporaries only: an export writing in the same folder keeps its own."""
    # What a killed run left: `atomic_path`'s temporary names for its files, and a folder a swap left aside.
    left = [".model.tmp-k1.keras", ".labels.tmp-k2.txt", ".history.tmp-k3.csv"]
    for name in left:
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / ".checkpoint.old-k4").mkdir()
    left = sorted([*left, ".checkpoint.old-k4"])
    training = ["model.keras", "labels.txt", "history.csv", "metrics.json", "curves.png", "checkpoint"]
    with (
        atomic_path(tmp_path / "export", directory=True) as export,
        atomic_path(tmp_path / "model.onnx") as onnx,
    ):
        (tmp_path / ".model.labels.tmp-k5.txt").write_text("an export's labels, staged")
        theirs = sorted([export.name, onnx.name, ".model.labels.tmp-k5.txt"])
        assert [p.name for p in stale_temporaries(tmp_path, names=training)] == left
        assert [p.name for p in remove_stale_temporaries(tmp_path, names=training)] == left
        assert [p.name for p in stale_temporaries(tmp_path)] == theirs  # the export's are untouched
        assert stale_temporaries(tmp_path, names="model.onnx") == [onnx]  # one name, as a string
        onnx.write_bytes(b"")
    assert names(tmp_path) == [".model.labels.tmp-k5.txt", "export", "model.onnx"]
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".model.labels.tmp-k5.txt"]  # None: all
    with pytest.raises(ValueError, match="not a file name"):
        stale_temporaries(tmp_path, names=["runs/model.keras"])


def test_json_text_writes_nan_and_infinities_as_null():
    """JSON has no NaN: a metrics file that held one broke strict readers (JavaScript's JSON.parse)."""
    text = files.json_text(
        {"a": float("nan"), "b": [1.5, float("inf")], "c": np.array([np.nan, 2.0]), "d": np.float32("-inf")}
    )
    assert json.loads(text, parse_constant=pytest.fail) == {
        "a": None,
        "b": [1.5, None],
        "c": [None, 2.0],
        "d": None,
    }
