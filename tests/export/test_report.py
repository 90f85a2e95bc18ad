"""Tests for export/report.py: report.json and report.md of `python -m export`."""

import json

pytest_plugins = ["export_fixtures"]


def test_report_names_every_file_and_the_machine(export_dir):
    report = json.loads((export_dir / "report.json").read_text())
    markdown = (export_dir / "report.md").read_text()
    assert "PASS" in markdown and "model_int8.tflite" in markdown
    # Where the proofs ran (quantized scores depend a little on the CPU's kernels).
    assert report["machine"]["cpu"] and report["machine"]["cores_available"] >= 1
    assert f"- Machine: {report['machine']['cpu']}" in markdown
    assert set(report["io"]) == {r["file"] for r in report["formats"]}
    assert report["tflite_ops"] and report["int8_float_ops"] and report["strict_int8"] is False
