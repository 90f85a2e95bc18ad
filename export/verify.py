"""The proof every export runs before its file appears: parity with Keras, in the file's own runtime.

Each exported file is loaded the way a deployment loads it
(`tf.saved_model.load`, `ai_edge_litert.interpreter.Interpreter`,
`onnxruntime.InferenceSession`) and run on the same images as the Keras
model:

- float32 files (SavedModel, TFLite float32, ONNX): max |logit - Keras
  logit| <= `FLOAT_ATOL` (1e-4) and the same top-1 class on every image.
- quantized TFLite files: test accuracy within `MAX_ACCURACY_DROP`
  percentage points of Keras's on the same images (float16: 0.1, dynamic
  range and int8: 1.0), or one image on fewer images than 100 / that limit
  (one of 500 images is 0.2 points). The logit error and top-1 agreement are
  reported.
- every file: batches of 1 and 7 run in one call each (dynamic batch) and
  give the same answers (float32: within `FLOAT_ATOL` of Keras).

Without labels (random fallback images, or data whose classes are not the
model's), "accuracy" is agreement with Keras's top-1, so Keras scores 100%.
"""

from __future__ import annotations

import os

import numpy as np

from export.common import ExportFailure, keras_logits, progress
from export.runtime import load as load_runtime_model
from keras_vit.metrics import accuracy

FLOAT_ATOL = 1e-4
MAX_ACCURACY_DROP = {"float16": 0.1, "dynamic": 1.0, "int8": 1.0}  # percentage points
DYNAMIC_BATCH_SIZES = (1, 7)


class ProofError(ExportFailure):
    """An export failed its proof; `results` holds the numbers."""

    def __init__(self, message, results=()):
        super().__init__(message)
        self.results = list(results)


class Reference:
    """The images of the proof and what Keras answers on them.

    Args:
        model: the Keras model.
        data: a `common.Data` (images, labels, source).
    """

    def __init__(self, model, data):
        self.data = data
        self.x = data.x_eval
        self.logits = keras_logits(model, self.x, desc="Keras reference")
        self.top1 = self.logits.argmax(axis=1)
        # Without true labels, Keras's own answers are the labels.
        self.labels = data.y_eval if data.y_eval is not None else self.top1
        self.keras_accuracy = accuracy_percent(self.logits, self.labels)

    @property
    def description(self):
        what = "test images" if self.data.real else "RANDOM images (no real data found)"
        return f"{len(self.x)} {what} from {self.data.source}"


def accuracy_percent(logits, labels):
    """Top-1 accuracy in percent (NaN for no images): the unit of the proof's numbers and limits."""
    if len(labels) == 0:
        return float("nan")
    return 100.0 * accuracy(logits, labels)


class SavedModelRunner:
    """A SavedModel's `serving_default` signature, loaded with `tf.saved_model.load`."""

    kind = "savedmodel"
    input_dtype = np.dtype(np.float32)

    def __init__(self, path):
        import tensorflow as tf

        self.path = os.fspath(path)
        self._tf = tf
        self._loaded = tf.saved_model.load(self.path)
        self._fn = self._loaded.signatures["serving_default"]
        self._input_name = next(iter(self._fn.structured_input_signature[1]))
        self._output_name = next(iter(self._fn.structured_outputs))

    def predict(self, images, batch_size=64):
        images = np.asarray(images, dtype=np.float32)
        out = [
            self._fn(**{self._input_name: self._tf.constant(images[i : i + batch_size])})[
                self._output_name
            ].numpy()
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out).astype(np.float32)

    def predict_raw(self, batch):
        return self._fn(**{self._input_name: self._tf.constant(batch)})[self._output_name]


def open_export(path, num_threads=None):
    """Loads an exported file in its own runtime: a SavedModel dir, `.tflite` or `.onnx`."""
    if os.path.isdir(path):
        return SavedModelRunner(path)
    return load_runtime_model(path, num_threads)


