"""Tests for export/tflite.py: builtin ops only, static shapes, int8 input/output, selective int8, the CLI."""

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from conftest import cifar10_dir
from export_helpers import CLASSES, explain, needs_tf_keras, run
from PIL import Image

import keras_vit
from export import runtime, tflite
from export.common import ExportError

pytest_plugins = ["export_fixtures"]


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
    that XNNPACK does not take, which split its graph into dozens of partitions.
    """
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
    assert card["input"]["dtype"] == "uint8" and card["input"]["quantization"] == {
        "scale": 1.0,
        "zero_point": 0,
    }
    assert card["output"]["dtype"] == "int8" and "logit =" in card["output"]["values"]
    assert card["calibration"]["images"] == 64


@needs_tf_keras
@pytest.mark.parametrize("pooling", ["gap", "seqpool"])
def test_registers_without_class_token_run_under_xnnpack(pooling, tmp_path):
    """Registers with a mean-pooled head (no class token): the float32 file runs under LiteRT's default delegate.

    With no class token the registers go first; inserting them after an empty `tokens[:, :0]` lowered to a
    zero-length STRIDED_SLICE in the CONCATENATION, and XNNPACK then failed to reshape the next RESHAPE
    ("XNNPack delegate failed to reshape runtimeNode"), in every quantize mode.
    """
    from export import common, savedmodel

    keras.utils.set_random_seed(2)
    model = keras_vit.build_vit("vit_micro", num_registers=1, pooling=pooling)
    savedmodel.export_savedmodel(model, common.model_io(model), str(tmp_path / "sm"))
    path = tmp_path / "vit.tflite"
    path.write_bytes(tflite.convert(str(tmp_path / "sm"), "none"))
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    logits = np.asarray(model(x))
    exported = runtime.load(path, num_threads=1)  # the default delegate (XNNPACK) applied
    for batch in (1, 3):  # a resize of the dynamic batch re-runs XNNPACK's reshape
        np.testing.assert_allclose(
            exported.predict(x[:batch], batch_size=batch), logits[:batch], atol=1e-4, rtol=0
        )


@needs_tf_keras
def test_flex_op_fails_loudly(tmp_path):
    """An op without a TFLite builtin is a conversion error naming the op, never a Flex op."""

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
    """By default the class-token assembly and first LayerNorm stay float; --strict-int8: integer throughout.

    keras_vit's LayerNorm computes `beta - mean * inv` where Keras' writes
    `-mean * inv + beta`: LiteRT's NEG has no int8 kernel, and each Keras
    LayerNormalization used to leave one float NEG. The class token is copied
    per image by BROADCAST_TO, which has an int8 kernel (the former
    `cls + zeros_like` left a float ZEROS_LIKE).
    """
    norms = sum(
        isinstance(layer, keras.layers.LayerNormalization) for layer in trained["model"]._flatten_layers()
    )
    assert norms == 2 * 2 + 1  # vit_micro: depth 2, two norms a block, one before the head
    default = runtime.load(export_dir / "model_int8.tflite").float_ops()
    # patch_encoder's BROADCAST_TO, CONCATENATION, position ADD; block_0's attention_norm (MEAN,
    # SQUARED_DIFFERENCE, MEAN, ADD, RSQRT, MUL x3, SUB, ADD): no NEG anywhere.
    assert default == {
        "ADD": 3,
        "BROADCAST_TO": 1,
        "CONCATENATION": 1,
        "MEAN": 2,
        "MUL": 3,
        "RSQRT": 1,
        "SQUARED_DIFFERENCE": 1,
        "SUB": 1,
    }, default
    _, arrays = data_tree
    content = tflite.convert(
        str(export_dir / "savedmodel"), "int8", arrays["train"][0][:64], strict_int8=True
    )
    (tmp_path / "strict.tflite").write_bytes(content)
    strict = runtime.load(tmp_path / "strict.tflite")
    assert strict.float_ops() == {}, strict.float_ops()  # integer from input to output
    assert "NEG" not in strict.op_counts() and "DEQUANTIZE" not in strict.op_counts(), strict.op_counts()
    assert "BROADCAST_TO" in strict.op_counts() and "ZEROS_LIKE" not in strict.op_counts()
    assert strict.input_dtype == np.uint8 and strict.input_quantization == (1.0, 0)
    assert strict.output_dtype == np.int8


def test_tflite_cli_float16_beside_another_model(trained, data_tree, export_dir, tmp_path):
    """A one-format export into a folder where another model lives writes its own `<name>.labels.txt` and
    leaves the other model's `labels.txt` alone (issue 37: it used to overwrite it, and the other model then
    got this one's names); the runtime finds each model's names."""
    root, arrays = data_tree
    folder = tmp_path / "sub"
    folder.mkdir()
    other_names = [f"other_{i}" for i in range(10)]
    (folder / "labels.txt").write_text("".join(f"{name}\n" for name in other_names))
    shutil.copyfile(export_dir / "model_fp32.tflite", folder / "first.tflite")  # the other model
    out = folder / "vit.tflite"
    proc = run(
        ["export.tflite", trained["path"], out, "--quantize", "float16", "--data-dir", root],
        env={"KERAS_VIT_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, explain(proc)
    assert "PASS tflite float16" in proc.stdout
    card = json.loads((folder / "vit.tflite.json").read_text())
    assert (
        card["variant"] == "float16" and card["proof"]["passed"] and card["labels_file"] == "vit.labels.txt"
    )
    assert (folder / "vit.labels.txt").read_text().split() == list(CLASSES)
    assert (folder / "labels.txt").read_text().split() == other_names  # untouched
    assert not [p.name for p in folder.iterdir() if ".tmp-" in p.name]  # nor the temporary SavedModel
    image = tmp_path / "image.png"
    Image.fromarray(arrays["test"][0][0]).save(image)
    for model, names in (("vit.tflite", CLASSES), ("first.tflite", other_names)):
        proc = run(["export.runtime", folder / model, image, "--json", "--top-k", "1"])
        assert proc.returncode == 0, explain(proc)
        assert json.loads(proc.stdout)[0]["top_k"][0]["label"] in names, (model, proc.stdout)


def test_real_cifar10_parity(trained, tmp_path):
    """Parity on real CIFAR-10 test images (KERAS_VIT_DATA_DIR), a few hundred of them."""
    root = cifar10_dir()
    if not root:
        pytest.skip("no CIFAR-10 copy (set KERAS_VIT_DATA_DIR)")
    out = tmp_path / "real.tflite"
    proc = run(
        ["export.tflite", trained["path"], out, "--data-dir", root, "--eval-images", "200"],
        env={"KERAS_VIT_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, explain(proc)
    proof = json.loads((tmp_path / "real.tflite.json").read_text())["proof"]
    assert proof["real_images"] and proof["images"] == 200 and proof["max_abs_diff"] <= 1e-4
