"""Each block's attention as ONNX Runtime's fused CPU/GPU kernel (`com.microsoft` `Attention`), for ONNX Runtime targets.

`export/onnx.py` writes attention as standard ONNX: three projections, each reshaped to heads and given its
bias, scaled scores, `Softmax`, the weighted sum and the heads' merge. ONNX Runtime's optimiser does not match
that pattern; `fuse_attention` replaces it, block by block, with one `Attention` node (the three kernels side by
side, the three biases, the head count), the same function. `com.microsoft` ops run in ONNX Runtime only, so the
fused file is an opt-in (`python -m export.onnx --ort-attention`); the export's proof runs it as any other file.

A last block cut down to the class token (`keras_vit.models.class_token_forward`) queries fewer tokens than it
attends to; its attention becomes ONNX Runtime's `MultiHeadAttention` (query, key and value projected by
three `MatMul`s, their biases and the head count in the op), which takes a query of its own length.
"""

from __future__ import annotations

import numpy as np

ORT_DOMAIN = "com.microsoft"


class _Graph:
    """The producers, readers and constant initializers of an ONNX graph, for matching."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.producer = {output: node for node in graph.node for output in node.output}
        self.readers = {}
        for node in graph.node:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)

    def only_reader(self, node, op_type):
        """The single node reading `node`'s output, if it is an `op_type`; else None."""
        readers = self.readers.get(node.output[0], [])
        return readers[0] if len(readers) == 1 and readers[0].op_type == op_type else None

    def source(self, name, op_type):
        """The node producing `name`, if it is an `op_type` read by nothing else; else None."""
        node = self.producer.get(name)
        if node is None or node.op_type != op_type or len(self.readers.get(name, [])) != 1:
            return None
        return node

    def constant_input(self, node):
        """The one constant among `node`'s inputs, and the other input: `(array, name)`, or None."""
        constants = [name for name in node.input if name in self.constants]
        others = [name for name in node.input if name not in self.constants]
        if len(constants) != 1 or len(others) != 1:
            return None
        return self.constants[constants[0]], others[0]


def _perm(node):
    from onnx import helper

    return [list(helper.get_attribute_value(a)) for a in node.attribute if a.name == "perm"][0]


def _one_token_swap(graph, reshape, perm, token_axis):
    """`reshape` if it is the heads' `[0, 2, 1, 3]` transpose of a one-token sequence, which tf2onnx writes as
    a `Reshape` (the token axis, of length 1, at `token_axis` of its constant shape); else None."""
    shape = reshape and graph.constants.get(reshape.input[1])
    if shape is None or perm != [0, 2, 1, 3] or shape.ndim != 1 or shape[token_axis] != 1:
        return None
    return reshape


def _projection(graph, name, perm, scaled=False):
    """Walks `Transpose(perm) <- [Mul(scale) <-] Add(bias) <- Reshape(heads) <- MatMul(x, kernel)` up from `name`.

    Returns:
        `(nodes, x, kernel (width, heads * size), bias (heads * size,), heads, size, scale)`, or None where the
        pattern does not hold.
    """
    transpose = graph.source(name, "Transpose")
    if transpose is None or _perm(transpose) != perm:
        transpose = _one_token_swap(graph, graph.source(name, "Reshape"), perm, token_axis=2)
    if transpose is None:
        return None
    nodes, below, scale = [transpose], transpose.input[0], None
    if scaled:
        mul = graph.source(below, "Mul")
        found = mul and graph.constant_input(mul)
        if not found or found[0].size != 1:
            return None
        scale, below = float(found[0].reshape(())), found[1]
        nodes.append(mul)
    add = graph.source(below, "Add")
    bias = add and graph.constant_input(add)
    reshape = bias and graph.source(bias[1], "Reshape")
    matmul = reshape and graph.source(reshape.input[0], "MatMul")
    kernel = matmul and graph.constant_input(matmul)
    if not kernel or bias[0].ndim != 2 or kernel[0].ndim != 2:
        return None
    heads, size = bias[0].shape
    if kernel[0].shape[1] != heads * size:
        return None
    nodes += [add, reshape, matmul]
    return nodes, kernel[1], kernel[0], bias[0].reshape(-1), heads, size, scale


