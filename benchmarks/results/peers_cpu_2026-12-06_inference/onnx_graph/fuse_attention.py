"""Experiment (issue 38): each block's attention as ONNX Runtime's fused CPU kernel (com.microsoft Attention)."""

import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

src, dst = sys.argv[1], sys.argv[2]
m = onnx.load(src)
g = m.graph
inits = {i.name: i for i in g.initializer}
consumers = {}
for n in g.node:
    for x in n.input:
        consumers.setdefault(x, []).append(n)
by_name = {n.name: n for n in g.node}
blocks = sorted({n.name.split("/attention_1/")[0] for n in g.node if "/attention_1/query_1/MatMul" in n.name})
removed, added, new_inits = [], [], []
for index, block in enumerate(blocks):

    def node(suffix):
        return by_name[f"{block}/attention_1/{suffix}"]

    weights, biases = [], []
    for part in ("query_1", "key_1", "value_1"):
        mm = node(f"{part}/MatMul")
        weights.append(numpy_helper.to_array(inits[mm.input[1]]))
        add = node(f"{part}/Add")
        biases.append(numpy_helper.to_array(inits[[x for x in add.input if x in inits][0]]).reshape(-1))
        removed += [mm, node(f"{part}/Reshape_1"), add]
    source = node("query_1/MatMul").input[0]
    # The query bias is (heads, head size): its first axis is the head count.
    heads = [numpy_helper.to_array(inits[x]).shape for x in node("query_1/Add").input if x in inits][0][0]
    removed += [
        node("mul"),
        node("transpose"),
        node("transpose_1"),
        node("transpose_2"),
        node("MatMul"),
        node("Softmax"),
        node("MatMul_1"),
        node("transpose_3"),
        node("attention_output_1/Reshape"),
    ]
    out_proj = node("attention_output_1/MatMul")
    tag = f"fused_attention_{index}"
    new_inits += [
        numpy_helper.from_array(np.concatenate(weights, axis=1), f"{tag}_W"),
        numpy_helper.from_array(np.concatenate(biases), f"{tag}_b"),
    ]
    attention = helper.make_node(
        "Attention",
        [source, f"{tag}_W", f"{tag}_b"],
        [f"{tag}_out"],
        name=tag,
        domain="com.microsoft",
        num_heads=int(heads),
    )
    out_proj.input[0] = f"{tag}_out"
    added.append((out_proj, attention))
kept = []
for n in g.node:
    if any(n is r for r in removed):
        continue
    for out_proj, attention in added:
        if n is out_proj:
            kept.append(attention)
    kept.append(n)
del g.node[:]
g.node.extend(kept)
g.initializer.extend(new_inits)
m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
onnx.save(m, dst)
print("fused", len(blocks), "attention blocks;", len(g.node), "nodes")
