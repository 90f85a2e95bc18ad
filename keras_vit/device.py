"""The machine a measurement ran on: the CPU, its usable cores, the runtime versions.

Free of Keras and TensorFlow: the TF-free runtime `export.runtime` uses it. What
Keras' backend computes on is `keras_vit.training.pipeline.describe_device`.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

# Versions worth recording beside a measurement, when installed.
_PACKAGES = ("keras_vit", "numpy", "tensorflow", "keras", "jax", "torch", "ai_edge_litert", "onnxruntime")
# The variables that change the arithmetic of TensorFlow's CPU kernels (oneDNN on or off, its bfloat16 math).
_NUMERICS_VARIABLES = ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_DEFAULT_FPMATH_MODE")


def _cpuinfo(field):
    """The value of `field` for the first CPU in the Linux `/proc/cpuinfo` (case-insensitive), or None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what `platform` knows."""
    name = _cpuinfo("model name")
    return name if name is not None else platform.processor() or platform.machine()


# The CPU's vector and matrix extensions that decide which kernels TensorFlow, oneDNN and XNNPACK run.
_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_features() -> list:
    """Which of `_FEATURES` the CPU reports (the Linux `/proc/cpuinfo` flags; empty elsewhere), in that order."""
    flags = set((_cpuinfo("flags") or "").split())
    return [feature for feature in _FEATURES if feature in flags]


def usable_cores() -> int:
    """Number of CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The system's load average over the last minute, rounded to 0.01; None where there is none (Windows)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # Windows has no os.getloadavg
        return None


def machine_summary() -> dict:
    """CPU, cores, platform, Python, the load and the installed runtime versions.

    Returns:
        dict with `cpu`, `cpu_features` (`cpu_features()`), `cores_available`,
        `cores_total`, `platform`, `python`, `load_average_1min` (where the
        OS has it), `tf_enable_onednn_opts` and `onednn_default_fpmath_mode`
        (the variables, where set) and one key per installed package of
        `keras_vit`, `numpy`, `tensorflow`, `keras`, `jax`, `torch`,
        `ai_edge_litert`, `onnxruntime`.
    """
    info = {
        "cpu": cpu_name(),
        "cpu_features": cpu_features(),
        "cores_available": usable_cores(),
        "cores_total": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    load = load_average()  # other jobs on a shared machine make timings noisy: record how busy it was
    if load is not None:
        info["load_average_1min"] = load
    for variable in _NUMERICS_VARIABLES:
        if variable in os.environ:
            info[variable.lower()] = os.environ[variable]
    for package in _PACKAGES:
        try:
            info[package] = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            pass
    return info
