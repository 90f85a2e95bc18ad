"""Tests for export/__main__.py, `python -m export`: every format written, proven and reported."""

import json
import os
import shutil

import pytest
from export_helpers import CLASSES, FILES, N_TEST, needs_tf_keras

from export import __main__ as export_main
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


@needs_tf_keras
def test_failed_proof_publishes_nothing_and_removes_the_previous_export(
    export_dir, trained, data_tree, tmp_path, monkeypatch, capsys
):
    """A format that fails its proof: the report says so, nothing is published, an older export is removed.

    In process, with one format that copies the exported float32 TFLite file (no conversion) and an --atol
    it cannot meet.
    """
    root, _ = data_tree

    def copy_fp32(job, path):
        shutil.copyfile(export_dir / "model_fp32.tflite", path)
        return {}

    monkeypatch.setattr(
        export_main, "FORMATS", (Format("tflite", "float32", "model_fp32.tflite", copy_fp32),)
    )
    out = tmp_path / "out"
    shutil.copytree(export_dir, out)  # a previous export: it must not pass for this one
    with pytest.raises(ProofError, match="proof failed, nothing written: tflite float32: max"):
        export_main.main([str(trained["path"]), str(out), "--data-dir", str(root), "--atol", "1e-12"])
    printed = capsys.readouterr()
    assert "Result: **FAIL**" in printed.out and "removed the previous export" in printed.err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no temp folder
