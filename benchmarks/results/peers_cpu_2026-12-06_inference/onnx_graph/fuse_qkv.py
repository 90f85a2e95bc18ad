"""Experiment (issue 38): one MatMul for each block's query, key and value, biases added before the reshape."""

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
groups = {}
for n in g.node:
    if (
        n.op_type == "MatMul"
        and n.input[1] in inits
        and any(p in n.name for p in ("/query_1/", "/key_1/", "/value_1/"))
    ):
        groups.setdefault(n.input[0], []).append(n)
remove, add_nodes, new_inits = [], [], []
fused = 0
for source, mats in groups.items():
    if len(mats) != 3:
        continue
    order = sorted(mats, key=lambda n: ("query" not in n.name, "key" not in n.name))  # q, k, v
    weights, biases, reshapes, bias_adds = [], [], [], []
    for mm in order:
        (reshape,) = consumers[mm.output[0]]
        (bias_add,) = consumers[reshape.output[0]]
        bias_name = [x for x in bias_add.input if x in inits][0]
        weights.append(numpy_helper.to_array(inits[mm.input[1]]))
        biases.append(numpy_helper.to_array(inits[bias_name]).reshape(-1))
        reshapes.append(reshape)
        bias_adds.append(bias_add)
    width = weights[0].shape[1]
    tag = f"qkv_fused_{fused}"
    new_inits += [
        numpy_helper.from_array(np.concatenate(weights, axis=1), f"{tag}_W"),
        numpy_helper.from_array(np.concatenate(biases), f"{tag}_b"),
        numpy_helper.from_array(np.array([width] * 3, np.int64), f"{tag}_split"),
    ]
    add_nodes += [
        helper.make_node("MatMul", [source, f"{tag}_W"], [f"{tag}_mm"], name=f"{tag}_MatMul"),
        helper.make_node("Add", [f"{tag}_mm", f"{tag}_b"], [f"{tag}_add"], name=f"{tag}_Add"),
        helper.make_node(
            "Split",
            [f"{tag}_add", f"{tag}_split"],
            [f"{tag}_{i}" for i in range(3)],
            axis=-1,
            name=f"{tag}_Split",
        ),
    ]
    for i, (mm, reshape, bias_add) in enumerate(zip(order, reshapes, bias_adds)):
        reshape.input[0] = f"{tag}_{i}"
        for n in consumers[bias_add.output[0]]:
            for j, x in enumerate(n.input):
                if x == bias_add.output[0]:
                    n.input[j] = reshape.output[0]
        remove += [mm, bias_add]
    fused += 1
kept = [n for n in g.node if all(n is not r for r in remove)]
# each fused group goes right before the first node that reads one of its outputs (the order stays topological)
out = []
by_source = {}
for n in add_nodes:
    by_source.setdefault(n.name.rsplit("_", 1)[0], []).append(n)
inserted = set()
for n in kept:
    for tag, nodes in by_source.items():
        if tag in inserted:
            continue
        if any(x.startswith(tag + "_") and not x.endswith(("_W", "_b", "_split")) for x in n.input):
            out += nodes
            inserted.add(tag)
    out.append(n)
del g.node[:]
g.node.extend(out)
g.initializer.extend(new_inits)
onnx.checker.check_model(m)
onnx.save(m, dst)
print("fused", fused, "blocks;", len(g.node), "nodes")