def path_size(path):
    """Bytes of a file, or of all files under a directory."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def _predict(runner, x, desc, batch_size=64):
    chunks = [x[i : i + batch_size] for i in range(0, len(x), batch_size)]
    out = [runner.predict(c, batch_size=batch_size) for c in progress(chunks, desc=desc)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def prove(path, reference, *, name, quantize=None, atol=FLOAT_ATOL, max_drop=None):
    """Checks one exported file against Keras and prints the numbers.

    Args:
        path: the exported file or SavedModel directory (a temp path: it is
            only published if this passes).
        reference: the `Reference` (images and Keras logits).
        name: display name, e.g. `"tflite int8"`.
        quantize: `None` for float32 files, else `"float16"`, `"dynamic"`
            or `"int8"` (selects the accuracy check).
        atol: max |logit diff| allowed for float32 files.
        max_drop: allowed accuracy drop in points (default per `quantize`).

    Returns:
        A JSON-ready dict of the numbers, with `passed` and `failures`.
    """
    x = reference.x
    try:
        runner = open_export(path)
        logits = _predict(runner, x, desc=f"checking {name}")
    except Exception as e:  # a file its own runtime cannot load or run fails the proof
        result = {
            "name": name,
            "quantize": quantize or "none",
            "size_bytes": path_size(path),
            "images": int(len(x)),
            "passed": False,
            "failures": [f"cannot run in its runtime: {' '.join(str(e).split())[:300]}"],
        }
        print(f"FAIL {name}: {result['failures'][0]}")
        return result
    diff = np.abs(logits.astype(np.float64) - reference.logits)
    agree = int(np.sum(logits.argmax(axis=1) == reference.top1))
    result = {
        "name": name,
        "quantize": quantize or "none",
        "size_bytes": path_size(path),
        "images": int(len(x)),
        "real_images": bool(reference.data.real),
        "data_source": reference.data.source,
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "top1_agree": agree,
        "top1_agreement": 100.0 * agree / max(len(x), 1),
        "accuracy": accuracy_percent(logits, reference.labels),
        "keras_accuracy": reference.keras_accuracy,
        "accuracy_vs": "labels" if reference.data.y_eval is not None else "keras_top1",
    }
    if getattr(runner, "input_dtype", None) is not None:
        result["input_dtype"] = np.dtype(runner.input_dtype).name

    failures = _check_tolerance(result, logits, reference, quantize=quantize, atol=atol, max_drop=max_drop)
    batches, batch_failures = _check_dynamic_batch(runner, logits, reference, quantize=quantize, atol=atol)
    failures += batch_failures
    result["dynamic_batch"] = batches
    result["passed"] = not failures
    result["failures"] = failures
    print(format_result(result))
    return result


def _check_tolerance(result, logits, reference, *, quantize, atol, max_drop):
    """The tolerance of a file (recorded in `result`) and how its logits break it.

    float32 files: max |logit diff| within `atol` and the same top-1 as Keras
    on every image. Quantized files: an accuracy drop of at most `max_drop`
    points (default `MAX_ACCURACY_DROP[quantize]`, or one image where the
    proof has fewer images than 100 / that limit).

    Returns:
        The failures, as sentences (none: within tolerance).
    """
    failures = []
    if quantize is None:
        result["tolerance"] = {"max_abs_diff": atol, "top1": "identical on every image"}
        if not result["max_abs_diff"] <= atol:
            failures.append(f"max |logit diff| {result['max_abs_diff']:.3g} > {atol:g}")
        top1, images = logits.argmax(axis=1), len(logits)
        if result["top1_agree"] != images:
            bad = np.flatnonzero(top1 != reference.top1)[:5].tolist()
            failures.append(
                f"top-1 differs on {images - result['top1_agree']}/{images} images (first: {bad})"
            )
        return failures
    one_image = 100.0 / len(logits)
    if max_drop is None:
        # Fewer images than 100 / limit: one image is more than the format's limit, which would then allow none.
        max_drop = max(MAX_ACCURACY_DROP[quantize], one_image)
    drop = reference.keras_accuracy - result["accuracy"]
    result["accuracy_drop"] = drop
    result["tolerance"] = {"accuracy_drop_points": max_drop}
    if not drop <= max_drop + 1e-9:
        allowed = f"one image of {len(logits)}" if max_drop == one_image else f"{max_drop:g}"
        failures.append(
            f"accuracy {result['accuracy']:.2f}% is {drop:.2f} points below Keras "
            f"{reference.keras_accuracy:.2f}% (allowed {allowed})"
        )
    return failures


def _check_dynamic_batch(runner, logits, reference, *, quantize, atol):
    """Runs batches of `DYNAMIC_BATCH_SIZES` images, each in one runtime call.

    Returns:
        `(batches, failures)`: per size that passed, the max |logit diff|
        against Keras and against the batched run; and the failures, as
        sentences (a float32 file must stay within `atol` of Keras).
    """
    x, batches, failures = reference.x, {}, []
    for size in DYNAMIC_BATCH_SIZES:
        n = min(size, len(x))
        try:
            out = runner.predict(x[:n], batch_size=n)
        except Exception as e:  # any runtime error here is a failed proof
            failures.append(f"batch of {size} fails: {' '.join(str(e).split())[:200]}")
            continue
        if out.shape != (n, reference.logits.shape[1]) or not np.all(np.isfinite(out)):
            failures.append(f"batch of {size} gives shape {out.shape} or non-finite values")
            continue
        batch_diff = float(np.abs(out.astype(np.float64) - reference.logits[:n]).max())
        if quantize is None and not batch_diff <= atol:
            failures.append(f"batch of {size}: max |logit diff| {batch_diff:.3g} > {atol:g}")
            continue  # listed as passed (and printed "ok") only within the tolerance
        batches[str(size)] = {
            "max_abs_diff_vs_keras": batch_diff,
            "max_abs_diff_vs_batched": float(np.abs(out - logits[:n]).max()),
        }
    return batches, failures


def format_result(result):
    """One line (plus failures) of numbers for the terminal."""
    status = "PASS" if result["passed"] else "FAIL"
    vs = "Keras" if result["accuracy_vs"] == "labels" else "Keras top-1"
    text = (
        f"{status} {result['name']:<16} max|dlogit| {result['max_abs_diff']:.2e}, top-1 same as Keras "
        f"{result['top1_agree']}/{result['images']}, accuracy {result['accuracy']:.2f}% ({vs} "
        f"{result['keras_accuracy']:.2f}%), {_batches_ok(result['dynamic_batch'])}, "
        f"{result['size_bytes'] / 1e6:.3f} MB"
    )
    if "accuracy_drop" in result:
        text += (
            f", drop {result['accuracy_drop']:+.2f} pt (max {result['tolerance']['accuracy_drop_points']:g})"
        )
    for failure in result["failures"]:
        text += f"\n     FAILED: {failure}"
    return text


def _batches_ok(batches):
    """`batch 1/7 ok`: the batch sizes that passed (`_check_dynamic_batch`), or `no batch ok`."""
    return f"batch {'/'.join(batches)} ok" if batches else "no batch ok"


def require_pass(results, output=None, previous=False):
    """Raises `ProofError` naming each failed check (numbers included).

    Args:
        results: the proof results (`prove`).
        output: the output path, for the message: nothing was written there.
        previous: whether a previous export is at `output` (it is kept).
    """
    failed = [r for r in results if not r["passed"]]
    if failed:
        reasons = "; ".join(f"{r['name']}: {', '.join(r['failures'])}" for r in failed)
        if output is None:
            kept = "nothing written"
        elif previous:
            kept = f"nothing written, the previous export at {output} is untouched"
        else:
            kept = f"nothing written at {output}"
        raise ProofError(f"proof failed ({kept}): {reasons}", results)
