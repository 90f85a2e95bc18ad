"""Export a `.keras` ViT to ONNX with tf2onnx, checked in onnxruntime.

Input `images` float32 `(batch, height, width, 3)` raw RGB pixels 0..255
(channels last, as in Keras: no NCHW transpose), output `logits` float32
`(batch, num_classes)`; the batch dimension is named `batch`.

Exact GELU. The model's `Dense(activation="gelu")` is the exact (erf) GELU,
which TensorFlow 2.21 lowers to `0.5 * x * Erfc(-x / sqrt(2))`. tf2onnx 1.17
has no handler for `Erfc`: it logs an error, keeps a TF node in the graph
and still writes a file that onnxruntime refuses (this is how
`model.export(format="onnx")` "succeeds"). A tf2onnx rewriter (its documented
`custom_rewriter` hook) writes that GELU as `0.5 * x * (1 + Erf(x / sqrt(2)))`:

- exact math (`erfc(-z) = 1 + erf(z)`, erf is odd; the division rounds at
  most one ulp from TensorFlow's product), not the tanh approximation;
- the form ONNX Runtime's graph optimiser fuses into one `Gelu` kernel a
  block (it does not match `Erf(x * 0.7071)`, nor `1 - Erf`);
- ONNX has had `Erf` since opset 9 and every onnxruntime implements it.

Any other `Erfc` gets a custom op handler, `Sub(1, Erf(x))` (exact identity;
`1 - erf(z)` loses relative accuracy only for large positive `z`).

Attention without run-time shape arithmetic. Keras' attention lowers to TF
`Einsum` ops: its projections, and in `keras.layers.MultiHeadAttention` (files
from before `HeadMajorAttention`, which uses batched matmuls) the scores
(`BTNH,BSNH->BNTS`) and the weighted values (`BNTS,BSNH->BTNH`). tf2onnx writes them as ONNX `Einsum` and then
decomposes each into MatMul between Reshapes whose shapes it computes at run
time from the dynamic batch (Shape, Gather, ReduceProd, Concat, Unsqueeze):
a large share of the graph's nodes, and of its latency in onnxruntime. A
second handler writes every einsum that is a batched matrix product (one
summed index, one free index an operand, the rest shared) as Transpose ->
MatMul -> Transpose with static permutations: the same products in the same
order, so the same logits, in far fewer nodes. Any other einsum goes to
tf2onnx's own handler.

Layer norms as one op. Each `keras_vit.layers.LayerNorm` is twelve TF ops
(moments, rsqrt, the affine part), which tf2onnx converts one by one. From
opset 17 on, a tf2onnx rewriter (its documented `custom_rewriter` hook)
matches exactly that layer over the last axis and writes ONNX
`LayerNormalization`, one kernel in onnxruntime; the logits move by rounding
only. Below opset 17, or for any other pattern, the ops convert one by one.
(Node counts and logit differences on the shipped model: docs/experiments/.)

After conversion every node must be a standard ONNX op (`onnx.defs.has`),
the model must pass `onnx.checker.check_model(full_check=True)`, and it must
load and run in onnxruntime (the proof) before it is called exported.

This module is `export/onnx.py`: it imports the real `onnx` package because
imports are absolute (`python -m export.onnx` keeps `export/` off `sys.path`).

CLI: `python -m export.onnx MODEL.keras OUT.onnx [--opset N]`.
"""

from __future__ import annotations

import collections
import logging
import sys

import numpy as np

from export import cli, common, savedmodel
from export.common import ExportError, ExportFailure
from export.onnx_attention import ORT_DOMAIN, fuse_attention
from export.step import Format
from keras_vit.cli_utils import first_line

# onnx, tf2onnx and TensorFlow are imported in the functions that convert: a command checks its arguments
# first, in well under a second.

MIN_OPSET = 13  # Unsqueeze/Squeeze/ReduceSum take axes as inputs from 13 on: tf2onnx's best-tested path.
MAX_OPSET = 18  # the newest opset tf2onnx 1.17 can write
DEFAULT_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "logits"


