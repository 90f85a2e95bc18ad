"""Tests for export/output.py: the lock, the leftovers of a killed export, free space, the labels twin."""

import subprocess
import sys

import pytest
from export_helpers import CLASSES, error_lines, explain, run

from export.common import ExportError
from export.output import (
    EXPORT_OVERHEAD_BYTES,
    check_labels_twin,
    disk_full,
    leftovers,
    lock_path,
    model_weight_bytes,
    output_lock,
    remove_leftovers,
)

pytest_plugins = ["export_fixtures"]


def test_leftovers_are_only_those_of_the_output(tmp_path):
    """Only the stem's temporaries go: never another export's, nor a training's writing in the same folder."""
    for name in (".out.tmp-a1", ".out.old-b2", ".m.tmp-c3.savedmodel", ".other.tmp-d4"):
        (tmp_path / name).mkdir()
    for name in (
        ".m.tmp-e5.onnx",  # m.onnx itself
        ".m.onnx.tmp-f6.json",  # its model card
        ".m.labels.tmp-g7.txt",  # its labels
        ".m.tmp-h8.keras",  # a training writing m.keras
        ".m.v2.tmp-i9.onnx",  # the export of m.v2.onnx
        ".other.tmp-j0.onnx",
        ".out.tmp-k1.keras",  # a file: not the folder `out`'s
        "m.onnx",
        ".m.lock",
    ):
        (tmp_path / name).write_text("x")
    assert [p.name for p in leftovers(tmp_path / "out")] == [".out.old-b2", ".out.tmp-a1"]
    assert [p.name for p in leftovers(tmp_path / "m.onnx")] == [
        ".m.labels.tmp-g7.txt",
        ".m.onnx.tmp-f6.json",
        ".m.tmp-c3.savedmodel",
        ".m.tmp-e5.onnx",
    ]
    assert lock_path(tmp_path / "m.onnx") == lock_path(tmp_path / "m.tflite") == tmp_path / ".m.lock"


def test_remove_leftovers_puts_back_a_previous_export_left_aside(tmp_path, capsys):
    """Killed between the two renames of a folder swap, the previous export sits aside: it comes back."""
    aside = tmp_path / ".out.old-x1"
    aside.mkdir()
    (aside / "report.json").write_text("{}")
    (tmp_path / ".out.tmp-y2").mkdir()  # the new folder, not known to be complete
    (tmp_path / ".out.tmp-y2" / "model.onnx").write_text("x")
    removed = remove_leftovers(tmp_path / "out")
    assert [p.name for p in removed] == [".out.tmp-y2"]
    assert (tmp_path / "out" / "report.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    err = capsys.readouterr().err
    assert "restored the previous export" in err and "removed what an interrupted export" in err


def test_a_second_export_is_refused_and_a_killed_ones_lock_does_not_block(tmp_path):
    out = tmp_path / "out"
    with output_lock(out):
        with pytest.raises(ExportError, match="another export is writing .*out"):
            with output_lock(out):
                pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, filelock\n"
            "lock = filelock.FileLock(sys.argv[1])\n"
            "lock.acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n",
            str(lock_path(out)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ExportError, match="another export"):
            with output_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with output_lock(out):  # the system released the killed holder's lock
        pass


def test_check_labels_twin(tmp_path):
    """`<stem>.labels.txt` may not change the names another model with that stem reads."""
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    (tmp_path / "m.keras").write_text("a model that reads labels.txt")
    labels = tmp_path / "m.labels.txt"
    with pytest.raises(ExportError, match="m.keras beside it reads its names from .*labels.txt"):
        check_labels_twin(tmp_path / "m.onnx", ["x", "y", "z"], labels)
    check_labels_twin(tmp_path / "m.onnx", ["a", "b", "c"], labels)  # the same names: fine
    check_labels_twin(tmp_path / "n.onnx", ["x", "y", "z"], tmp_path / "n.labels.txt")  # no model named n
    labels.write_text("x\ny\nz\n")  # now m.keras reads these
    check_labels_twin(tmp_path / "m.onnx", ["x", "y", "z"], labels)
    check_labels_twin(tmp_path / "m.keras", ["p", "q", "r"], labels)  # the output itself does not count
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "k.tflite").write_text("a model without a labels file: the CIFAR-10 names")
    check_labels_twin(bare / "k.onnx", list(CLASSES), bare / "k.labels.txt")
    with pytest.raises(ExportError, match="the CIFAR-10 default"):
        check_labels_twin(bare / "k.onnx", ["x", "y", "z"], bare / "k.labels.txt")


def test_model_weight_bytes_leaves_out_the_optimizer(trained, tmp_path):
    model = trained["model"]
    weights = sum(int(w.numpy().nbytes) for w in model.weights)
    assert model_weight_bytes(trained["path"]) == pytest.approx(weights, rel=0.05)
    assert model_weight_bytes(trained["path"]) < trained["path"].stat().st_size  # it holds Adam's state too
    (tmp_path / "odd.keras").write_bytes(b"no archive")
    assert model_weight_bytes(tmp_path / "odd.keras") == len(b"no archive")


def test_disk_full():
    assert disk_full(OSError(28, "No space left on device"))
    assert disk_full(RuntimeError("UNKNOWN: write failed: No space left on device"))
    assert not disk_full(OSError(13, "Permission denied"))


def test_preflight_full_or_read_only_disk_is_one_line_before_loading(trained, small_disk, tmp_path):
    """Too little free space for the export, or a read-only disk: one line, exit 2, before the model loads."""
    needed = 6 * model_weight_bytes(trained["path"]) + EXPORT_OVERHEAD_BYTES  # python -m export: six files
    (small_disk / "filler").write_bytes(bytes(max(0, 2 * 2**20 - needed + 256 * 1024)))  # leaves less
    proc = run(["export", trained["path"], small_disk / "out"])
    assert proc.returncode == 2, explain(proc)
    lines = error_lines(proc)
    assert len(lines) == 1 and "free on its disk; at least" in lines[0] and "6 files" in lines[0], explain(
        proc
    )
    assert "labels from" not in proc.stdout  # the model was not loaded
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == [".out.lock", "filler"]

    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    proc = run(["export.onnx", trained["path"], small_disk / "m.onnx"])
    assert proc.returncode == 2, explain(proc)
    lines = error_lines(proc)
    assert len(lines) == 1 and "Read-only file system" in lines[0], explain(proc)
