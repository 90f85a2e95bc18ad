"""Tests for export/runtime.py: the exported files in the TF-free runtime, its CLI, test-time augmentation.

The views and scores of test-time augmentation themselves: tests/test_tta.py.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import reference_tta_views
from export_helpers import CLASSES, REPO, error_lines, explain, run
from PIL import Image

from export import runtime

pytest_plugins = ["export_fixtures"]


@pytest.mark.parametrize(
    "name",
    ["model_fp32.tflite", "model_fp16.tflite", "model_dynamic.tflite", "model_int8.tflite", "model.onnx"],
)
def test_runtime_matches_keras(export_dir, trained, name):
    model = runtime.load(export_dir / name)
    x, logits = trained["x_test"], trained["logits"]
    out = model.predict(x)
    if name in ("model_fp32.tflite", "model.onnx"):
        np.testing.assert_allclose(out, logits, atol=1e-4, rtol=0)
    # The toy task has large margins: every format keeps every top-1.
    np.testing.assert_array_equal(out.argmax(1), logits.argmax(1))
    labels = runtime.read_labels(runtime.default_labels_path(model.path))
    top = runtime.classify(model, x[:5], labels, top_k=3)
    assert [t[0]["label"] for t in top] == [CLASSES[i] for i in logits[:5].argmax(1)]
    assert all(len(t) == 3 and 0.0 <= t[2]["probability"] <= t[0]["probability"] <= 1.0 for t in top)
    # Test-time flip: the softmax of the mean of the image's and its mirror's logits.
    flipped = runtime.classify(model, x[:5], labels, top_k=1, tta="flip")
    expected = runtime.softmax((out[:5] + model.predict(x[:5, :, ::-1])) / 2.0)
    np.testing.assert_allclose([t[0]["probability"] for t in flipped], expected.max(1), rtol=1e-5)
    with pytest.raises(runtime.RuntimeModelError, match="tta"):
        runtime.classify(model, x[:1], labels, tta="rotate")


def test_runtime_cli_needs_neither_tensorflow_nor_keras(export_dir, trained, tmp_path, data_tree):
    # keras_vit's Keras-free modules (image decoder, labels, metrics, tta) are the runtime's; its Keras parts
    # would import the blocked keras. A device installs numpy, Pillow and a runtime, not the training's filelock.
    blocked = tmp_path / "blocked"
    for module in ("tensorflow", "keras", "tf_keras", "filelock"):
        (blocked / module).mkdir(parents=True)
        (blocked / module / "__init__.py").write_text(
            f"raise ImportError('{module} is blocked in this test')\n"
        )
    env = {"PYTHONPATH": os.pathsep.join([str(blocked), str(REPO)])}
    # Bigger images than the model's input: the runtime resizes them.
    images = []
    for i in range(3):
        path = tmp_path / f"image{i}.png"
        Image.fromarray(trained["x_test"][i * 10]).resize((64, 64), Image.Resampling.NEAREST).save(path)
        images.append(path)
    expected = [CLASSES[trained["logits"][i * 10].argmax()] for i in range(3)]
    for name in ("model_int8.tflite", "model.onnx", "model_fp32.tflite"):
        proc = run(["export.runtime", export_dir / name, *images, "--top-k", "2", "--json"], env=env)
        assert proc.returncode == 0, explain(proc)
        result = json.loads(proc.stdout)
        assert [r["top_k"][0]["label"] for r in result] == expected
    # The table output, and a module-level check that nothing heavy got imported.
    proc = run(["export.runtime", export_dir / "model.onnx", images[0]], env=env)
    assert proc.returncode == 0 and expected[0] in proc.stdout, explain(proc)
    proc = run(
        ["export.runtime", export_dir / "model_fp32.tflite", images[0], "--tta", "flip", "--json"], env=env
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)[0]["top_k"][0]["label"] == expected[0], explain(
        proc
    )
    code = (
        "import sys, export.runtime as r; m = r.load(sys.argv[1]); "
        "bad = [k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx')]; "
        "assert not bad, bad"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(export_dir / "model_int8.tflite")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, explain(proc)


def test_runtime_cli_errors(export_dir, tmp_path):
    bad_image = tmp_path / "bad.png"
    bad_image.write_bytes(b"not an image")
    cases = [  # an image that fails: 1, as predict; a model or labels file it cannot use: 2, bad input
        ([export_dir / "model.onnx", tmp_path / "missing.png"], "does not exist", 1),
        ([export_dir / "model.onnx", bad_image], "cannot read image", 1),
        ([export_dir / "report.md", bad_image], "expected .tflite or .onnx", 2),
        ([export_dir / "model.onnx", bad_image, "--labels", tmp_path / "none.txt"], "labels file", 2),
    ]
    for args, message, status in cases:
        proc = run(["export.runtime", *args])
        assert proc.returncode == status, explain(proc)
        assert len(error_lines(proc)) == 1 and message in proc.stderr, explain(proc)


def test_tta_exports_benchmark_scores_exported_files(export_dir, trained, tmp_path):
    spec = importlib.util.spec_from_file_location("tta_exports", REPO / "benchmarks" / "tta_exports.py")
    tta_exports = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tta_exports)
    x, y = trained["x_test"], trained["y_test"]
    row = tta_exports.measure(export_dir / "model_fp32.tflite", x, y)
    assert row["views"] == 10 and row["images"] == len(y)
    assert row["accuracy"] == pytest.approx(float(np.mean(trained["logits"].argmax(1) == y)))
    model = runtime.load(export_dir / "model_fp32.tflite")
    views = [model.predict(view) for view in reference_tta_views(x, "flip-shift")]
    assert row["accuracy_flip_tta"] == pytest.approx(float(np.mean((views[0] + views[1]).argmax(1) == y)))
    assert row["accuracy_flip_shift_tta"] == pytest.approx(float(np.mean(np.mean(views, 0).argmax(1) == y)))
    flip_only = tta_exports.measure(export_dir / "model_fp32.tflite", x, y, "flip")
    assert flip_only["views"] == 2 and "accuracy_flip_shift_tta" not in flip_only


def test_the_runtimes_default_to_the_usable_cores(monkeypatch, tmp_path):
    """Without `num_threads`, a runtime gets `keras_vit.device.usable_cores()` threads (one function for both)."""
    ort = pytest.importorskip("onnxruntime")
    threads = []

    def session(path, options, providers):
        threads.append(options.intra_op_num_threads)
        raise RuntimeError("stop here: the thread count is all this test needs")

    monkeypatch.setattr(runtime, "usable_cores", lambda: 3)
    monkeypatch.setattr(ort, "InferenceSession", session)
    (tmp_path / "model.onnx").write_bytes(b"")
    for num_threads, expected in ((None, 3), (2, 2)):
        with pytest.raises(runtime.RuntimeModelError):
            runtime.ONNXModel(tmp_path / "model.onnx", num_threads)
        assert threads.pop() == expected
    assert not hasattr(runtime, "default_threads")
