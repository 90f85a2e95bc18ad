"""Tests for export/benchmark.py (and benchmarks/compare_latency.py, built on it)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from export_helpers import REPO, explain, run

from export.benchmark import timing_inputs
from export.common import ExportError

pytest_plugins = ["export_fixtures"]


def test_benchmark(export_dir, trained, tmp_path):
    out = tmp_path / "bench"
    proc = run(
        [
            "export.benchmark",
            export_dir,
            "--model",
            trained["path"],
            "--runs",
            "3",
            "--warmup",
            "1",
            "--batch",
            "4",
            "--throughput-runs",
            "2",
            "--rounds",
            "3",
            "--out",
            out,
        ]
    )
    assert proc.returncode == 0, explain(proc)
    report = json.loads((out / "benchmark.json").read_text())
    names = [r["name"] for r in report["results"]]
    assert names == [
        "Keras",
        "SavedModel",
        "TFLite fp32",
        "TFLite fp16",
        "TFLite dynamic",
        "TFLite int8",
        "ONNX Runtime",
    ]
    assert report["settings"]["rounds"] == 3
    for r in report["results"]:  # every format timed in each of the 3 rounds; the figure is their median
        assert len(r["latency_ms_median_by_round"]) == 3 and min(r["latency_ms_median_by_round"]) > 0
        assert r["latency_ms_median"] == pytest.approx(
            float(np.median(r["latency_ms_median_by_round"])), abs=1e-3
        )
        assert r["throughput_images_per_s"] == pytest.approx(
            float(np.median(r["throughput_images_per_s_by_round"])), abs=0.01
        )
    assert report["machine"]["cores_available"] >= 1 and report["machine"]["cpu"]
    assert (out / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "benchmark.md").read_text()
    assert "predict_on_batch" in text and "3 rounds over" in text
    bad = run(["export.benchmark", export_dir, "--rounds", "0", "--out", tmp_path / "none"])
    assert bad.returncode == 2 and "--rounds must be at least 1" in bad.stderr, explain(bad)


def test_timing_inputs_share_pixels_and_refuse_other_shapes():
    runners = [(None, np.dtype(np.float32), (8, 8, 3)), (None, np.dtype(np.uint8), (8, 8, 3))]
    floats, pixels = timing_inputs(runners, ["a.onnx", "b.tflite"], 4)
    assert (
        floats.shape == pixels.shape == (4, 8, 8, 3)
        and pixels.dtype == np.uint8
        and floats.dtype == np.float32
    )
    np.testing.assert_array_equal(floats, pixels)  # the same images, each file in its own input dtype
    with pytest.raises(
        ExportError, match="b.tflite takes images of shape \\(16, 16, 3\\), a.onnx \\(8, 8, 3\\)"
    ):
        timing_inputs([runners[0], (None, np.dtype(np.float32), (16, 16, 3))], ["a.onnx", "b.tflite"], 4)


def test_compare_latency_times_files_in_rounds(export_dir, tmp_path):
    script = REPO / "benchmarks" / "compare_latency.py"
    out = tmp_path / "latency.json"
    files = [export_dir / "model.onnx", export_dir / "model_fp32.tflite", export_dir / "model_int8.tflite"]
    proc = subprocess.run(
        [sys.executable, script, *files, "--rounds", "2", "--runs", "3", "--batch", "4", "--output", out],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [row["path"] for row in report["results"]] == [str(f) for f in files]
    for row in report["results"]:
        assert len(row["latency_ms_by_round"]) == 2 and min(row["latency_ms_by_round"]) > 0
        assert row["throughput_images_per_s_median_of_rounds"] > 0
    assert report["results"][0]["latency_ratio_to_first_median"] == 1.0
    assert report["settings"]["rounds"] == 2 and report["machine"]["cores_available"] >= 1
    assert "model_int8.tflite" in proc.stdout  # the table
    missing = subprocess.run(
        [sys.executable, script, files[0], tmp_path / "none.onnx"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_a_channels_first_peer_gets_the_same_pixels_transposed():
    runners = [(None, np.dtype(np.float32), (8, 6, 3)), (None, np.dtype(np.float32), (3, 8, 6))]
    ours, peer = timing_inputs(runners, ["model.onnx", "torch.onnx"], 2)
    assert peer.shape == (2, 3, 8, 6) and peer.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(peer, ours.transpose(0, 3, 1, 2))
    with pytest.raises(ExportError, match="not one model's files"):
        timing_inputs([runners[0], (None, np.dtype(np.float32), (3, 6, 8))], ["a", "b"], 2)


def test_a_signal_while_the_report_is_written_waits_until_all_of_it_is(tmp_path, monkeypatch, capsys):
    """Ctrl-C while the picture is drawn: the table and the JSON are still written, then the command exits 130
    saying its output is complete (it said that nothing was written, with benchmark.json already there)."""
    import os
    import signal

    from export import benchmark, common

    def plot(report, path):
        os.kill(os.getpid(), signal.SIGINT)
        with open(path, "wb") as f:
            f.write(b"png")

    monkeypatch.setattr(benchmark, "plot", plot)
    monkeypatch.setattr(benchmark, "markdown", lambda report: "table")
    assert common.run_cli(lambda argv: benchmark.write_report({"results": []}, str(tmp_path))) == 130
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "benchmark.json",
        "benchmark.md",
        "benchmark.png",
    ]
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"interrupted (SIGINT) after {tmp_path / 'benchmark.json'} was written (it is complete)"
    )


def test_a_report_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    """A full disk while the report is written: one `error:` line and exit 2, not a traceback."""
    import errno

    from export import benchmark, common

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(benchmark, "plot", lambda report, path: None)
    monkeypatch.setattr(benchmark, "markdown", lambda report: "table")
    monkeypatch.setattr(benchmark, "atomic_write_json", full)
    assert common.run_cli(lambda argv: benchmark.write_report({"results": []}, str(tmp_path))) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: cannot write the benchmark to {tmp_path}: No space left on device"
    )
