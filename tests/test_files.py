"""Tests for keras_vit.files: the one atomic write."""

import json
import os

import numpy as np
import pytest

from keras_vit.files import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text


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
    assert (target.stat().st_mode & 0o777) == 0o644


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