def _erfc_as_one_minus_erf(ctx, node, name, args):
    """tf2onnx handler: TF `Erfc(x)` -> ONNX `Sub(1, Erf(x))` (exact identity)."""
    from tf2onnx import utils

    x = node.input[0]
    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(x))
    erf = ctx.make_node("Erf", [x], op_name_scope=node.name)
    one = ctx.make_const(utils.make_name(f"{node.name}/one"), np.array(1, dtype=dtype))
    node.type = "Sub"
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])


def batched_matmul_permutations(equation):
    """The static Transposes that turn a two-operand einsum into one batched MatMul, if it is one.

    Args:
        equation: an einsum equation with an explicit output, e.g.
            `"btnh,bsnh->bnts"` (case-insensitive).

    Returns:
        `(perm_a, perm_b, perm_out)`: transpose the first operand by `perm_a`
        to `(batch..., rows, summed)`, the second by `perm_b` to `(batch...,
        summed, columns)`, multiply, and transpose the product by `perm_out`
        to the output's order. `None` when the equation is not a batched
        matrix product: not exactly one summed index and one free index in
        each operand, a repeated index, an index summed in one operand only,
        or no explicit output.
    """
    equation = equation.replace(" ", "").lower()
    if "->" not in equation or "." in equation:
        return None
    operands, output = equation.split("->")
    operands = operands.split(",")
    if len(operands) != 2:
        return None
    a, b = operands
    if any(len(set(term)) != len(term) for term in (a, b, output)):
        return None
    batch = [index for index in output if index in a and index in b]
    summed = [index for index in a if index in b and index not in output]
    rows = [index for index in a if index not in b]
    columns = [index for index in b if index not in a]
    if (
        len(summed) != 1
        or len(rows) != 1
        or len(columns) != 1
        or sorted(output) != sorted(batch + rows + columns)
    ):
        return None
    product = batch + rows + columns
    return (
        [a.index(index) for index in batch + rows + summed],
        [b.index(index) for index in batch + summed + columns],
        [product.index(index) for index in output],
    )


def _einsum_as_matmul(ctx, node, name, args):
    """tf2onnx handler: TF `Einsum` -> ONNX Transpose/MatMul/Transpose when it is a batched matrix product.

    Other equations go to tf2onnx's own Einsum handler (ONNX `Einsum`, which
    its einsum optimizer later decomposes).
    """
    plan = batched_matmul_permutations(node.get_attr_value("equation").decode())
    if plan is None:
        from tf2onnx.onnx_opset.math import Einsum

        return Einsum.version_12(ctx, node)
    perm_a, perm_b, perm_out = plan
    inputs = []
    for tensor, perm in zip(node.input[:2], (perm_a, perm_b)):
        if perm != sorted(perm):
            tensor = ctx.make_node(
                "Transpose", [tensor], attr={"perm": perm}, op_name_scope=node.name
            ).output[0]
        inputs.append(tensor)
    for attribute in ("equation", "N"):
        node.attr.pop(attribute, None)
    if perm_out == sorted(perm_out):
        node.type = "MatMul"
    else:  # the einsum node becomes the output Transpose, so its consumers need no rewiring
        inputs = [ctx.make_node("MatMul", inputs, op_name_scope=node.name).output[0]]
        node.type = "Transpose"
        node.set_attr("perm", perm_out)
    ctx.replace_inputs(node, inputs)


CUSTOM_OP_HANDLERS = {"Erfc": (_erfc_as_one_minus_erf, []), "Einsum": (_einsum_as_matmul, [])}

LAYER_NORM_MIN_OPSET = 17  # ONNX LayerNormalization


def _replace_node(g, ops, old, op_type, inputs, attr=None):
    """tf2onnx rewriters' last step: a new `op_type` node of `old`'s output shape and dtype takes `old`'s place
    for every consumer, and `old` leaves the graph."""
    new = g.make_node(
        op_type,
        inputs,
        attr=attr or {},
        op_name_scope=old.name,
        shapes=[g.get_shape(old.output[0])],
        dtypes=[g.get_dtype(old.output[0])],
    )
    g.replace_all_inputs(old.output[0], new.output[0], ops=ops)
    g.remove_node(old.name)


