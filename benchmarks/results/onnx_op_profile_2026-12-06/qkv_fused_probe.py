"""One block's q, k and v projections in ONNX Runtime: three MatMul + Add (keras_vit's export) against one MatMul
of three times the width + Add + Split (timm's layout), width 192, 65 tokens, 2 threads, 7 interleaved rounds.

    python benchmarks/results/onnx_op_profile_2026-12-06/qkv_fused_probe.py
"""

import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

WIDTH, TOKENS = 192, 65
rng = np.random.default_rng(0)


def projections(fused):
    """The serialized model: input x (batch, TOKENS, WIDTH), outputs q, k, v."""
    nodes, weights = [], []
    if fused:
        weights += [
            numpy_helper.from_array(rng.normal(size=(WIDTH, 3 * WIDTH)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.normal(size=3 * WIDTH).astype(np.float32), "bias"),
            numpy_helper.from_array(np.array([WIDTH] * 3, np.int64), "split"),
        ]
        nodes += [
            helper.make_node("MatMul", ["x", "w"], ["m"]),
            helper.make_node("Add", ["m", "bias"], ["a"]),
            helper.make_node("Split", ["a", "split"], ["q", "k", "v"], axis=2),
        ]
    else:
        for name in "qkv":
            weights += [
                numpy_helper.from_array(rng.normal(size=(WIDTH, WIDTH)).astype(np.float32), "w" + name),
                numpy_helper.from_array(rng.normal(size=WIDTH).astype(np.float32), "b" + name),
            ]
            nodes += [
                helper.make_node("MatMul", ["x", "w" + name], ["m" + name]),
                helper.make_node("Add", ["m" + name, "b" + name], [name]),
            ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", TOKENS, WIDTH])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in "qkv"]
    graph = helper.make_graph(nodes, "projections", inputs, outputs, weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


for batch in (64, 1):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    sessions = {
        fused: ort.InferenceSession(projections(fused), options, providers=["CPUExecutionProvider"])
        for fused in (False, True)
    }
    x = rng.normal(size=(batch, TOKENS, WIDTH)).astype(np.float32)
    times = {False: [], True: []}
    calls = 20 if batch > 1 else 500
    for _ in range(7):
        for fused, session in sessions.items():
            for _ in range(3):
                session.run(None, {"x": x})
            start = time.perf_counter()
            for _ in range(calls):
                session.run(None, {"x": x})
            times[fused].append(1000 * (time.perf_counter() - start) / calls)
    three, one = np.median(times[False]), np.median(times[True])
    print(f"batch {batch}: three {three:.3f} ms, fused {one:.3f} ms, three over fused {three / one:.2f}x")
