"""Tests for export/__main__.py, `python -m export`: every format written, proven and reported."""

import json
import os
import shutil
import sys

import pytest
from export_helpers import CLASSES, FILES, N_TEST, Background, error_lines, explain, needs_tf_keras, run

from export import __main__ as export_main
from export import common
from export.step import Format
from export.verify import ProofError

pytest_plugins = ["export_fixtures"]


def test_all_formats_written_and_proven(export_dir):
    names = set(os.listdir(export_dir))
    for name in FILES + ["labels.txt", "report.md", "report.json"]:
        assert name in names, name
    assert not [n for n in names if ".tmp-" in n], names  # no temp leftovers
    assert (export_dir / "labels.txt").read_text().split() == list(CLASSES)
    report = json.loads((export_dir / "report.json").read_text())
    assert report["passed"] and report["data"]["real"]
    assert report["data"]["eval_images"] == 10 * N_TEST
    results = {r["file"]: r for r in report["formats"]}
    assert sorted(results) == sorted(FILES)
    for r in results.values():
        assert r["passed"], r
        assert set(r["dynamic_batch"]) == {"1", "7"}
        if r["quantize"] == "none":
            assert r["max_abs_diff"] <= 1e-4 and r["top1_agree"] == r["images"], r
        else:
            assert (
                r["keras_accuracy"] - r["accuracy"]
                <= {"float16": 0.1, "dynamic": 1, "int8": 1}[r["quantize"]]
            )
    assert results["model_fp16.tflite"]["size_bytes"] < 0.7 * results["model_fp32.tflite"]["size_bytes"]
    assert results["model_int8.tflite"]["size_bytes"] < 0.6 * results["model_fp32.tflite"]["size_bytes"]
    assert "size_ratio_to_fp32_tflite" in results["model_int8.tflite"]
    # Every file has its model card and labels, beside it or (SavedModel) inside it.
    for name in FILES[1:]:
        assert json.loads((export_dir / f"{name}.json").read_text())["file"] == name
    assert (export_dir / "savedmodel" / "labels.txt").exists()
    assert json.loads((export_dir / "savedmodel" / "model_card.json").read_text())["format"] == "savedmodel"


def snapshot(folder):
    """Every file of a folder tree and its bytes: to tell that an export was left exactly as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


@needs_tf_keras
def test_failed_proof_keeps_the_previous_export(
    export_dir, trained, data_tree, tmp_path, monkeypatch, capsys
):
    """A format that fails its proof: the report says so, nothing is published, the previous export stays.

    Issue 37 changed this contract: the command used to delete the previous export (so that it could not pass
    for this one); a failed proof now keeps it intact, and the error line says which proof failed and that the
    previous export is untouched. In process, with one format that copies the exported float32 TFLite file (no
    conversion) and an --atol it cannot meet.
    """
    root, _ = data_tree

    def copy_fp32(job, path):
        shutil.copyfile(export_dir / "model_fp32.tflite", path)
        return {}

    monkeypatch.setattr(
        export_main, "FORMATS", (Format("tflite", "float32", "model_fp32.tflite", copy_fp32),)
    )
    out = tmp_path / "out"
    shutil.copytree(export_dir, out)  # a previous, good export
    before = snapshot(out)
    argv = [str(trained["path"]), str(out), "--data-dir", str(root), "--atol", "1e-12"]
    with pytest.raises(
        ProofError, match=r"proof failed \(nothing written, the previous export at .* is untouched\)"
    ):
        export_main.main(argv)
    assert "Result: **FAIL**" in capsys.readouterr().out
    assert snapshot(out) == before
    assert temporaries(tmp_path) == []  # no temp folder


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds processes through /proc")
def test_killed_or_terminated_export_leaves_no_worker_and_no_temporaries(
    export_dir, trained, data_tree, tmp_path
):
    """`python -m export` killed while its worker converts (issue 37).

    SIGKILL: the worker process dies with the command (it used to run on, ~900 MB, parent 1), the previous
    export is intact, and the next export removes the temporary folder the killed one left. A second export to
    the same folder meanwhile is refused in one line; the killed one's lock does not block the next. SIGTERM:
    the command kills its worker, removes its temporary folder at once, says so in one line and exits 143.
    """
    root, _ = data_tree
    out = tmp_path / "out"
    shutil.copytree(export_dir, out)
    before = snapshot(out)
    args = ["export", trained["path"], out, "--data-dir", root, "--calib-images", "64", "--eval-images", "20"]
    env = {"KERAS_VIT_CACHE_DIR": str(tmp_path / "cache")}
    pause = "worker:tflite-float32"
    logs = tmp_path / "logs"
    logs.mkdir()

    killed = Background(args, pause=pause, log=logs / "killed.txt", env=env)
    try:
        killed.wait_for(f"paused at {pause}")
        assert len(killed.processes(settle=0)) >= 2  # the command and its worker
        busy = run(args, env=env)
        assert busy.returncode == 2, explain(busy)
        assert len(error_lines(busy)) == 1 and "another export is writing" in busy.stderr, explain(busy)
        killed.process.kill()
        killed.finish()
        assert killed.processes() == [], "the converter worker outlived the killed export"
    finally:
        killed.kill_leftovers()
    left = temporaries(tmp_path)
    assert left, "expected the killed export's temporary folder"
    assert snapshot(out) == before

    terminated = Background(args, pause=pause, log=logs / "terminated.txt", env=env)
    try:
        terminated.wait_for(f"paused at {pause}")  # the killed export's lock did not block this one
        assert not set(left) & set(temporaries(tmp_path)), "the next export kept the killed one's leftovers"
        assert any("removed what an interrupted export" in line for line in terminated.lines)
        terminated.process.terminate()
        assert terminated.finish() == 143, terminated.output()
        assert terminated.processes() == [], "the converter worker outlived the terminated export"
    finally:
        terminated.kill_leftovers()
    said = [line for line in terminated.lines if line.startswith(("interrupted", "error", "Traceback"))]
    assert len(said) == 1 and said[0].startswith("interrupted (SIGTERM)"), terminated.output()
    assert f"nothing of {out} was changed" in said[0]
    assert temporaries(tmp_path) == []
    assert snapshot(out) == before


@needs_tf_keras
def test_disk_full_while_writing_keeps_the_previous_export(
    small_disk, trained, data_tree, monkeypatch, capsys
):
    """The disk fills up during the export (a 2 MB tmpfs): one line, exit 2, the previous export as it was.

    In process, with one format that writes more than the disk holds after the free-space check passed.
    """
    root, _ = data_tree

    def write_too_much(job, path):
        with open(path, "wb") as f:
            for _ in range(4):
                f.write(bytes(1 << 20))
        return {}

    monkeypatch.setattr(export_main, "FORMATS", (Format("onnx", "float32", "model.onnx", write_too_much),))
    out = small_disk / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")  # a previous export
    (out / "model.onnx").write_bytes(b"the previous model")
    before = snapshot(out)
    argv = [str(trained["path"]), str(out), "--data-dir", str(root), "--eval-images", "20"]
    assert common.run_cli(export_main.main, argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the disk is full: writing onnx float32 failed"), (
        lines
    )
    assert f"nothing of {out} was changed" in lines[0]
    assert snapshot(out) == before
    assert temporaries(small_disk) == []
