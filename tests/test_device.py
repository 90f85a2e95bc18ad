"""Tests for keras_vit.device: the machine summary recorded beside measurements."""

import os
import subprocess
import sys

from keras_vit.device import cpu_name, machine_summary, usable_cores


def test_machine_summary_names_the_cpu_cores_and_runtimes():
    info = machine_summary()
    assert info["cpu"] == cpu_name() and info["cpu"]
    assert 1 <= info["cores_available"] == usable_cores() <= os.cpu_count() == info["cores_total"]
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "onnxruntime" in info and "keras" in info  # installed here: their versions are recorded


def test_module_needs_neither_keras_nor_tensorflow():
    code = (
        "import sys; import keras_vit.device as d; d.machine_summary(); "
        "bad = [m for m in ('keras', 'tensorflow') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