def _layer_norm_pattern():
    """`keras_vit.layers.LayerNorm` in TF ops.

    `x * inv + (beta - mean * inv)` with `inv = rsqrt(var + eps) * gamma`.
    """
    from tf2onnx.graph_matcher import OpTypePattern as Op

    mean = Op("Mean", name="mean", inputs=[Op("*", name="x_mean"), Op("Const|ConstV2", name="mean_axes")])
    variance = Op(
        "Mean",
        name="variance",
        inputs=[
            Op(
                "SquaredDifference",
                inputs=[Op("*", name="x_variance"), Op("StopGradient|Identity", name="mean_stop")],
            ),
            Op("Const|ConstV2", name="variance_axes"),
        ],
    )
    inv = Op(
        "Mul",
        name="inv",
        inputs=[
            Op("Rsqrt", inputs=[Op("AddV2|Add", inputs=[variance, Op("Const|ConstV2", name="epsilon")])]),
            Op("Const|ConstV2", name="gamma"),
        ],
    )
    return Op(
        "AddV2|Add",
        name="output",
        inputs=[
            Op("Mul", inputs=[Op("*", name="x"), inv]),
            Op(
                "Sub",
                allow_reorder=False,
                inputs=[
                    Op("Const|ConstV2", name="beta"),
                    Op("Mul", inputs=[mean, Op("Mul", name="inv_again")]),
                ],
            ),
        ],
    )


def _layer_norm_as_one_op(g, ops):
    """tf2onnx rewriter: each `LayerNorm` (twelve TF ops) -> one ONNX `LayerNormalization` (opset 17 on).

    Only where the match is exactly the layer over the last axis: one input
    everywhere, the same mean and scale in both products, `keep_dims`, and
    constant 1-D gamma and beta; anything else is left to the op handlers.
    """
    from tf2onnx.graph_matcher import GraphMatcher

    if g.opset < LAYER_NORM_MIN_OPSET:
        return ops
    for match in list(GraphMatcher(_layer_norm_pattern(), allow_reorder=True).match_ops(ops)):
        x = match.get_tensor("x")
        rank = g.get_rank(x)
        mean, variance, output = match.get_op("mean"), match.get_op("variance"), match.get_op("output")
        if rank is None or {match.get_tensor("x_mean"), match.get_tensor("x_variance")} != {x}:
            continue
        if match.get_op("mean_stop").input[0] != mean.output[0]:
            continue
        if match.get_op("inv_again").name != match.get_op("inv").name:
            continue
        axes = [match.get_op(name).get_tensor_value(as_list=True) for name in ("mean_axes", "variance_axes")]
        if any(np.atleast_1d(np.asarray(a)).tolist() not in ([-1], [rank - 1]) for a in axes):
            continue
        if not (mean.get_attr_value("keep_dims") and variance.get_attr_value("keep_dims")):
            continue
        epsilon = np.asarray(match.get_op("epsilon").get_tensor_value(as_list=False)).ravel()
        gamma, beta = match.get_op("gamma"), match.get_op("beta")
        channels = g.get_shape(x)[-1]
        if epsilon.size != 1 or any(
            len(op.output_shapes[0]) != 1 or op.output_shapes[0][0] != channels for op in (gamma, beta)
        ):
            continue
        _replace_node(
            g,
            ops,
            output,
            "LayerNormalization",
            [x, gamma.output[0], beta.output[0]],
            attr={"axis": -1, "epsilon": float(epsilon[0])},
        )
    return g.get_nodes()


def _gelu_pattern():
    """The `erfc` of TensorFlow's exact GELU, `0.5 * x * erfc(-x * c)` with `c = 1 / sqrt(2)`: `Erfc(Mul(y, k))`
    with a constant `k`, where `y` is `Neg(x)` or, after constant folding, `x` itself and `k = -c`."""
    from tf2onnx.graph_matcher import OpTypePattern as Op

    return Op(
        "Erfc", name="erfc", inputs=[Op("Mul", inputs=[Op("*", name="y"), Op("Const|ConstV2", name="scale")])]
    )


