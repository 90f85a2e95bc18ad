"""Tests for export/step.py: the per-format step (convert, prove, model card) every command runs."""

import argparse
import shutil

import pytest
from export_helpers import CLASSES, needs_tf_keras

from export import common, verify
from export.step import Format, Job, export_format, write_sidecars
from export.tflite import read_io

pytest_plugins = ["export_fixtures"]


@pytest.fixture(scope="module")
def job(trained):
    """A `Job` for the trained model and its test images (no conversion: the formats below copy files)."""
    data = common.Data(trained["x_test"], trained["y_test"], None, "the toy test images", True, [])
    args = argparse.Namespace(model=str(trained["path"]), atol=None)
    model = trained["model"]
    return Job(
        args,
        "unused",
        model,
        common.model_io(model),
        list(CLASSES),
        "labels from the test",
        data,
        verify.Reference(model, data),
    )


def copying(source):
    def convert(job, path):
        shutil.copyfile(source, path)
        return {"runtime": "a copy"}

    return convert


@needs_tf_keras
def test_export_format_converts_proves_and_documents(export_dir, job, tmp_path):
    fmt = Format("tflite", "float32", "model_fp32.tflite", copying(export_dir / "model_fp32.tflite"))
    path = tmp_path / ".tmp.tflite"
    result, card = export_format(fmt, job, str(path), file_name="vit.tflite")
    assert result["passed"] and result["name"] == "tflite float32" and result["max_abs_diff"] <= 1e-4
    assert card["format"] == "tflite" and card["variant"] == "float32" and card["file"] == "vit.tflite"
    assert card["runtime"] == "a copy" and card["proof"] is result
    assert card["labels"] == list(CLASSES) and card["input"]["dtype"] == "float32"
    assert card["labels_file"] == "vit.labels.txt"  # its own labels beside it (issue 37)
    write_sidecars(tmp_path / "vit.tflite", fmt, job.labels, card)
    assert (tmp_path / "vit.labels.txt").read_text().split() == list(CLASSES)
    assert (tmp_path / "vit.tflite.json").exists() and not (tmp_path / "labels.txt").exists()
    write_sidecars(tmp_path / "all" / "model_fp32.tflite", fmt, job.labels, card, shared_labels=True)
    assert (tmp_path / "all" / "labels.txt").read_text().split() == list(CLASSES)  # python -m export's folder


@needs_tf_keras
def test_quantized_format_is_proven_by_accuracy_and_reads_its_io(export_dir, job, tmp_path):
    fmt = Format(
        "tflite", "int8", "model_int8.tflite", copying(export_dir / "model_int8.tflite"), read_io=read_io
    )
    result, card = export_format(fmt, job, str(tmp_path / "q.tflite"), file_name="q.tflite")
    assert result["passed"] and result["quantize"] == "int8" and "accuracy_drop" in result
    assert card["input"]["dtype"] == "uint8" and card["output"]["dtype"] == "int8"


@needs_tf_keras
def test_failed_proof_is_a_result_not_an_error(export_dir, job, tmp_path, monkeypatch):
    fmt = Format("onnx", "float32", "model.onnx", copying(export_dir / "model.onnx"))
    monkeypatch.setattr(job.args, "atol", 1e-12)
    result, _ = export_format(fmt, job, str(tmp_path / "m.onnx"), file_name="m.onnx")
    assert not result["passed"] and "max |logit diff|" in result["failures"][0]
    with pytest.raises(verify.ProofError, match="proof failed"):
        verify.require_pass([result])