def fuse_attention(proto):
    """Replaces every matched attention in `proto` (in place) by a `com.microsoft` `Attention` node (or
    `MultiHeadAttention` where the queries are fewer than the keys).

    Args:
        proto: an `onnx.ModelProto` written by `export.onnx.convert`.

    Returns:
        The number of attention blocks fused (0: the file is unchanged).
    """
    from onnx import helper, numpy_helper

    graph = _Graph(proto.graph)
    fused, removed, placed = 0, set(), {}
    for softmax in [n for n in proto.graph.node if n.op_type == "Softmax"]:
        scores = graph.source(softmax.input[0], "MatMul")
        weighted = graph.only_reader(softmax, "MatMul")
        merged = weighted and graph.only_reader(weighted, "Transpose")
        if merged is not None and _perm(merged) == [0, 2, 1, 3]:
            merge = graph.only_reader(merged, "Reshape")
        else:  # one query token: the heads' transpose and merge are one Reshape to (batch, 1, width)
            merged = None
            merge = weighted and _one_token_swap(
                graph, graph.only_reader(weighted, "Reshape"), [0, 2, 1, 3], 1
            )
        if not (scores and merge and weighted.input[0] == softmax.output[0]):
            continue
        query = _projection(graph, scores.input[0], [0, 2, 1, 3], scaled=True)
        key = _projection(graph, scores.input[1], [0, 2, 3, 1])
        value = _projection(graph, weighted.input[1], [0, 2, 1, 3])
        if not (query and key and value) or key[1] != value[1]:
            continue
        if len({part[4] for part in (query, key, value)}) != 1:
            continue
        heads, size, scale = query[4], query[5], query[6]
        name = f"ort_attention_{fused}"
        attributes = {"num_heads": int(heads)}
        if not np.isclose(scale, 1.0 / np.sqrt(size), rtol=1e-6):
            attributes["scale"] = scale
        bias = numpy_helper.from_array(
            np.concatenate([query[3], key[3], value[3]]).astype(np.float32), f"{name}/qkv_bias"
        )
        if query[1] == key[1]:  # self-attention: one op projects and attends
            kernel = np.concatenate([query[2], key[2], value[2]], axis=1).astype(np.float32)
            proto.graph.initializer.extend([numpy_helper.from_array(kernel, f"{name}/qkv_kernel"), bias])
            inputs = [query[1], f"{name}/qkv_kernel", f"{name}/qkv_bias"]
            placed[id(merge)] = [
                helper.make_node(
                    "Attention", inputs, [merge.output[0]], name=name, domain=ORT_DOMAIN, **attributes
                )
            ]
        else:  # fewer queries than keys: project each, then ONNX Runtime's MultiHeadAttention
            projections = []
            for part, role in ((query, "query"), (key, "key"), (value, "value")):
                kernel = numpy_helper.from_array(part[2].astype(np.float32), f"{name}/{role}_kernel")
                proto.graph.initializer.append(kernel)
                projections.append(
                    helper.make_node(
                        "MatMul", [part[1], kernel.name], [f"{name}/{role}"], name=f"{name}/{role}_projection"
                    )
                )
            proto.graph.initializer.append(bias)
            inputs = [node.output[0] for node in projections] + [bias.name]
            attend = helper.make_node(
                "MultiHeadAttention", inputs, [merge.output[0]], name=name, domain=ORT_DOMAIN, **attributes
            )
            placed[id(merge)] = [*projections, attend]
        for part in (query, key, value):
            removed.update(id(n) for n in part[0])
        removed.update(id(n) for n in (scores, softmax, weighted, merged, merge) if n is not None)
        fused += 1
    if not fused:
        return 0
    nodes = [
        new
        for n in proto.graph.node
        if id(n) not in removed or id(n) in placed
        for new in placed.get(id(n), [n])
    ]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    used = {name for n in nodes for name in n.input}
    unused = [i for i in proto.graph.initializer if i.name not in used]
    for initializer in unused:
        proto.graph.initializer.remove(initializer)
    if not any(o.domain == ORT_DOMAIN for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(ORT_DOMAIN, 1))
    return fused
