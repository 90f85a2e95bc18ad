"""The model card of an exported file: what it takes and returns, where it came from, where it was proven.

Every exported file gets one, as JSON beside it (`X.tflite.json`) or inside
it (a SavedModel's `model_card.json`), next to the labels file it uses (`sidecar_paths`).
"""

from __future__ import annotations

import datetime
import functools
import os

from keras_vit.device import machine_summary
from keras_vit.labels import LABELS_FILENAME, TWIN_SUFFIX

# What the model cards and the report say of the machine (`proof_machine`).
PROOF_MACHINE_KEYS = ("cpu", "cores_available", "platform", "python", "ai_edge_litert", "onnxruntime")


@functools.lru_cache(maxsize=None)
def proof_machine():
    """Where files are converted and proven: CPU, cores, platform, Python and runtime versions.

    A quantized file's score moves by hundredths of a point between CPUs (their
    kernels round differently), so model cards and the report name the machine.
    Fixed for the process, so read once: an export writes several cards.
    """
    return {key: value for key, value in machine_summary().items() if key in PROOF_MACHINE_KEYS}


def sidecar_paths(output, is_dir=False, shared_labels=False):
    """`(labels_path, card_path)` written with an export.

    For a file `X.ext`: its own labels `X.labels.txt` beside it (read first by
    the rules of `keras_vit.labels`, so that files of several models can
    share a folder) and the model card `X.ext.json`; with `shared_labels`, the
    folder's `labels.txt` instead (the files of `python -m export` all come
    from one model). For a directory (SavedModel): `labels.txt` and
    `model_card.json` inside.
    """
    output = os.path.abspath(os.fspath(output))
    if is_dir:
        return os.path.join(output, LABELS_FILENAME), os.path.join(output, "model_card.json")
    folder, name = os.path.split(output)
    labels_name = LABELS_FILENAME if shared_labels else os.path.splitext(name)[0] + TWIN_SUFFIX
    return os.path.join(folder, labels_name), output + ".json"


def model_card(
    *,
    fmt,
    variant,
    file,
    io,
    labels,
    source_model,
    labels_file=LABELS_FILENAME,
    input_dtype="float32",
    input_quantization=None,
    output_dtype="float32",
    output_quantization=None,
    input_tensor=None,
    output_tensor=None,
    signature=None,
    extra=None,
):
    """The documentation of one exported file, as a JSON-ready dict.

    Args:
        fmt: `"savedmodel"`, `"tflite"` or `"onnx"`.
        variant: `"float32"`, `"float16"`, `"dynamic"` or `"int8"`.
        file: the exported file (its base name is recorded).
        io: the model's `common.ModelIO`.
        labels: its class names.
        source_model: the `.keras` file it was exported from.
        labels_file: the name of its labels file (see `sidecar_paths`).
        input_dtype, output_dtype: dtype names of the file's input and output.
        input_quantization, output_quantization: `(scale, zero_point)` of a
            quantized input or output, else `None`.
        input_tensor, output_tensor, signature: a TFLite file's tensor names
            and its signature, whose keys are the `name`s (`images`,
            `logits`); `None` where the names are the tensors' (ONNX).
        extra: more fields (conversion details, the proof's numbers).

    Returns:
        The card.
    """
    # Keras and TensorFlow are imported here, not at the top: the commands check their arguments before
    # loading them.
    import keras
    import tensorflow as tf

    import keras_vit

    image_input = {
        "name": "images",
        "shape": list(io.input_shape),
        "dtype": input_dtype,
        "layout": "NHWC (batch, height, width, channels), any batch size",
        "values": "raw RGB pixel values 0..255 (no normalization: the model normalizes inside)",
    }
    if input_quantization is not None:
        scale, zero_point = input_quantization
        image_input["quantization"] = {"scale": scale, "zero_point": zero_point}
        image_input["values"] += (
            "; uint8 pixels go in as they are (scale 1, zero point 0: exact)"
            if (scale, zero_point) == (1.0, 0)
            else f"; quantize as q = round(pixel / {scale:g} + ({zero_point}))"
        )
    logits = {
        "name": "logits",
        "shape": [None, io.num_classes],
        "dtype": output_dtype,
        "values": "logits (unnormalized scores); softmax(logits) gives probabilities; argmax gives the class",
    }
    if output_quantization is not None:
        scale, zero_point = output_quantization
        logits["quantization"] = {"scale": scale, "zero_point": zero_point}
        logits["values"] = (
            f"int8 quantized logits: logit = {scale:g} * {_minus(zero_point)}; argmax over q gives the "
            "class directly; softmax the dequantized logits for probabilities"
        )
    if input_tensor is not None:
        image_input["tensor"], logits["tensor"] = input_tensor, output_tensor
    card = {
        "format": fmt,
        "variant": variant,
        "file": os.path.basename(os.fspath(file)),
        **(
            {
                "signature": {
                    "name": signature,
                    "use": f"the names are its keys: get_signature_runner({signature!r})(images=...)['logits'] "
                    "(LiteRT: runSignature); by index, the tensors are input.tensor and output.tensor",
                }
            }
            if signature is not None
            else {}
        ),
        "input": image_input,
        "output": logits,
        "labels_file": os.path.basename(os.fspath(labels_file)),
        "labels": list(labels),
        "source_model": os.path.abspath(os.fspath(source_model)),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "keras_vit": keras_vit.__version__,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
        },
        "machine": proof_machine(),
    }
    card.update(extra or {})
    return card


def _minus(zero_point):
    """`(q - z)` written without a double sign."""
    return f"(q - {zero_point})" if zero_point >= 0 else f"(q + {-zero_point})"


def describe_card(card):
    """Two lines for the terminal: input and output of an exported file."""
    i, o = card["input"], card["output"]

    def shape(dims):
        return "(" + ", ".join("batch" if v is None else str(v) for v in dims) + ")"

    return (
        f"  input  '{i['name']}': {i['dtype']} {shape(i['shape'])}, {i['values']}\n  output '{o['name']}': "
        f"{o['dtype']} {shape(o['shape'])}, {o['values']}"
    )
