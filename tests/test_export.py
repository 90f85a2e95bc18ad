"""Tests for export/: every format exports, loads in its own runtime and matches Keras.

A tiny ViT (`vit_micro`) is trained for a few seconds on a generated
10-class image tree (one color per class, plus noise), so its logits are far
from zero and its top-1 is confident: parity and quantized-accuracy checks
are meaningful, and stable. The CLIs run as subprocesses (exit codes,
one-line errors); the all-formats export runs once per module.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import cifar10_dir, run_python
from PIL import Image

import keras_vit
from export import runtime
from keras_vit.data import CIFAR10_CLASSES

REPO = Path(__file__).resolve().parents[1]
CLASSES = CIFAR10_CLASSES
PALETTE = np.array(
    [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
     (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (128, 128, 128)],
    np.float32,
)
N_TRAIN, N_TEST = 24, 10  # per class


def make_images(per_class, seed):
    """Class k: palette color k, random brightness, pixel noise. uint8 NHWC, int32 labels."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), per_class)
    base = PALETTE[y][:, None, None, :] * rng.uniform(0.8, 1.2, (len(y), 1, 1, 1))
    x = base + rng.normal(0, 25, (len(y), 32, 32, 3))
    return np.clip(x, 0, 255).round().astype(np.uint8), y.astype(np.int32)


def run(args, *, env=None, cwd=REPO, timeout=600):
    """Runs `python -m ...args` and returns the CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def explain(proc):
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"


def error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def no_data_env(tmp):
    """An environment in which no CIFAR-10 copy can be found (and nothing downloaded)."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {"HOME": str(home), "KERAS_HOME": str(home / ".keras"), "TFDS_DATA_DIR": str(home / "tfds"),
           "KERAS_VIT_CACHE_DIR": str(tmp / "cache"), "KERAS_VIT_DATA_DIR": ""}
    return env


# --------------------------------------------------------------------------
# Module fixtures: data tree, trained model, the all-formats export.


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def data_tree(work):
    """work/data/{train,test}/<CIFAR class>/*.png and the same arrays in memory."""
    root = work / "data"
    arrays = {"train": make_images(N_TRAIN, 0), "test": make_images(N_TEST, 1)}
    for split, (x, y) in arrays.items():
        for i, (image, label) in enumerate(zip(x, y)):
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:04d}.png")
    return root, arrays


