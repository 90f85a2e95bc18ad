"""The GPU scripts, run end to end on the CPU with JAX on a tiny setting.

GPU time is scarce: a script that breaks there wastes a whole session, so
the exact script the GPU run uses is exercised here with small numbers.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_scripts_parse():
    for script in ("gpu_cifar10.sh", "gpu_session.sh"):
        result = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
def test_gpu_cifar10_script_on_cpu(tiny_tree, tmp_path):
    out = tmp_path / "gpu"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
           "DATA": str(tiny_tree), "OUT": str(out), "PRESET": "vit_micro", "HEADS": "4", "BATCH": "32",
           "STEPS": "2", "TRAIN_BUDGET": "600", "MAX_EPOCHS": "2"}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_cifar10.sh")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    throughput = json.loads((out / "throughput.jsonl").read_text().splitlines()[-1])
    assert throughput["num_heads"] == 4 and throughput["repeats"] == 3 and throughput["images_per_second"] > 0
    assert throughput["precision"] == "mixed_bfloat16" and throughput["backend"] == "jax"
    metrics = json.loads((out / "vit_micro" / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["args"]["augment"] == "lee2021" and metrics["args"]["time_limit"] == 355
    assert 0.0 <= metrics["test_accuracy_flip_tta"] <= 1.0
    assert (out / "vit_micro" / "model.keras").stat().st_size > 0


def test_throughput_help():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--help"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0 and "--steps-per-execution" in result.stdout