def _gelu_as_erf(g, ops):
    """tf2onnx rewriter: `erfc(-x * c)` -> `1 + erf(x / (1 / c))`, the form of GELU that ONNX Runtime's graph
    optimiser fuses into one `Gelu` kernel (`0.5 * x * (1 + erf(x / sqrt(2)))`; it does not match `x * c`).

    `erfc(-z) = 1 + erf(z)` exactly (erf is odd); `x / sqrt(2)` rounds at most one float32 ulp away from
    `x * (1 / sqrt(2))`. Only scalar constant scales are rewritten; any other `Erfc` keeps the `1 - erf` handler.
    """
    from tf2onnx import utils
    from tf2onnx.graph_matcher import GraphMatcher

    for match in list(GraphMatcher(_gelu_pattern(), allow_reorder=True).match_ops(ops)):
        scale = np.asarray(match.get_op("scale").get_tensor_value(as_list=False))
        if scale.size != 1 or not np.issubdtype(scale.dtype, np.floating):
            continue
        erfc, y = match.get_op("erfc"), match.get_op("y")
        if y.type == "Neg":
            x, scale = y.input[0], scale.reshape(())
        else:
            x, scale = match.get_tensor("y"), -scale.reshape(())
        divisor = g.make_const(utils.make_name(f"{erfc.name}/divisor"), (1 / scale).astype(scale.dtype))
        scaled = g.make_node("Div", [x, divisor.output[0]], op_name_scope=erfc.name)
        erf = g.make_node("Erf", [scaled.output[0]], op_name_scope=erfc.name)
        one = g.make_const(utils.make_name(f"{erfc.name}/one"), np.array(1, dtype=scale.dtype))
        _replace_node(g, ops, erfc, "Add", [erf.output[0], one.output[0]])
    return g.get_nodes()


CUSTOM_REWRITERS = [_layer_norm_as_one_op, _gelu_as_erf]


def convert(saved_model_dir, opset=DEFAULT_OPSET, ort_attention=False):
    """Converts a SavedModel (from `export.savedmodel`) to an ONNX `ModelProto`.

    Args:
        saved_model_dir: SavedModel directory with a `serving_default` signature.
        opset: ONNX opset, `MIN_OPSET`..`MAX_OPSET`.
        ort_attention: write each block's attention as ONNX Runtime's fused
            `com.microsoft` `Attention` op (`export.onnx_attention`): faster
            in ONNX Runtime, runnable there only.

    Returns:
        A checked `onnx.ModelProto` with input `images` and output `logits`.

    Raises:
        ExportError: bad opset, a graph that is not pure standard ONNX, or
            `ort_attention` with no attention block matched.
    """
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ExportError(
            f"--opset {opset} is not supported: tf2onnx 1.17 writes opsets {MIN_OPSET} to {MAX_OPSET}."
        )
    common.use_tensorflow_backend()
    import onnx
    import tensorflow as tf
    from tf2onnx import convert as tf2onnx_convert
    from tf2onnx import tf_loader

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    tf.get_logger().setLevel(logging.ERROR)
    graph_def, inputs, outputs = tf_loader.from_saved_model(
        saved_model_dir, None, None, signatures=["serving_default"]
    )
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"expected one input and one output in the SavedModel, got {inputs} -> {outputs}.")
    try:
        proto, _ = tf2onnx_convert.from_graph_def(
            graph_def,
            name="vit",
            input_names=inputs,
            output_names=outputs,
            opset=int(opset),
            custom_op_handlers=CUSTOM_OP_HANDLERS,
            custom_rewriter=CUSTOM_REWRITERS,
            tensors_to_rename={inputs[0]: INPUT_NAME, outputs[0]: OUTPUT_NAME},
        )
    except Exception as e:  # tf2onnx raises many types
        raise ExportFailure(f"tf2onnx conversion failed: {first_line(e, with_type=True)}") from None

    # tf2onnx only logs ops it cannot convert and keeps them as TF nodes: refuse those.
    unknown = sorted(
        {
            f"{n.domain or 'ai.onnx'}::{n.op_type}"
            for n in proto.graph.node
            if not onnx.defs.has(n.op_type, n.domain or "")
        }
    )
    if unknown:
        raise ExportFailure(
            f"the ONNX graph has ops that are not standard ONNX: {', '.join(unknown)} (tf2onnx could not "
            "convert them; please report)."
        )
    if ort_attention and not fuse_attention(proto):
        raise ExportError(
            "--ort-attention matched no attention block in this model's graph; export without it."
        )
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    proto.doc_string = "keras-vit: images float32 (batch, h, w, 3) raw RGB 0..255 -> logits (batch, classes)"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise ExportFailure(f"the converted ONNX model is invalid: {first_line(e, with_type=True)}") from None
    return proto


