"""Tests for keras_vit.device: the machine summary recorded beside measurements."""

import os
import platform
import subprocess
import sys

import pytest

from keras_vit.device import cpu_features, cpu_name, machine_summary, usable_cores


def test_machine_summary_names_the_cpu_cores_and_runtimes(monkeypatch):
    import numpy as np

    import keras_vit

    monkeypatch.delenv("ONEDNN_DEFAULT_FPMATH_MODE", raising=False)
    info = machine_summary()
    assert info["cpu"] == cpu_name() and info["cpu"]
    assert 1 <= info["cores_available"] == usable_cores() <= os.cpu_count() == info["cores_total"]
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "onnxruntime" in info and "keras" in info  # installed here: their versions are recorded
    assert info["keras_vit"] == keras_vit.__version__ and info["numpy"] == np.__version__
    assert info["cpu_features"] == cpu_features()
    # The variables that change TensorFlow's CPU arithmetic, where set.
    assert "onednn_default_fpmath_mode" not in info
    monkeypatch.setenv("ONEDNN_DEFAULT_FPMATH_MODE", "BF16")
    assert machine_summary()["onednn_default_fpmath_mode"] == "BF16"
    assert isinstance(info["load_average_1min"], float)


def test_machine_summary_without_a_load_average(monkeypatch):
    """Windows has no os.getloadavg: the AttributeError stopped every training at its last epoch and every export
    at its first model card."""
    monkeypatch.delattr(os, "getloadavg")
    assert "load_average_1min" not in machine_summary()


def test_cpu_features_are_the_flags_the_cpu_reports():
    """Read from /proc/cpuinfo's flags: every x86-64 CPU this project runs on has AVX2 and FMA."""
    if platform.machine() != "x86_64" or not os.path.exists("/proc/cpuinfo"):
        pytest.skip("the flags are read from a Linux x86-64 /proc/cpuinfo")
    features = cpu_features()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    assert features[:2] == ["avx2", "fma"] and all(feature in flags for feature in features)
    assert ("avx512f" in features) == ("avx512f" in flags) and ("amx_bf16" in features) == (
        "amx_bf16" in flags
    )


def test_module_needs_neither_keras_nor_tensorflow():
    code = (
        "import sys; import keras_vit.device as d; d.machine_summary(); "
        "bad = [m for m in ('keras', 'tensorflow') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
