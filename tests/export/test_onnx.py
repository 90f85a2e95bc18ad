"""Tests for export/onnx.py: standard ONNX with exact GELU, static attention matmuls, fused layer norms."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf
from conftest import run_python
from export_helpers import REPO, explain, needs_tf_keras, no_data_env, run
from tf2onnx import convert as tf2onnx_convert

import keras_vit
from export import runtime
from export.onnx import CUSTOM_OP_HANDLERS, CUSTOM_REWRITERS, batched_matmul_permutations

pytest_plugins = ["export_fixtures"]


def test_onnx_graph_is_standard_onnx_with_exact_gelu(export_dir, tmp_path):
    model = onnx.load(str(export_dir / "model.onnx"))
    ops = {node.op_type for node in model.graph.node}
    assert "Erf" in ops and "Erfc" not in ops  # exact GELU, as 1 + Erf(x / sqrt(2))
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
    assert card["opset"] == 17 and "Transpose/MatMul" in card["attention"] and "Gelu" in card["gelu"]
    # ONNX Runtime's graph optimiser fuses every block's GELU into one kernel.
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    onnxruntime.InferenceSession(str(export_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    optimized = [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]
    assert optimized.count("Gelu") + optimized.count("BiasGelu") == blocks and "Erf" not in optimized, (
        optimized
    )
    assert card["layer_norm"] == f"{2 * blocks + 1} LayerNormalization ops"
    (image,), (logits,) = model.graph.input, model.graph.output
    assert (image.name, logits.name) == ("images", "logits")
    assert image.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in image.type.tensor_type.shape.dim[1:]] == [32, 32, 3]


@pytest.mark.parametrize(
    "equation, expected",
    [
        (
            "BTNH,BSNH->BNTS",
            ([0, 2, 1, 3], [0, 2, 3, 1], [0, 1, 2, 3]),
        ),  # Keras' attention scores (TF backend)
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
    ],
)
def test_batched_matmul_permutations(equation, expected):
    assert batched_matmul_permutations(equation) == expected
    if expected is not None:  # the plan computes the einsum
        rng = np.random.default_rng(0)
        operands, output = equation.lower().split("->")
        sizes = {index: 2 + i for i, index in enumerate(sorted(set(operands) - {","}))}
        a, b = (rng.normal(size=[sizes[i] for i in term]) for term in operands.split(","))
        perm_a, perm_b, perm_out = expected
        product = np.matmul(a.transpose(perm_a), b.transpose(perm_b)).transpose(perm_out)
        np.testing.assert_allclose(product, np.einsum(equation.lower(), a, b), atol=1e-12)


@needs_tf_keras
def test_onnx_einsum_handler_converts_attention_and_falls_back():
    """Batched-matrix einsums become Transpose/MatMul without shape ops; any other einsum still converts."""

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(5, 2, 3)).astype(
        np.float32
    )  # a constant in the graph (made inside the function)
    cases = {
        "BTNH,BSNH->BNTS": (
            [(None, 6, 2, 4), (None, 7, 2, 4)],
            lambda a, b: tf.einsum("BTNH,BSNH->BNTS", a, b),
        ),
        "BNTS,BSNH->BTNH": (
            [(None, 2, 6, 7), (None, 7, 2, 4)],
            lambda a, b: tf.einsum("BNTS,BSNH->BTNH", a, b),
        ),
        "abc,cde->abde": ([(None, 4, 5)], lambda a: tf.einsum("abc,cde->abde", a, tf.constant(weights))),
    }
    for equation, (shapes, function) in cases.items():
        signature = [tf.TensorSpec(shape, tf.float32) for shape in shapes]
        proto, _ = tf2onnx_convert.from_function(
            tf.function(function, input_signature=signature),
            input_signature=signature,
            opset=17,
            custom_op_handlers=CUSTOM_OP_HANDLERS,
        )
        onnx.checker.check_model(proto, full_check=True)
        ops = {node.op_type for node in proto.graph.node}
        if equation != "abc,cde->abde":
            assert "MatMul" in ops and not ops & {"Einsum", "Shape", "Gather", "ReduceProd"}, (equation, ops)
        inputs = [rng.normal(size=(3, *shape[1:])).astype(np.float32) for shape in shapes]
        session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        (result,) = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), inputs)})
        np.testing.assert_allclose(result, function(*inputs).numpy(), atol=1e-5, err_msg=equation)


def test_exact_gelu_exports_as_the_form_onnx_runtime_fuses():
    """TensorFlow's `0.5 * x * erfc(-x / sqrt(2))` becomes `1 + erf(x / sqrt(2))`, equal to TensorFlow's GELU
    over the whole float32 range, and ONNX Runtime runs it as one Gelu kernel."""
    signature = [tf.TensorSpec((None, 6), tf.float32)]
    function = tf.function(lambda x: tf.nn.gelu(x, approximate=False), input_signature=signature)
    proto, _ = tf2onnx_convert.from_function(
        function,
        input_signature=signature,
        opset=17,
        custom_op_handlers=CUSTOM_OP_HANDLERS,
        custom_rewriter=CUSTOM_REWRITERS,
    )
    ops = [node.op_type for node in proto.graph.node]
    assert "Div" in ops and "Erf" in ops and "Sub" not in ops and "Neg" not in ops, ops
    x = np.concatenate(
        [np.linspace(-12, 12, 997), [-3e38, -1e4, -40, -1e-30, 0, 1e-30, 40, 1e4, 3e38]]
    ).astype(np.float32)
    x = np.resize(x, (len(x) // 6 * 6,)).reshape(-1, 6)
    expected = function(x).numpy()
    options = onnxruntime.SessionOptions()
    for level in (
        onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL,
        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
    ):
        options.graph_optimization_level = level
        session = onnxruntime.InferenceSession(
            proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        (result,) = session.run(None, {session.get_inputs()[0].name: x})
        np.testing.assert_allclose(result, expected, rtol=2e-6, atol=1e-7, err_msg=str(level))


def test_onnx_module_does_not_shadow_onnx_package():
    code = "import export.onnx, onnx; assert hasattr(onnx, 'ModelProto') and onnx.__name__ == 'onnx'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, explain(proc)


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
    proc = run(
        ["export.onnx", model, out, "--opset", "13"],
        cwd=tmp_path,
        env={**no_data_env(tmp_path), "KERAS_BACKEND": "jax"},
    )
    assert proc.returncode == 0, explain(proc)
    assert "NO REAL IMAGES" in proc.stdout + proc.stderr
    assert (
        "CIFAR-10 class names" in proc.stdout
    )  # no labels.txt beside: 10 outputs -> CIFAR names, with a note
    card = json.loads((tmp_path / "jax.onnx.json").read_text())
    assert card["proof"]["real_images"] is False and card["opset"] == 13
    assert card["layer_norm"].startswith("decomposed")  # ONNX LayerNormalization is opset 17

    assert "LayerNormalization" not in {node.op_type for node in onnx.load(str(out)).graph.node}
    data = np.load(ref)
    out_logits = runtime.load(out).predict(data["x"])
    assert np.abs(data["logits"]).max() > 0.1  # not a vacuous comparison
    np.testing.assert_allclose(out_logits, data["logits"], atol=1e-4, rtol=0)


def test_the_last_block_computes_only_the_class_token(export_dir):
    """The exported graph's last block queries one token (`class_token_forward`), the others every token; the
    model card says so."""
    proto = onnx.load(str(export_dir / "model.onnx"))
    softmaxes = [node.output[0] for node in proto.graph.node if node.op_type == "Softmax"]
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in softmaxes)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    images = np.zeros((2, 32, 32, 3), "float32")
    *_, first, last = session.run(None, {"images": images})
    tokens = first.shape[-1]
    assert first.shape[:1] + first.shape[2:] == (2, tokens, tokens) and tokens > 16
    assert last.shape == first.shape[:2] + (1, tokens)
    card = json.loads((export_dir / "model.onnx.json").read_text())
    assert card["last_block"] == "the tokens the head reads"


def test_ort_attention_fuses_every_block_and_passes_the_proof(export_dir, data_tree, trained, tmp_path):
    """`--ort-attention`: every block's attention is one com.microsoft op (`Attention`; `MultiHeadAttention` in
    the last block, which queries the class token only); the file passes the usual proof and computes what the
    standard file does."""
    root, _ = data_tree
    out = tmp_path / "fused.onnx"
    proc = run(["export.onnx", trained["path"], out, "--data-dir", root, "--ort-attention"])
    assert proc.returncode == 0, explain(proc)
    blocks = keras_vit.get_preset("vit_micro")["depth"]
    fused = onnx.load(str(out))
    ops = [(node.domain, node.op_type) for node in fused.graph.node]
    assert ops.count(("com.microsoft", "Attention")) == blocks - 1, ops
    assert ops.count(("com.microsoft", "MultiHeadAttention")) == 1, ops
    assert ("", "Softmax") not in ops and ops.count(("", "Transpose")) == 1, (
        ops
    )  # only the patches' transpose
    card = json.loads((tmp_path / "fused.onnx.json").read_text())
    expected = f"com.microsoft {blocks - 1} Attention + 1 MultiHeadAttention ops (ONNX Runtime only)"
    assert card["attention"] == expected and card["last_block"] == "the tokens the head reads"
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    standard = onnxruntime.InferenceSession(
        str(export_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    ort = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(
        ort.run(None, {"images": images})[0], standard.run(None, {"images": images})[0], atol=1e-5
    )


def test_ort_attention_refuses_a_graph_it_cannot_fuse(tmp_path):
    """No silent fallback: an attention it does not match (LSA's learned temperature and diagonal mask) is an
    error, and no file is written."""
    model = keras_vit.build_vit("vit_micro", locality_attention=True)
    model.save(tmp_path / "lsa.keras")
    proc = run(
        ["export.onnx", tmp_path / "lsa.keras", tmp_path / "lsa.onnx", "--ort-attention"],
        env=no_data_env(tmp_path),
    )
    assert proc.returncode != 0
    assert "--ort-attention matched no attention block" in proc.stderr, explain(proc)
    assert not (tmp_path / "lsa.onnx").exists()
