"""Experiment (issue 38): each block's MLP as 3-D MatMul + Add, without the Reshapes to 2-D and back."""

import sys

import onnx

src, dst = sys.argv[1], sys.argv[2]
m = onnx.load(src)
g = m.graph
consumers = {}
for n in g.node:
    for x in n.input:
        consumers.setdefault(x, []).append(n)
producer = {o: n for n in g.node for o in n.output}
removed = []
for n in g.node:
    if n.op_type != "MatMul" or not n.name.endswith(("mlp_hidden_1/MatMul", "mlp_output_1/MatMul")):
        continue
    before = producer.get(n.input[0])
    if before is not None and before.op_type == "Reshape":  # 3-D -> 2-D (or 2-D -> 2-D) before the product
        n.input[0] = before.input[0]
        if all(c is n for c in consumers[before.output[0]]):
            removed.append(before)
    if n.name.endswith("mlp_output_1/MatMul"):
        (bias,) = consumers[n.output[0]]
        (after,) = consumers[bias.output[0]]
        if after.op_type == "Reshape":  # 2-D -> 3-D after it: its readers read the bias Add
            for c in consumers[after.output[0]]:
                c.input[:] = [bias.output[0] if x == after.output[0] else x for x in c.input]
            removed.append(after)
kept = [n for n in g.node if all(n is not r for r in removed)]
del g.node[:]
g.node.extend(kept)
onnx.checker.check_model(m)
onnx.save(m, dst)
print("removed", len(removed), "Reshapes;", len(g.node), "nodes")
