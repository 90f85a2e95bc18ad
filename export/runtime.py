"""Classify images with an exported `.tflite` or `.onnx` ViT: no TensorFlow, no Keras.

This is the deployment side. It needs numpy, Pillow and one runtime:
`ai-edge-litert` for `.tflite` files, `onnxruntime` for `.onnx` files. It
must never import TensorFlow or Keras (even indirectly), so that it runs on
a device that has only those small wheels; a test runs it with fake failing
`tensorflow`/`keras` modules first on `sys.path`. From `keras_vit` it uses
only the Keras-free modules, so that a photo, its labels and its test-time
augmentation are the same here as in Keras: `keras_vit.data.images` (the
image decoder), `keras_vit.labels`, `keras_vit.metrics` (softmax, top-k),
`keras_vit.tta` and `keras_vit.cli_utils`.

Every exported file takes raw RGB pixels, channels last, values 0..255
(float32 `(batch, height, width, 3)`; the full-integer TFLite file takes
uint8 instead) and returns logits `(batch, num_classes)`, float32 or int8
with a scale and zero point. `ExportedModel.predict` hides those
differences: it takes uint8 or float images 0..255 and returns float32
logits; `classify` turns them into top-k `(label, probability)` pairs.

Example:

```python
from export import runtime

model = runtime.load("export/model_int8.tflite")
labels = runtime.read_labels(runtime.default_labels_path(model.path))
images = runtime.load_images(["cat.jpg"], model.image_size)
print(runtime.classify(model, images, labels, top_k=3))
```

CLI: `python -m export.runtime MODEL.{tflite,onnx} IMAGE... [--top-k 5] [--labels FILE]`. As
`python -m keras_vit.predict`, an unreadable image is one `error: ...` line (in `--json`, its entry is
`{"image", "error"}`), the others are still classified, and the exit status is 1 if any image failed; a model
or labels file it cannot use is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from keras_vit import labels as label_files
from keras_vit import metrics
from keras_vit.cli_utils import (
    console_output,
    exits_quietly_on_closed_stdout,
    expand_wildcards,
    first_line,
    positive_int,
    print_error,
)
from keras_vit.data.images import decode_images
from keras_vit.device import usable_cores
from keras_vit.labels import LABELS_FILENAME, default_labels_path  # noqa: F401 (public: the runtime's API)
from keras_vit.metrics import format_predictions, softmax
from keras_vit.tta import TTA_CHOICES, TTA_HELP, check_tta, tta_views


class RuntimeModelError(ValueError):
    """A model, labels file or image that cannot be used; the message says why."""


def read_labels(path):
    """Reads a labels file by `keras_vit.labels.read_labels`' rules.

    Returns:
        The class names, a list; element `i` names logit `i`.

    Raises:
        RuntimeModelError: missing, empty or malformed file.
    """
    try:
        return list(label_files.read_labels(path))
    except (OSError, ValueError) as e:
        raise RuntimeModelError(first_line(e)) from None


def model_labels(model, labels_file=None):
    """The class names of an exported model, found by `keras_vit.labels.labels_for_model`' rules.

    Args:
        model: an `ExportedModel`.
        labels_file: a labels file given by the user, or `None`.

    Returns:
        A list of `model.num_classes` names.

    Raises:
        RuntimeModelError: no usable labels.
    """
    return _labels_and_where(model, labels_file)[0]


def _labels_and_where(model, labels_file):
    """`model_labels` and the file they came from (None: the CIFAR-10 names, `keras_vit.labels` rule 4)."""
    try:
        names, found = label_files.labels_and_where(model.path, model.num_classes, labels_file)
    except (OSError, ValueError) as e:
        raise RuntimeModelError(first_line(e)) from None
    return list(names), found


def _quantize(x, dtype, scale, zero_point):
    """Float pixels -> the integer input of a quantized model."""
    x = np.asarray(x)
    if x.dtype == dtype and scale == 1.0 and zero_point == 0:
        return x  # uint8 pixels into a uint8 input with identity quantization: exact.
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float32) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(q, scale, zero_point):
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


class ExportedModel:
    """An exported classifier: raw pixels in, float32 logits out.

    Attributes:
        path: the model file.
        image_size: `(height, width)` of the input.
        channels: input channels (3).
        num_classes: number of logits.
        input_dtype: numpy dtype the file takes (`float32`, or `uint8`/`int8`).
        input_quantization: `(scale, zero_point)` of an integer input
            (`real = scale * (q - zero_point)`), else `None`.
        output_dtype: numpy dtype the file returns.
        output_quantization: `(scale, zero_point)` of an integer output,
            else `None`.
        dynamic_batch: whether any batch size runs in one call.
    """

    path: str
    image_size: tuple
    channels: int
    num_classes: int
    input_dtype: np.dtype
    input_quantization: tuple | None = None
    output_dtype: np.dtype
    output_quantization: tuple | None = None
    dynamic_batch: bool = True
    kind = "?"

    def predict(self, images, batch_size=64):
        """Runs the model on raw pixel images.

        Args:
            images: array `(n, height, width, channels)`, uint8 or float,
                values 0..255 (RGB, channels last).
            batch_size: images per runtime call (1 if the file has a
                fixed batch of 1).

        Returns:
            float32 logits `(n, num_classes)` (dequantized when the file
            returns integers).
        """
        images = np.asarray(images)
        expected = (*self.image_size, self.channels)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise RuntimeModelError(
                f"{os.path.basename(self.path)} expects images of shape (n, {expected[0]}, "
                f"{expected[1]}, {expected[2]}), got {images.shape}."
            )
        if not self.dynamic_batch:
            batch_size = 1
        if self.input_quantization is not None:
            images = _quantize(images, self.input_dtype, *self.input_quantization)
        else:
            images = images.astype(self.input_dtype, copy=False)
        outputs = [self._run(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        logits = np.concatenate(outputs) if outputs else np.zeros((0, self.num_classes), self.output_dtype)
        if self.output_quantization is not None:
            return _dequantize(logits, *self.output_quantization)
        return logits.astype(np.float32, copy=False)

    def predict_raw(self, batch):
        """One runtime call on a batch already in `input_dtype` (for timing)."""
        return self._run(batch)

    def _run(self, batch):
        raise NotImplementedError

    def describe(self):
        """One line: input and output types, shapes and quantization."""
        h, w = self.image_size
        text = f"{self.kind}: input {np.dtype(self.input_dtype).name} (batch, {h}, {w}, {self.channels}) raw RGB 0..255"
        if self.input_quantization is not None:
            s, z = self.input_quantization
            text += f" [q = pixel / {s:g} + {z}]" if (s, z) != (1.0, 0) else " [pixels as they are]"
        text += f"; output {np.dtype(self.output_dtype).name} logits (batch, {self.num_classes})"
        if self.output_quantization is not None:
            s, z = self.output_quantization
            text += f" [logit = {s:g} * (q {'-' if z >= 0 else '+'} {abs(z)})]"
        return text


class TFLiteModel(ExportedModel):
    """A `.tflite` file run by `ai_edge_litert` (XNNPACK on CPU by default).

    Args:
        path: the `.tflite` file.
        num_threads: CPU threads; defaults to all cores of this process.
    """

    kind = "tflite"

    def __init__(self, path, num_threads=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise RuntimeModelError("running .tflite files needs `pip install ai-edge-litert`.") from None
        self.path = os.fspath(path)
        _check_file(self.path)
        try:
            self._interpreter = Interpreter(model_path=self.path, num_threads=num_threads or usable_cores())
        except (ValueError, RuntimeError) as e:
            raise RuntimeModelError(f"{self.path} is not a valid TFLite model: {first_line(e)}") from None
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeModelError(
                f"{self.path} has {len(inputs)} inputs and {len(outputs)} outputs, not 1 and 1."
            )
        self._input, self._output = inputs[0], outputs[0]
        signature = self._input.get("shape_signature", self._input["shape"])
        if len(signature) != 4:
            raise RuntimeModelError(
                f"{self.path} input has shape {list(signature)}; expected (batch, h, w, c)."
            )
        _, height, width, self.channels = (int(v) for v in signature)
        self.image_size = (height, width)
        self.dynamic_batch = int(signature[0]) == -1
        self.num_classes = int(self._output.get("shape_signature", self._output["shape"])[-1])
        self.input_dtype = np.dtype(self._input["dtype"])
        self.output_dtype = np.dtype(self._output["dtype"])
        self.input_quantization = _tflite_quantization(self._input)
        self.output_quantization = _tflite_quantization(self._output)
        self.input_tensor_name, self.output_tensor_name = self._input["name"], self._output["name"]
        self._batch = None

    def signatures(self):
        """The names of the file's signatures (`["serving_default"]` for this package's files)."""
        return list(self._interpreter.get_signature_list())

    def _run(self, batch):
        interpreter = self._interpreter
        if self._batch != len(batch):
            if self.dynamic_batch or self._batch is None:
                interpreter.resize_tensor_input(self._input["index"], list(batch.shape), strict=True)
            interpreter.allocate_tensors()
            self._batch = len(batch)
        interpreter.set_tensor(self._input["index"], np.ascontiguousarray(batch))
        interpreter.invoke()
        return interpreter.get_tensor(self._output["index"]).copy()

    def _undelegated(self):
        # The op list of an interpreter that applied XNNPACK shows DELEGATE nodes
        # instead of the file's ops: read them from one without delegates.
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        return Interpreter(
            model_path=self.path,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )

    def op_counts(self):
        """`{op_name: count}` of the operators in the file."""
        counts = {}
        for op in self._undelegated()._get_ops_details():
            counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
        return dict(sorted(counts.items()))

    def float_ops(self):
        """Operators (other than QUANTIZE/DEQUANTIZE) that compute in float32.

        In a full-integer file these are the ops the converter could not
        quantize; they run in float between a DEQUANTIZE and a QUANTIZE, which
        LiteRT on CPU handles but an integer-only accelerator does not.
        """
        interpreter = self._undelegated()
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        found = {}
        for op in interpreter._get_ops_details():
            if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
                continue
            indices = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
            if any(np.dtype(tensors[i]["dtype"]) == np.float32 for i in indices if i in tensors):
                found[op["op_name"]] = found.get(op["op_name"], 0) + 1
        return dict(sorted(found.items()))


class ONNXModel(ExportedModel):
    """An `.onnx` file run by ONNX Runtime on CPU.

    Args:
        path: the `.onnx` file.
        num_threads: intra-op threads; defaults to all cores of this process.
    """

    kind = "onnx"

    def __init__(self, path, num_threads=None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeModelError("running .onnx files needs `pip install onnxruntime`.") from None
        self.path = os.fspath(path)
        _check_file(self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or usable_cores()
        options.log_severity_level = 3  # errors only
        try:
            self._session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types.
            raise RuntimeModelError(
                f"{self.path} is not a valid ONNX model for onnxruntime: {first_line(e)}"
            ) from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeModelError(
                f"{self.path} has {len(inputs)} inputs and {len(outputs)} outputs, not 1 and 1."
            )
        self._input_name = inputs[0].name
        shape = inputs[0].shape
        if len(shape) != 4 or not all(isinstance(v, int) for v in shape[1:]):
            raise RuntimeModelError(f"{self.path} input has shape {shape}; expected (batch, h, w, c).")
        self.image_size = (shape[1], shape[2])
        self.channels = shape[3]
        self.dynamic_batch = not isinstance(shape[0], int)
        self.num_classes = int(outputs[0].shape[-1])
        types = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8}
        if inputs[0].type not in types:
            raise RuntimeModelError(f"{self.path} input type {inputs[0].type} is not supported.")
        self.input_dtype = np.dtype(types[inputs[0].type])
        self.output_dtype = np.dtype(np.float32)

    def _run(self, batch):
        return self._session.run(None, {self._input_name: batch})[0]


def _tflite_quantization(detail):
    if not np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return None
    scale, zero_point = detail["quantization"]
    return (float(scale), int(zero_point)) if scale else None


def _check_file(path):
    if not os.path.exists(path):
        raise RuntimeModelError(f"model file {path} does not exist.")
    if not os.path.isfile(path):
        raise RuntimeModelError(f"{path} is not a file.")


def load(path, num_threads=None):
    """Opens an exported model by its extension.

    Args:
        path: a `.tflite` or `.onnx` file.
        num_threads: CPU threads for the runtime (default: all cores).

    Returns:
        A `TFLiteModel` or an `ONNXModel`.
    """
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension == ".tflite":
        return TFLiteModel(path, num_threads)
    if extension == ".onnx":
        return ONNXModel(path, num_threads)
    raise RuntimeModelError(
        f"{path}: unknown model type {extension or '(no extension)'!r}; expected .tflite or .onnx."
    )


def load_image(path, image_size):
    """Reads one image as uint8 RGB `(height, width, 3)` with `keras_vit.data.images.decode_image`.

    The pixels the training data loader and `keras_vit.predict` get from the
    same file: EXIF orientation applied, grayscale, 16-bit, palette and RGBA
    images made RGB, resized with bicubic resampling (without keeping the
    aspect ratio).

    Raises:
        RuntimeModelError: a missing or unreadable file (corrupt, truncated,
            or larger than Pillow's decompression-bomb limit).
    """
    images, _, errors = decode_images([path], image_size)
    if errors:
        raise RuntimeModelError(_image_error(errors[0]))
    return images[0]


def _image_error(error):
    """The line of one `{"image", "error"}` of `decode_images`, as `keras_vit.predict` prints it."""
    if error["error"] == "file does not exist":
        return f"image {error['image']} does not exist."
    return f"cannot read image {error['image']}: {error['error']}"


def load_images(paths, image_size):
    """Reads images into one uint8 array `(n, height, width, 3)`.

    Raises:
        RuntimeModelError: at the first unreadable file (`read_images` reads
            the others too).
    """
    return (
        np.stack([load_image(p, image_size) for p in paths])
        if paths
        else np.zeros((0, *image_size, 3), np.uint8)
    )


def read_images(paths, image_size):
    """Reads the readable images of `paths`; an unreadable one is reported, not fatal (as `keras_vit.predict`).

    Args:
        paths: image files.
        image_size: `(height, width)`.

    Returns:
        `(images, readable, errors)`: uint8 `(n, height, width, 3)` of the
        readable files (`n` may be 0), those paths, and one `{"image",
        "error"}` dict per unreadable file, its `"error"` the whole line
        (e.g. `"cannot read image x.png: DecompressionBombError: ..."`).
    """
    images, readable, errors = decode_images(list(paths), image_size)
    if images is None:
        images = np.zeros((0, *(int(v) for v in image_size), 3), np.uint8)
    return images, readable, [{"image": e["image"], "error": _image_error(e)} for e in errors]


def tta_logits(model, images, tta="none"):
    """`model.predict(images)`, or the mean of its logits over `keras_vit.tta.tta_views(images, tta)`.

    `"flip"` costs twice the plain prediction, `"flip-shift"` ten times (as
    `python -m keras_vit.evaluate --tta ...`).

    Raises:
        RuntimeModelError: an unknown `tta`.
    """
    try:
        check_tta(tta)
    except ValueError as e:
        raise RuntimeModelError(str(e)) from None
    views = [model.predict(view) for view in tta_views(images, tta)]
    return np.mean(views, axis=0)


def classify(model, images, labels, top_k=5, tta="none"):
    """Top-k classes of each image.

    Args:
        model: an `ExportedModel` (see `load`).
        images: array `(n, height, width, 3)` of raw pixels 0..255.
        labels: class names, one per logit.
        top_k: number of classes per image (at least 1); more than the
            model has gives all of them.
        tta: one of `TTA_CHOICES` (see `tta_views`).

    Returns:
        One list per image of `min(top_k, number of classes)` dicts
        `{"label", "index", "probability"}`, most likely first.
        Probabilities are the softmax of the (dequantized) logits.

    Raises:
        RuntimeModelError: `labels` does not name one class per output.
    """
    if len(labels) != model.num_classes:
        raise RuntimeModelError(
            f"{len(labels)} labels for a model with {model.num_classes} outputs; pass the labels file written with it."
        )
    return metrics.top_k(softmax(tta_logits(model, images, tta)), labels, top_k)


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line (`error: ...`), exit status 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


@exits_quietly_on_closed_stdout
def main(argv=None):
    parser = _Parser(
        prog="python -m export.runtime",
        description="Classify images with an exported .tflite (ai-edge-litert) or .onnx (onnxruntime) "
        "ViT. Needs neither TensorFlow nor Keras.",
    )
    parser.add_argument("model", help="exported .tflite or .onnx file")
    parser.add_argument("images", nargs="+", help="image files (any size; resized to the model input)")
    parser.add_argument("--top-k", type=int, default=5, help="classes to show per image (default 5)")
    parser.add_argument(
        "--labels",
        help="labels file, one class per line (default: <model>.labels.txt or labels.txt "
        "beside the model; the CIFAR-10 names for 10 outputs)",
    )
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--tta", choices=TTA_CHOICES, default="none", help=TTA_HELP)
    args = parser.parse_args(argv)
    args.images = expand_wildcards(args.images)
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    try:
        model = load(args.model, args.threads)
        labels, found = _labels_and_where(model, args.labels)
        if found is None:  # as predict: a user's 10 classes would be shown as CIFAR-10's without a word
            print(f"note: {label_files.cifar10_names_note(model.path)}", file=sys.stderr)
        images, readable, errors = read_images(args.images, model.image_size)
        for error in errors:
            print_error(error["error"])
        results = classify(model, images, labels, args.top_k, args.tta) if len(images) else []
    except RuntimeModelError as e:  # a model or labels file it cannot use: bad input
        print_error(e)
        return 2
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    predictions = [{"image": str(p), "top_k": r} for p, r in zip(readable, results)]
    if args.json:  # one entry an image, in order; an unreadable image's entry is its error
        outcome = {**{e["image"]: e for e in errors}, **{p["image"]: p for p in predictions}}
        print(json.dumps([outcome[str(p)] for p in args.images], indent=2))
    elif predictions:
        print(model.describe())
        print(format_predictions(predictions))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(console_output(main)())
