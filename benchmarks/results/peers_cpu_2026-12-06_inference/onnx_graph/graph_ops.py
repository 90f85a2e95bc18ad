"""Op histogram of ONNX files, as written and after ONNX Runtime's own graph optimisation."""

import collections
import os
import sys
import tempfile

import onnx
import onnxruntime as ort


def hist(path):
    m = onnx.load(path)
    c = collections.Counter(n.op_type for n in m.graph.node)
    return len(m.graph.node), c


for path in sys.argv[1:]:
    n, c = hist(path)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    out = tempfile.mktemp(suffix=".onnx")
    so.optimized_model_filepath = out
    so.intra_op_num_threads = 2
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    n2, c2 = hist(out)
    os.remove(out)
    print(f"== {path}: {n} nodes as written, {n2} after ORT")
    print("  written:", dict(c.most_common()))
    print("  ORT    :", dict(c2.most_common()))
