"""keras_vit/__init__.py: TensorFlow's oneDNN kernels on unless the user chose, the public names on first use."""

import os

import pytest
from conftest import run_python

ONEDNN_STATE = (
    "import os, keras_vit; from tensorflow.python.util import _pywrap_util_port as port; "
    "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], port.IsMklEnabled())"
)


@pytest.mark.parametrize("chosen, expected", [(None, "1 True"), ("0", "0 False"), ("1", "1 True")])
def test_tensorflow_runs_onednn_unless_the_user_turned_it_off(chosen, expected, monkeypatch):
    """TensorFlow turns oneDNN on by itself only on some CPUs; importing keras_vit first turns it on everywhere,
    and an explicit `TF_ENABLE_ONEDNN_OPTS` wins."""
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    env = {} if chosen is None else {"TF_ENABLE_ONEDNN_OPTS": chosen}
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ
    proc = run_python(ONEDNN_STATE, backend="tensorflow", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[-2] == expected, proc.stdout
