"""Export a `.keras` ViT to TFLite (LiteRT), float32 or quantized, checked in ai-edge-litert.

Conversion goes `.keras` -> SavedModel -> `TFLiteConverter.from_saved_model`
(`from_keras_model` is unreliable with Keras 3) with only builtin ops
(`TFLITE_BUILTINS`, plus `TFLITE_BUILTINS_INT8` for int8): a TensorFlow
(Flex) op would need the Flex delegate, which ai-edge-litert does not have,
so it fails the conversion loudly instead.

`--quantize`:

- `none`: float32 weights and compute. Input float32 raw pixels 0..255,
  output float32 logits.
- `float16`: float16 weights (half the size), dequantized to float32 at load;
  same input and output as float32.
- `dynamic`: int8 weights, activations quantized on the fly (dynamic range);
  float32 input and output.
- `int8`: integer post-training quantization calibrated on real training
  images (`--calib-images`, default 500). Input **uint8 raw pixels 0..255,
  fed as they are**: the calibration range of the input is pinned to exactly
  0..255, so its quantization is scale 1, zero point 0 (the file's input
  parameters are checked and written in the model card). Output **int8
  logits** with a scale and zero point: `logit = scale * (q - zero_point)`;
  `argmax(q)` is already the class.

Why a few ops of the int8 file stay float32 (unless `--strict-int8`). The
token sequence entering the first block holds the class token (a learned
vector of norm ~0.02 * sqrt(width)) next to patch tokens about 100x larger.
One int8 scale per tensor rounds the class token to zero, the first
LayerNorm then normalizes a zero vector, and the class token (the one the
head reads) is wrong from there on: the int8 file loses accuracy and many
of its top-1 answers differ from Keras'. Keeping the token assembly (class
token broadcast and concat, position add: `patch_encoder` minus its
projection) and the first block's `attention_norm` in float32 (13 small
ops: BROADCAST_TO, CONCATENATION, ADD and the LayerNorm's 10; every matmul
stays int8) restores it (the measurements: docs/experiments/). This is
TFLite's selective quantization (`denylisted_nodes`, as in its quantization
debugger); the ops are found by the layer names `build_vit` gives, and the
model card lists every op that computes in float. `--strict-int8` quantizes
them too (for integer-only accelerators; expect the loss above).

With `--strict-int8` the file is integer from input to output. That needs
the LayerNorms of `keras_vit.layers.LayerNorm`: Keras' LayerNormalization
computes `x * inv + (-mean * inv + beta)`, and LiteRT's NEG kernel is
float32/int32/int64 only, so each Keras layer leaves one NEG between a
DEQUANTIZE and a QUANTIZE. `LayerNorm` writes `beta - mean * inv` (the same
float32 bits) and lowers to SUB, which has an int8 kernel. Models saved
before it keep Keras' layer as `encoder_norm` (the blocks' norms are built
by `TransformerBlock` and switch on load), so one NEG is left in theirs; the
model card lists it.

CLI: `python -m export.tflite MODEL.keras OUT.tflite [--quantize none|float16|dynamic|int8]`.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

import numpy as np

from export import cli, common, savedmodel
from export.common import ExportError, ExportFailure
from export.runtime import TFLiteModel
from export.step import Format
from export.worker import run_isolated
from keras_vit.cli_utils import first_line, positive_int

# TensorFlow and ai-edge-litert's interpreter are imported in the functions that convert: a command checks
# its arguments first, in well under a second.

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
# Ops kept in float32 in int8 files (see the module docstring): the token
# assembly of `PatchEncoder` (not its projection, nor the reshapes around it:
# `keras_vit.layers.dense_over_tokens`) and the first LayerNorm.
# Matched against TFLite tensor names such as "vit_1/patch_encoder_1/concat".
INT8_FLOAT_NODES = re.compile(
    r"(^|/)patch_encoder(_\d+)?/(?!projection|Reshape)|(^|/)block_0(_\d+)?/attention_norm(_\d+)?/"
)
DEFAULT_CALIB_IMAGES = 500


def convert(saved_model_dir, quantize="none", calibration=None, strict_int8=False):
    """Converts a SavedModel (from `export.savedmodel`) to a `.tflite` flatbuffer.

    Args:
        saved_model_dir: SavedModel directory with a `serving_default` signature.
        quantize: one of `QUANTIZE_MODES`.
        calibration: uint8 or float images `(n, h, w, c)`, raw pixels, for
            `int8` (a few hundred real training images).
        strict_int8: for `int8`, also quantize the ops of `INT8_FLOAT_NODES`.

    Returns:
        The `.tflite` file contents (bytes).

    Raises:
        ExportError: unknown mode, no calibration images, or a conversion
            failure (a non-builtin op is named in the message).
    """
    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"unknown quantize mode {quantize!r}; choose one of {', '.join(QUANTIZE_MODES)}.")
    if quantize == "int8" and (calibration is None or len(calibration) == 0):
        raise ExportError(f"int8 quantization needs calibration images: {common.DATA_HELP}.")
    common.use_tensorflow_backend()
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative_dataset(calibration)
        # Integer kernels first; the builtin float kernel stays allowed for the few
        # ops that have no int8 kernel (listed as float_ops in the model card).
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
    try:
        if quantize == "int8" and not strict_int8:
            return _quantize_selectively(converter)
        return converter.convert()
    except ExportError:
        raise
    except Exception as e:  # ConverterError, or ValueError from the calibrator
        raise ExportFailure(_explain(e)) from None


def _quantize_selectively(converter):
    """int8 conversion that keeps `INT8_FLOAT_NODES` in float32.

    The same two steps as `converter.convert()` (calibrate, then the MLIR
    quantizer) with the quantizer's `denylisted_nodes`, which the public
    converter does not expose (TF's QuantizationDebugger calls the same
    function). TF is pinned (2.21), and the tests cover this path.
    """
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import convert as tflite_convert

    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    interpreter = Interpreter(model_content=calibrated)
    # Only ops with a float output: denylisting shape arithmetic (SHAPE reads the
    # int8 patches for the class token's BROADCAST_TO) would only add a DEQUANTIZE.
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details() if t["dtype"] == np.float32}
    nodes = sorted(
        {
            names[i]
            for op in interpreter._get_ops_details()
            for i in op["outputs"]
            if i in names and INT8_FLOAT_NODES.search(names[i])
        }
    )
    return tflite_convert.mlir_quantize(
        calibrated,
        input_data_type=tf.uint8,
        output_data_type=tf.int8,
        denylisted_nodes=nodes or None,
    )


def _representative_dataset(images):
    images = np.array(images, dtype=np.float32)  # a copy: we edit two pixels
    # Pin the calibrated input range to exactly [0, 255]: the uint8 input then
    # gets scale (255 - 0) / 255 = 1 and zero point 0, so raw pixels go in
    # unchanged. Real photos nearly always reach 0 and 255 anyway; this makes
    # it certain at the cost of two pixels of one calibration image.
    images[0, 0, 0, :] = 0.0
    images[0, 0, -1, :] = 255.0

    def generate():
        for i in range(len(images)):
            yield [images[i : i + 1]]

    return generate


def _explain(error):
    text = str(error)
    flex = sorted(set(re.findall(r"\btf\.([A-Z]\w+)", text)))
    if flex or "not supported by the native TFLite runtime" in text or "Flex" in text:
        ops = ", ".join(flex) or "see the converter log above"
        return (
            f"TFLite conversion needs TensorFlow ops that are not TFLite builtins: {ops}. Flex ops cannot "
            "run in ai-edge-litert; the model code must lower to builtin ops (please report the op)."
        )
    return f"TFLite conversion failed: {first_line(error, with_type=True)}"


def _convert_to_file(saved_model_dir, out_path, quantize, calibration, strict_int8=False):
    data = convert(saved_model_dir, quantize, calibration, strict_int8)
    Path(out_path).write_bytes(data)
    return len(data)


def convert_isolated(saved_model_dir, out_path, quantize="none", calibration=None, strict_int8=False):
    """`convert` in a fresh process (`export.worker.run_isolated`), writing `out_path`.

    The TFLite converter leaks memory on every call, so a command that runs
    several conversions runs each in its own process; that process dies with
    the command, however the command ends.

    Returns:
        Size of the written file in bytes.
    """
    variant = FORMATS[quantize].variant if quantize in FORMATS else quantize
    return run_isolated(
        _convert_to_file,
        saved_model_dir,
        out_path,
        quantize,
        calibration,
        strict_int8,
        name=f"tflite-{variant}",
    )


def write_tflite(job, path, quantize):
    """`Format.convert` of the TFLite formats: converts the job's SavedModel to `path`; returns card fields.

    Args:
        job: the command's `step.Job` (`args.strict_int8` applies to int8).
        path: the `.tflite` file to write.
        quantize: one of `QUANTIZE_MODES`.
    """
    calibration = job.data.x_calib if quantize == "int8" else None
    strict_int8 = job.args.strict_int8
    with savedmodel.saved_model_of(job) as saved_model:
        if job.isolate:
            convert_isolated(saved_model, path, quantize, calibration, strict_int8)
        else:
            _convert_to_file(saved_model, path, quantize, calibration, strict_int8)
    model = TFLiteModel(path, num_threads=1)
    fields = {
        "runtime": "ai_edge_litert.interpreter.Interpreter",
        "quantize": quantize,
        "ops": model.op_counts(),
        "float_ops": model.float_ops() if model.input_quantization else {},
        **savedmodel.last_block_field(job.model),
    }
    if quantize == "int8":
        fields["calibration"] = {"images": int(len(calibration)), "source": job.data.source}
        fields["strict_int8"] = strict_int8
    return fields


def read_io(path):
    """`Format.read_io` of the TFLite formats: the file's input/output dtypes, quantization, tensor names and
    signature (whose keys, `images` and `logits`, are not the tensors' names)."""
    model = TFLiteModel(path, num_threads=1)
    (signature,) = model.signatures()
    return {
        "input_dtype": model.input_dtype.name,
        "input_quantization": model.input_quantization,
        "output_dtype": model.output_dtype.name,
        "output_quantization": model.output_quantization,
        "input_tensor": model.input_tensor_name,
        "output_tensor": model.output_tensor_name,
        "signature": signature,
    }


# The TFLite formats by `--quantize` mode, in the order of the all-formats export.
FORMATS = {
    mode: Format(
        "tflite",
        variant,
        file_name,
        functools.partial(write_tflite, quantize=mode),
        read_io=read_io,
        needs_calibration=mode == "int8",
    )
    for mode, variant, file_name in (
        ("none", "float32", "model_fp32.tflite"),
        ("float16", "float16", "model_fp16.tflite"),
        ("dynamic", "dynamic", "model_dynamic.tflite"),
        ("int8", "int8", "model_int8.tflite"),
    )
}


def add_strict_int8_arg(parser):
    parser.add_argument(
        "--strict-int8",
        action="store_true",
        help="int8: quantize the class-token assembly and the first LayerNorm too (by default they "
        "stay float32: int8 rounds the small class token to zero; see export/tflite.py)",
    )


def add_calib_images_arg(parser):
    parser.add_argument(
        "--calib-images",
        type=positive_int,
        default=DEFAULT_CALIB_IMAGES,
        help=f"training images for int8 calibration (default {DEFAULT_CALIB_IMAGES})",
    )


def main(argv=None):
    parser = cli.make_parser(
        "python -m export.tflite",
        "Export a .keras ViT to TFLite (builtin ops only), checked in ai-edge-litert against Keras.",
        "the .tflite file to write (its class names OUT.labels.txt and model card OUT.tflite.json are "
        "written beside it)",
        int8="optional",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE_MODES,
        default="none",
        help="none: float32; float16: fp16 weights; dynamic: int8 weights (dynamic range); int8: "
        "uint8 pixels in, int8 logits out (needs --data-dir). Default: none",
    )
    add_calib_images_arg(parser)
    add_strict_int8_arg(parser)
    args = parser.parse_args(argv)
    cli.check_output_extension(parser, args, FORMATS[args.quantize])
    cli.export_one(args, FORMATS[args.quantize])


if __name__ == "__main__":
    sys.exit(common.run_cli(main))