def card_fields(proto, opset):
    """What the model card of an ONNX file says of its conversion, read from the converted `proto`.

    The layer norms are counted in the graph rather than assumed: a model
    whose norms the rewriter does not match (an older `.keras` file with
    Keras' own LayerNormalization, or opset < 17) keeps them op by op.
    """
    fused = sum(node.op_type == "LayerNormalization" for node in proto.graph.node)
    if fused:
        layer_norm = f"{fused} LayerNormalization ops"
    elif int(opset) < LAYER_NORM_MIN_OPSET:
        layer_norm = f"decomposed (LayerNormalization needs opset {LAYER_NORM_MIN_OPSET})"
    else:
        layer_norm = "decomposed (no keras_vit LayerNorm pattern matched)"
    divided = {output for node in proto.graph.node if node.op_type == "Div" for output in node.output}
    if any(node.op_type == "Erf" and node.input[0] in divided for node in proto.graph.node):
        gelu = "exact: erfc(-x/sqrt(2)) as 1 + Erf(x/sqrt(2)), which ONNX Runtime fuses into Gelu"
    else:
        gelu = "exact: TF Erfc(x) exported as 1 - Erf(x)"
    fused = collections.Counter(
        node.op_type
        for node in proto.graph.node
        if node.domain == ORT_DOMAIN and node.op_type in ("Attention", "MultiHeadAttention")
    )
    if fused:
        ops = " + ".join(f"{count} {op}" for op, count in sorted(fused.items()))
        attention = f"com.microsoft {ops} ops (ONNX Runtime only)"
    else:
        attention = "batched-matrix einsums as static Transpose/MatMul/Transpose (no run-time shape ops)"
    return {
        "runtime": "onnxruntime.InferenceSession (CPUExecutionProvider)",
        "opset": int(opset),
        "gelu": gelu,
        "attention": attention,
        "layer_norm": layer_norm,
    }


def write_onnx(job, path):
    """`Format.convert` of ONNX: converts the job's SavedModel at `--opset` to `path`; returns card fields."""
    import onnx

    with savedmodel.saved_model_of(job) as saved_model:
        proto = convert(saved_model, job.args.opset, getattr(job.args, "ort_attention", False))
    onnx.save(proto, path)
    return {**card_fields(proto, job.args.opset), **savedmodel.last_block_field(job.model)}


FORMAT = Format("onnx", "float32", "model.onnx", write_onnx)


def add_opset_arg(parser):
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset ({MIN_OPSET}..{MAX_OPSET}, default {DEFAULT_OPSET}; tf2onnx 1.17 writes "
        f"up to {MAX_OPSET})",
    )


def check_opset_arg(parser, args):
    """A usage error (exit status 2) for an `--opset` tf2onnx cannot write."""
    if not MIN_OPSET <= args.opset <= MAX_OPSET:
        parser.error(f"--opset must be between {MIN_OPSET} and {MAX_OPSET} (tf2onnx 1.17), got {args.opset}")


def main(argv=None):
    parser = cli.make_parser(
        "python -m export.onnx",
        "Export a .keras ViT to ONNX (exact GELU as 1 + Erf(x / sqrt(2))), checked in onnxruntime "
        "against Keras.",
        "the .onnx file to write (its class names OUT.labels.txt and model card OUT.onnx.json are written "
        "beside it)",
    )
    add_opset_arg(parser)
    parser.add_argument(
        "--ort-attention",
        action="store_true",
        help="write each block's attention as ONNX Runtime's fused Attention op (com.microsoft): faster in ONNX "
        "Runtime, which alone runs it; other ONNX runtimes need the default file",
    )
    args = parser.parse_args(argv)
    check_opset_arg(parser, args)
    cli.check_output_extension(parser, args, FORMAT)
    cli.export_one(args, FORMAT)


if __name__ == "__main__":
    sys.exit(common.run_cli(main))
