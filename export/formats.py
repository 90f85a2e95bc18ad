"""The registry of export formats: every format `python -m export` writes, in the order of its report.

Each `Format` (`export.step`) is defined beside its converter and is the one
its one-format command exports: `export.savedmodel.FORMAT` (`python -m
export.savedmodel`), `export.tflite.FORMATS[mode]` (`python -m export.tflite
--quantize mode`), `export.onnx.FORMAT` (`python -m export.onnx`). A new
format is a `Format` in its module plus a line here.
"""

from __future__ import annotations

from export import onnx, savedmodel, tflite

# The SavedModel first: the other formats convert from it.
FORMATS = (savedmodel.FORMAT, *tflite.FORMATS.values(), onnx.FORMAT)