@pytest.fixture(scope="module")
def trained(work, data_tree):
    """vit_micro trained to ~100% on the tree; `model.keras` + `labels.txt` in work/model."""
    _, arrays = data_tree
    x, y = arrays["train"]
    keras.utils.set_random_seed(0)
    model = keras_vit.build_vit("vit_micro")
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.astype("float32"), y, epochs=25, batch_size=32, verbose=0)
    x_test, y_test = arrays["test"]
    logits = np.asarray(model.predict(x_test.astype("float32"), verbose=0))
    assert (logits.argmax(1) == y_test).mean() >= 0.95, "the test model did not learn the toy task"
    folder = work / "model"
    folder.mkdir()
    model.save(folder / "model.keras")
    (folder / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    return {"model": model, "path": folder / "model.keras", "x_test": x_test, "y_test": y_test, "logits": logits}


@pytest.fixture(scope="module")
def export_dir(work, data_tree, trained):
    """`python -m export MODEL OUT` on the toy data: all formats, proven."""
    root, _ = data_tree
    out = work / "out"
    proc = run(["export", trained["path"], out, "--data-dir", root, "--calib-images", "64"],
               env={"KERAS_VIT_CACHE_DIR": str(work / "cache")})
    assert proc.returncode == 0, explain(proc)
    return out


# --------------------------------------------------------------------------
# The all-formats export.

FILES = ["savedmodel", "model_fp32.tflite", "model_fp16.tflite", "model_dynamic.tflite", "model_int8.tflite",
         "model.onnx"]


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
            assert r["keras_accuracy"] - r["accuracy"] <= {"float16": 0.1, "dynamic": 1, "int8": 1}[r["quantize"]]
    assert results["model_fp16.tflite"]["size_bytes"] < 0.7 * results["model_fp32.tflite"]["size_bytes"]
    assert results["model_int8.tflite"]["size_bytes"] < 0.6 * results["model_fp32.tflite"]["size_bytes"]
    assert "size_ratio_to_fp32_tflite" in results["model_int8.tflite"]
    markdown = (export_dir / "report.md").read_text()
    assert "PASS" in markdown and "model_int8.tflite" in markdown
    # Where the proofs ran (quantized scores depend a little on the CPU's kernels).
    assert report["machine"]["cpu"] and report["machine"]["cores_available"] >= 1
    assert f"- Machine: {report['machine']['cpu']}" in markdown
    card = json.loads((export_dir / "model_fp32.tflite.json").read_text())
    assert card["input"]["shape"] == [None, 32, 32, 3] and "0..255" in card["input"]["values"]
    assert "softmax" in card["output"]["values"]
    assert card["machine"]["cpu"] == report["machine"]["cpu"] and "ai_edge_litert" in card["machine"]
    assert (export_dir / "savedmodel" / "labels.txt").exists()


def test_tflite_files_use_builtin_ops_only(export_dir):
    """Patches (reshape/transpose), MultiHeadAttention and GELU lower to builtins."""
    for name in ["model_fp32", "model_fp16", "model_dynamic", "model_int8"]:
        card = json.loads((export_dir / f"{name}.tflite.json").read_text())
        ops = set(card["ops"])
        assert not [op for op in ops if "FLEX" in op.upper() or op == "CUSTOM"], ops
        assert {"TRANSPOSE", "BATCH_MATMUL", "SOFTMAX", "GELU"} <= ops, ops
        # The class token is broadcast to the (dynamic) batch, not added to a ZEROS_LIKE (no int8 kernel).
        assert "BROADCAST_TO" in ops and "ZEROS_LIKE" not in ops, ops


def test_tflite_graph_has_static_shapes_and_few_xnnpack_partitions(export_dir):
    """Token-wise Dense layers lower without run-time shape arithmetic (keras_vit.layers.dense_over_tokens).

    Keras' Dense on 3-D tokens would lower to tensordot: SHAPE, GATHER and REDUCE_PROD per layer, int32 ops
    that XNNPACK does not take, which split its graph (40 partitions for vit_cifar10 before; 3 now).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(export_dir / "model_fp32.tflite"))
    interpreter.allocate_tensors()  # applies the default delegate (XNNPACK)
    counts = {}
    for op in interpreter._get_ops_details():
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    assert "GATHER" not in counts and "REDUCE_PROD" not in counts, counts
    assert counts.get("SHAPE", 0) == 1, counts  # the class token's batch size only
    assert 1 <= counts["DELEGATE"] <= 3, counts


def test_int8_takes_raw_uint8_pixels_and_returns_int8_logits(export_dir):
    model = runtime.load(export_dir / "model_int8.tflite")
    assert model.input_dtype == np.uint8 and model.input_quantization == (1.0, 0)
    assert model.output_dtype == np.int8 and model.output_quantization[0] > 0
    card = json.loads((export_dir / "model_int8.tflite.json").read_text())
    assert card["input"]["dtype"] == "uint8" and card["input"]["quantization"] == {"scale": 1.0, "zero_point": 0}
    assert card["output"]["dtype"] == "int8" and "logit =" in card["output"]["values"]
    assert card["calibration"]["images"] == 64


def test_onnx_graph_is_standard_onnx_with_exact_gelu(export_dir):
    import onnx

    model = onnx.load(str(export_dir / "model.onnx"))
    ops = {node.op_type for node in model.graph.node}
    assert "Erf" in ops and "Erfc" not in ops  # exact GELU, via 1 - Erf
    assert "Expand" in ops and "ConstantOfShape" not in ops  # the class token broadcast, no zeros_like
    assert all(onnx.defs.has(node.op_type, node.domain) for node in model.graph.node)
    # Attention's einsums are static Transpose/MatMul, without the run-time shape arithmetic tf2onnx's einsum
    # decomposition adds per einsum (export/onnx.py); one Shape is left: the class token's batch size.
    counts = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    assert "Einsum" not in counts and "ReduceProd" not in counts and "Gather" not in counts, counts
    assert counts.get("Shape", 0) == 1, counts
    blocks = keras_vit.get_preset("vit_micro")["depth"]
    assert counts["MatMul"] >= 2 * blocks, counts
    # Every LayerNorm (two a block and the encoder's) is one ONNX LayerNormalization, none left as moments.
    assert counts.get("LayerNormalization") == 2 * blocks + 1, counts
    assert not {"GlobalAveragePool", "ReduceMean", "Sqrt", "Reciprocal"} & set(counts), counts
    card = json.loads((export_dir / "model.onnx.json").read_text())
    assert card["opset"] == 17 and "Transpose/MatMul" in card["attention"] and "Erf" in card["gelu"]
    assert card["layer_norm"] == f"{2 * blocks + 1} LayerNormalization ops"
    (image,), (logits,) = model.graph.input, model.graph.output
    assert (image.name, logits.name) == ("images", "logits")
    assert image.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in image.type.tensor_type.shape.dim[1:]] == [32, 32, 3]


@pytest.mark.parametrize("equation, expected", [
    ("BTNH,BSNH->BNTS", ([0, 2, 1, 3], [0, 2, 3, 1], [0, 1, 2, 3])),  # Keras' attention scores (TF backend)
    ("BNTS,BSNH->BTNH", ([0, 1, 2, 3], [0, 2, 1, 3], [0, 2, 1, 3])),  # and its weighted values
    ("aecd,abcd->acbe", ([0, 2, 1, 3], [0, 2, 3, 1], [0, 1, 3, 2])),  # MultiHeadAttention's own equations
    ("bij,bjk->bik", ([0, 1, 2], [0, 1, 2], [0, 1, 2])),
    ("ij,jk->ik", ([0, 1], [0, 1], [0, 1])),
    ("abc,cde->abde", None),  # two free indices in the second operand
    ("bij,bjk->bki", ([0, 1, 2], [0, 1, 2], [0, 2, 1])),
    ("bij,bij->bi", None),  # nothing free in either operand
    ("bii,bij->bj", None),  # a repeated index
    ("bij,bjk", None),  # no explicit output
    ("...ij,...jk->...ik", None),
    ("bij->bji", None),
])
def test_batched_matmul_permutations(equation, expected):
    from export.onnx import batched_matmul_permutations

    assert batched_matmul_permutations(equation) == expected
    if expected is not None:  # the plan computes the einsum
        rng = np.random.default_rng(0)
        operands, output = equation.lower().split("->")
        sizes = {index: 2 + i for i, index in enumerate(sorted(set(operands) - {","}))}
        a, b = (rng.normal(size=[sizes[i] for i in term]) for term in operands.split(","))
        perm_a, perm_b, perm_out = expected
        product = np.matmul(a.transpose(perm_a), b.transpose(perm_b)).transpose(perm_out)
        np.testing.assert_allclose(product, np.einsum(equation.lower(), a, b), atol=1e-12)


needs_tf_keras = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                    reason="in-process conversion needs Keras on TensorFlow")


@needs_tf_keras
def test_onnx_einsum_handler_converts_attention_and_falls_back():
    """Batched-matrix einsums become Transpose/MatMul without shape ops; any other einsum still converts."""
    import onnx
    import onnxruntime
    import tensorflow as tf
    from tf2onnx import convert as tf2onnx_convert

    from export.onnx import CUSTOM_OP_HANDLERS

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(5, 2, 3)).astype(np.float32)  # a constant in the graph (made inside the function)
    cases = {
        "BTNH,BSNH->BNTS": ([(None, 6, 2, 4), (None, 7, 2, 4)], lambda a, b: tf.einsum("BTNH,BSNH->BNTS", a, b)),
        "BNTS,BSNH->BTNH": ([(None, 2, 6, 7), (None, 7, 2, 4)], lambda a, b: tf.einsum("BNTS,BSNH->BTNH", a, b)),
        "abc,cde->abde": ([(None, 4, 5)], lambda a: tf.einsum("abc,cde->abde", a, tf.constant(weights))),
    }
    for equation, (shapes, function) in cases.items():
        signature = [tf.TensorSpec(shape, tf.float32) for shape in shapes]
        proto, _ = tf2onnx_convert.from_function(tf.function(function, input_signature=signature),
                                                 input_signature=signature, opset=17,
                                                 custom_op_handlers=CUSTOM_OP_HANDLERS)
        onnx.checker.check_model(proto, full_check=True)
        ops = {node.op_type for node in proto.graph.node}
        if equation != "abc,cde->abde":
            assert "MatMul" in ops and not ops & {"Einsum", "Shape", "Gather", "ReduceProd"}, (equation, ops)
        inputs = [rng.normal(size=(3, *shape[1:])).astype(np.float32) for shape in shapes]
        session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        (result,) = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), inputs)})
        np.testing.assert_allclose(result, function(*inputs).numpy(), atol=1e-5, err_msg=equation)


@needs_tf_keras
def test_flex_op_fails_loudly(tmp_path):
    """An op without a TFLite builtin is a conversion error naming the op, never a Flex op."""
    import tensorflow as tf

    from export import tflite
    from export.common import ExportError

    class Erfc(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32)])
        def serve(self, x):
            return {"y": tf.math.erfc(x)}

    module = Erfc()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    with pytest.raises(ExportError, match="not TFLite builtins: Erfc"):
        tflite.convert(str(tmp_path / "sm"), "none")


@needs_tf_keras
def test_int8_float_ops_default_and_strict(export_dir, data_tree, trained, tmp_path):
    """By default the class-token assembly and first LayerNorm stay float; --strict-int8 is integer throughout.

    keras_vit's LayerNorm computes `beta - mean * inv` where Keras' writes
    `-mean * inv + beta`: LiteRT's NEG has no int8 kernel, and each Keras
    LayerNormalization used to leave one float NEG. The class token is copied
    per image by BROADCAST_TO, which has an int8 kernel (the former
    `cls + zeros_like` left a float ZEROS_LIKE).
    """
    from export import tflite

    norms = sum(isinstance(layer, keras.layers.LayerNormalization) for layer in trained["model"]._flatten_layers())
    assert norms == 2 * 2 + 1  # vit_micro: depth 2, two norms a block, one before the head
    default = runtime.load(export_dir / "model_int8.tflite").float_ops()
    # patch_encoder's BROADCAST_TO, CONCATENATION, position ADD; block_0's attention_norm (MEAN,
    # SQUARED_DIFFERENCE, MEAN, ADD, RSQRT, MUL x3, SUB, ADD): no NEG anywhere.
    assert default == {"ADD": 3, "BROADCAST_TO": 1, "CONCATENATION": 1, "MEAN": 2, "MUL": 3, "RSQRT": 1,
                       "SQUARED_DIFFERENCE": 1, "SUB": 1}, default
    _, arrays = data_tree
    content = tflite.convert(str(export_dir / "savedmodel"), "int8", arrays["train"][0][:64], strict_int8=True)
    (tmp_path / "strict.tflite").write_bytes(content)
    strict = runtime.load(tmp_path / "strict.tflite")
    assert strict.float_ops() == {}, strict.float_ops()  # integer from input to output
    assert "NEG" not in strict.op_counts() and "DEQUANTIZE" not in strict.op_counts(), strict.op_counts()
    assert "BROADCAST_TO" in strict.op_counts() and "ZEROS_LIKE" not in strict.op_counts()
    assert strict.input_dtype == np.uint8 and strict.input_quantization == (1.0, 0)
    assert strict.output_dtype == np.int8


@pytest.mark.parametrize("name", ["model_fp32.tflite", "model_fp16.tflite", "model_dynamic.tflite",
                                  "model_int8.tflite", "model.onnx"])
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


@pytest.mark.parametrize("name", FILES)
def test_dynamic_batch(export_dir, trained, name):
    from export.verify import open_export

    model = open_export(str(export_dir / name))
    x, logits = trained["x_test"], trained["logits"]
    for n in (1, 7, 3):  # one runtime call per size; back down to check re-allocation
        out = model.predict(x[:n], batch_size=n)
        assert out.shape == (n, 10)
        if name in ("savedmodel", "model_fp32.tflite", "model.onnx"):
            np.testing.assert_allclose(out, logits[:n], atol=1e-4, rtol=0)
        else:
            np.testing.assert_array_equal(out.argmax(1), logits[:n].argmax(1))


def test_runtime_cli_needs_neither_tensorflow_nor_keras(export_dir, trained, tmp_path, data_tree):
    blocked = tmp_path / "blocked"
    for module in ("tensorflow", "keras", "keras_vit", "tf_keras"):
        (blocked / module).mkdir(parents=True)
        (blocked / module / "__init__.py").write_text(f"raise ImportError('{module} is blocked in this test')\n")
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
    proc = run(["export.runtime", export_dir / "model_fp32.tflite", images[0], "--tta", "flip", "--json"], env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout)[0]["top_k"][0]["label"] == expected[0], explain(proc)
    code = ("import sys, export.runtime as r; m = r.load(sys.argv[1]); "
            "bad = [k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras', 'keras_vit', 'tf2onnx')]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code, str(export_dir / "model_int8.tflite")],
                          env={**os.environ, **env}, capture_output=True, text=True)
    assert proc.returncode == 0, explain(proc)


def test_runtime_cli_errors(export_dir, tmp_path):
    bad_image = tmp_path / "bad.png"
    bad_image.write_bytes(b"not an image")
    cases = [
        ([export_dir / "model.onnx", tmp_path / "missing.png"], "does not exist"),
        ([export_dir / "model.onnx", bad_image], "cannot read image"),
        ([export_dir / "report.md", bad_image], "expected .tflite or .onnx"),
        ([export_dir / "model.onnx", bad_image, "--labels", tmp_path / "none.txt"], "labels file"),
    ]
    for args, message in cases:
        proc = run(["export.runtime", *args])
        assert proc.returncode == 1, explain(proc)
        assert len(error_lines(proc)) == 1 and message in proc.stderr, explain(proc)


def test_benchmark(export_dir, trained, tmp_path):
    out = tmp_path / "bench"
    proc = run(["export.benchmark", export_dir, "--model", trained["path"], "--runs", "3", "--warmup", "1",
                "--batch", "4", "--throughput-runs", "2", "--rounds", "3", "--out", out])
    assert proc.returncode == 0, explain(proc)
    report = json.loads((out / "benchmark.json").read_text())
    names = [r["name"] for r in report["results"]]
    assert names == ["Keras", "SavedModel", "TFLite fp32", "TFLite fp16", "TFLite dynamic", "TFLite int8",
                     "ONNX Runtime"]
    assert report["settings"]["rounds"] == 3
    for r in report["results"]:  # every format timed in each of the 3 rounds; the figure is their median
        assert len(r["latency_ms_median_by_round"]) == 3 and min(r["latency_ms_median_by_round"]) > 0
        assert r["latency_ms_median"] == pytest.approx(float(np.median(r["latency_ms_median_by_round"])), abs=1e-3)
        assert r["throughput_images_per_s"] == pytest.approx(
            float(np.median(r["throughput_images_per_s_by_round"])), abs=0.01)
    assert report["machine"]["cores_available"] >= 1 and report["machine"]["cpu"]
    assert (out / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "benchmark.md").read_text()
    assert "predict_on_batch" in text and "3 rounds over" in text
    bad = run(["export.benchmark", export_dir, "--rounds", "0", "--out", tmp_path / "none"])
    assert bad.returncode == 2 and "--rounds must be at least 1" in bad.stderr, explain(bad)


# --------------------------------------------------------------------------
# One-format CLIs.


def test_help_of_every_command():
    for module in ("export", "export.savedmodel", "export.tflite", "export.onnx", "export.runtime",
                   "export.benchmark"):
        proc = run([module, "--help"])
        assert proc.returncode == 0 and "usage:" in proc.stdout, explain(proc)
    assert "--opset" in run(["export.onnx", "--help"]).stdout
    assert "int8" in run(["export.tflite", "--help"]).stdout


def test_onnx_module_does_not_shadow_onnx_package():
    code = "import export.onnx, onnx; assert hasattr(onnx, 'ModelProto') and onnx.__name__ == 'onnx'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, explain(proc)


def test_tflite_cli_float16(trained, data_tree, tmp_path):
    root, _ = data_tree
    out = tmp_path / "sub" / "vit.tflite"  # a missing parent directory is created
    proc = run(["export.tflite", trained["path"], out, "--quantize", "float16", "--data-dir", root],
               env={"KERAS_VIT_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, explain(proc)
    assert "PASS tflite float16" in proc.stdout
    card = json.loads((out.parent / "vit.tflite.json").read_text())
    assert card["variant"] == "float16" and card["proof"]["passed"]
    assert (out.parent / "labels.txt").read_text().split() == list(CLASSES)


@pytest.mark.parametrize("variant", [dict(num_registers=1, patch_dropout=0.5),
                                     dict(shifted_patches=True, locality_attention=True),
                                     dict(pooling="seqpool")],
                         ids=["registers_patch_dropout", "shifted_locality", "seqpool"])
def test_model_variants_export(variant, data_tree, tmp_path):
    """ViTs with a register token (66 tokens in the GPU recipe), with shifted patches and locality attention, or
    with the seqpool head, convert to int8 TFLite and ONNX, proven."""
    root, arrays = data_tree
    x, y = arrays["train"]
    keras.utils.set_random_seed(1)
    model = keras_vit.build_vit("vit_micro", **variant)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.astype("float32"), y, epochs=15, batch_size=32, verbose=0)
    x_test = arrays["test"][0].astype("float32")
    logits = np.asarray(model.predict(x_test, verbose=0))
    assert np.abs(logits).max() > 1.0  # a trained model, not a vacuous comparison
    model.save(tmp_path / "variant.keras")
    env = {"KERAS_VIT_CACHE_DIR": str(tmp_path / "cache")}
    for module, out, extra, tolerance in (("export.tflite", "vit_int8.tflite", ["--quantize", "int8"], None),
                                          ("export.onnx", "vit.onnx", [], 1e-4)):
        proc = run([module, tmp_path / "variant.keras", tmp_path / out, "--data-dir", root, *extra], env=env)
        assert proc.returncode == 0, explain(proc)
        assert "PASS" in proc.stdout
        predicted = runtime.load(tmp_path / out).predict(x_test)
        if tolerance is None:  # int8: the same classes
            assert (predicted.argmax(1) == logits.argmax(1)).mean() >= 0.95
        else:
            np.testing.assert_allclose(predicted, logits, atol=tolerance, rtol=0)


def test_savedmodel_cli(trained, data_tree, tmp_path):
    import tensorflow as tf

    root, _ = data_tree
    out = tmp_path / "sm"
    proc = run(["export.savedmodel", trained["path"], out, "--data-dir", root],
               env={"KERAS_VIT_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, explain(proc)
    fn = tf.saved_model.load(str(out)).signatures["serving_default"]
    logits = fn(images=tf.constant(trained["x_test"][:4], tf.float32))["logits"].numpy()
    np.testing.assert_allclose(logits, trained["logits"][:4], atol=1e-4, rtol=0)
    assert (out / "labels.txt").exists() and (out / "model_card.json").exists()


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
def test_jax_trained_model_to_onnx_without_data(tmp_path):
    """A .keras file saved under JAX exports under TF; no images: random batch, said loudly."""
    script = (
        "import sys, numpy as np, keras, keras_vit\n"
        "assert keras.backend.backend() == 'jax'\n"
        "m = keras_vit.build_vit('vit_micro')\n"
        "rng = np.random.default_rng(0)\n"
        "head = m.get_layer('head')\n"
        "head.kernel.assign(rng.normal(0, 0.5, head.kernel.shape).astype('float32'))\n"
        "x = rng.uniform(0, 255, (5, 32, 32, 3)).astype('float32')\n"
        "np.savez(sys.argv[2], x=x, logits=np.asarray(m.predict(x, verbose=0)))\n"
        "m.save(sys.argv[1])\n"
    )
    model, ref = tmp_path / "jax.keras", tmp_path / "ref.npz"
    proc = run_python(script, model, ref, timeout=None)
    assert proc.returncode == 0, explain(proc)

    out = tmp_path / "jax.onnx"
    # KERAS_BACKEND=jax in the environment: the CLI must still use TensorFlow.
    proc = run(["export.onnx", model, out, "--opset", "13"], cwd=tmp_path,
               env={**no_data_env(tmp_path), "KERAS_BACKEND": "jax"})
    assert proc.returncode == 0, explain(proc)
    assert "NO REAL IMAGES" in proc.stdout + proc.stderr
    assert "CIFAR-10 class names" in proc.stdout  # no labels.txt beside: 10 outputs -> CIFAR names, with a note
    card = json.loads((tmp_path / "jax.onnx.json").read_text())
    assert card["proof"]["real_images"] is False and card["opset"] == 13
    assert card["layer_norm"].startswith("decomposed")  # ONNX LayerNormalization is opset 17
    import onnx

    assert "LayerNormalization" not in {node.op_type for node in onnx.load(str(out)).graph.node}
    data = np.load(ref)
    out_logits = runtime.load(out).predict(data["x"])
    assert np.abs(data["logits"]).max() > 0.1  # not a vacuous comparison
    np.testing.assert_allclose(out_logits, data["logits"], atol=1e-4, rtol=0)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
def test_keras_imported_with_other_backend_is_a_clear_error(trained):
    code = ("import keras, sys\n"
            "from export import common, tflite\n"
            "sys.exit(common.run_cli(tflite.main, [sys.argv[1], sys.argv[2]]))\n")
    proc = run_python(code, trained["path"], "/tmp/unused-keras-vit.tflite", timeout=None, cwd=REPO)
    assert proc.returncode == 1, explain(proc)
    assert "'jax' backend" in proc.stderr and len(error_lines(proc)) == 1, explain(proc)


def test_real_cifar10_parity(trained, tmp_path):
    """Parity on real CIFAR-10 test images (KERAS_VIT_DATA_DIR), a few hundred of them."""
    root = cifar10_dir()
    if not root:
        pytest.skip("no CIFAR-10 copy (set KERAS_VIT_DATA_DIR)")
    out = tmp_path / "real.tflite"
    proc = run(["export.tflite", trained["path"], out, "--data-dir", root, "--eval-images", "200"],
               env={"KERAS_VIT_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, explain(proc)
    proof = json.loads((tmp_path / "real.tflite.json").read_text())["proof"]
    assert proof["real_images"] and proof["images"] == 200 and proof["max_abs_diff"] <= 1e-4


def test_resolve_labels(tmp_path):
    from export.common import ExportError, resolve_labels

    model = tmp_path / "m.keras"
    labels, source = resolve_labels(model, 10)
    assert labels == list(CLASSES) and source.startswith("note")  # no file: CIFAR-10 names, said so
    with pytest.raises(ExportError, match="--labels"):
        resolve_labels(model, 3)
    (tmp_path / "m.labels.txt").write_text("a\nb\nc\n")  # the shipped-model twin
    assert resolve_labels(model, 3)[0] == ["a", "b", "c"]
    (tmp_path / "labels.txt").write_text("x\ny\nz\n\n")  # keras_vit.train's file wins
    assert resolve_labels(model, 3)[0] == ["x", "y", "z"]
    (tmp_path / "given.txt").write_text("p\nq\n")
    with pytest.raises(ExportError, match="2 labels but the model has 3"):
        resolve_labels(model, 3, tmp_path / "given.txt")


# --------------------------------------------------------------------------
# Bad input: one clear line on stderr, non-zero exit, nothing written.


def test_failed_proof_leaves_no_file(trained, data_tree, tmp_path):
    root, _ = data_tree
    out = tmp_path / "model.onnx"
    out.write_bytes(b"an older export")  # must not survive: it would pass for this one
    proc = run(["export.onnx", trained["path"], out, "--data-dir", root, "--atol", "1e-12"],
               env={"KERAS_VIT_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 1, explain(proc)
    assert "FAIL onnx float32" in proc.stdout and "max|dlogit|" in proc.stdout  # the numbers
    assert "proof failed" in proc.stderr and len(error_lines(proc)) == 1, explain(proc)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no temp files, cards or labels


@pytest.fixture(scope="module")
def odd_models(work):
    """A corrupt .keras (zip, wrong content), garbage bytes, and a model with unknown input size."""
    folder = work / "odd"
    folder.mkdir()
    with zipfile.ZipFile(folder / "corrupt.keras", "w") as z:
        z.writestr("config.json", "{not json")
    (folder / "garbage.keras").write_bytes(b"\x00garbage" * 10)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(10)(x)).save(folder / "any_size.keras")
    return folder


@pytest.mark.parametrize("case", ["missing", "garbage", "corrupt", "unknown_quantize", "unwritable", "int8_no_data",
                                  "unknown_input_shape", "bad_opset", "not_an_export_dir"])
def test_bad_input(case, trained, odd_models, tmp_path):
    model = trained["path"]
    env = no_data_env(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = tmp_path / "out.tflite"
    args, message, status = {
        "missing": (["export.tflite", tmp_path / "nope.keras", out], "does not exist", 1),
        "garbage": (["export.tflite", odd_models / "garbage.keras", out], "not a .keras file", 1),
        "corrupt": (["export.tflite", odd_models / "corrupt.keras", out], "cannot load", 1),
        "unknown_quantize": (["export.tflite", model, out, "--quantize", "int4"], "invalid choice: 'int4'", 2),
        "unwritable": (["export.tflite", model, blocker / "out.tflite"], "cannot create output directory", 1),
        "int8_no_data": (["export.tflite", model, out, "--quantize", "int8"], "calibration images", 1),
        "unknown_input_shape": (["export.onnx", odd_models / "any_size.keras", tmp_path / "o.onnx"],
                                "unknown height", 1),
        "bad_opset": (["export.onnx", model, tmp_path / "o.onnx", "--opset", "21"], "--opset", 2),
        "not_an_export_dir": (["export", model, tmp_path], "is not a previous export", 1),
    }[case]
    proc = run(args, env=env, cwd=tmp_path)
    assert proc.returncode == status, explain(proc)
    lines = error_lines(proc)
    assert len(lines) == 1 and message in lines[0], explain(proc)
    assert "Traceback" not in proc.stderr, explain(proc)
    assert not out.exists() and not (tmp_path / "o.onnx").exists()


def test_tta_views_shift_by_one_pixel_with_reflection():
    from conftest import reference_tta_views

    images = np.random.default_rng(0).integers(0, 256, (3, 6, 5, 3), dtype=np.uint8)
    for tta, count in (("none", 1), ("flip", 2), ("flip-shift", 10)):
        views = list(runtime.tta_views(images, tta))
        assert len(views) == count == runtime.TTA_VIEW_COUNTS[tta]
        for view, expected in zip(views, reference_tta_views(images, tta)):
            np.testing.assert_array_equal(view, expected)
            assert view.flags["C_CONTIGUOUS"] and view.dtype == np.uint8
    # Ten different views: no shift is repeated or the identity.
    views = list(runtime.tta_views(images, "flip-shift"))
    assert len({view.tobytes() for view in views}) == 10
    with pytest.raises(runtime.RuntimeModelError, match="tta"):
        list(runtime.tta_views(images, "rotate"))


def test_tta_accuracies_score_every_prefix():
    labels = np.array([0, 1, 1])
    # View 0 gets one image right, flip two, the ten views all three.
    views = [np.array([[2.0, 0.0], [1.0, 0.0], [1.0, 0.0]]), np.array([[0.0, 1.0], [0.0, 3.0], [0.0, 0.0]])]
    views += [np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])] * 8
    assert runtime.tta_accuracies(views[:1], labels) == {"none": pytest.approx(1 / 3)}
    assert runtime.tta_accuracies(views[:2], labels) == {"none": pytest.approx(1 / 3), "flip": pytest.approx(2 / 3)}
    assert runtime.tta_accuracies(views, labels)["flip-shift"] == 1.0


def test_tta_exports_benchmark_scores_exported_files(export_dir, trained, tmp_path):
    from conftest import reference_tta_views

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


def test_timing_inputs_share_pixels_and_refuse_other_shapes():
    from export.benchmark import timing_inputs
    from export.common import ExportError

    runners = [(None, np.dtype(np.float32), (8, 8, 3)), (None, np.dtype(np.uint8), (8, 8, 3))]
    floats, pixels = timing_inputs(runners, ["a.onnx", "b.tflite"], 4)
    assert floats.shape == pixels.shape == (4, 8, 8, 3) and pixels.dtype == np.uint8 and floats.dtype == np.float32
    np.testing.assert_array_equal(floats, pixels)  # the same images, each file in its own input dtype
    with pytest.raises(ExportError, match="b.tflite takes images of shape \\(16, 16, 3\\), a.onnx \\(8, 8, 3\\)"):
        timing_inputs([runners[0], (None, np.dtype(np.float32), (16, 16, 3))], ["a.onnx", "b.tflite"], 4)


def test_compare_latency_times_files_in_rounds(export_dir, tmp_path):
    script = REPO / "benchmarks" / "compare_latency.py"
    out = tmp_path / "latency.json"
    files = [export_dir / "model.onnx", export_dir / "model_fp32.tflite", export_dir / "model_int8.tflite"]
    proc = subprocess.run([sys.executable, script, *files, "--rounds", "2", "--runs", "3", "--batch", "4",
                           "--output", out], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [row["path"] for row in report["results"]] == [str(f) for f in files]
    for row in report["results"]:
        assert len(row["latency_ms_by_round"]) == 2 and min(row["latency_ms_by_round"]) > 0
        assert row["throughput_images_per_s_median_of_rounds"] > 0
    assert report["results"][0]["latency_ratio_to_first_median"] == 1.0
    assert report["settings"]["rounds"] == 2 and report["machine"]["cores_available"] >= 1
    assert "model_int8.tflite" in proc.stdout  # the table
    missing = subprocess.run([sys.executable, script, files[0], tmp_path / "none.onnx"], capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode == 2 and "not found" in missing.stderr
