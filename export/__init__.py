"""Export a trained keras-vit model to SavedModel, TFLite (LiteRT) and ONNX, with proof.

Every command loads the `.keras` file, converts it, loads the result in its
own runtime and checks it against Keras on real images before the file
appears at the output path:

- `python -m export MODEL.keras OUT_DIR`: every format plus `report.md`.
- `python -m export.savedmodel MODEL.keras OUT_DIR`
- `python -m export.tflite MODEL.keras OUT.tflite [--quantize none|float16|dynamic|int8]`
- `python -m export.onnx MODEL.keras OUT.onnx [--opset N]`
- `python -m export.runtime MODEL.{tflite,onnx} IMAGE...`: top-k classes,
  with neither TensorFlow nor Keras installed.
- `python -m export.benchmark EXPORT_DIR`: latency and throughput per format.

Modules: `formats` (the registry: every format, in order), `step` (`Format`
and the one per-format step: convert, prove, model card), `cli` (arguments,
loading a job, publishing one format), `common` (backend, errors, signals,
model, labels, proof images, output paths), `output` (the output's lock,
what a killed export left, free space, a file's own labels), `worker` (a
conversion's process, which dies with its command), `card` (the model card),
`verify` (the proof), the converters `savedmodel`, `tflite`, `onnx` (with
`onnx_attention`: ONNX Runtime's fused attention node), `report`
(report.md/json), `runtime` (deployment side, TF-free), `benchmark`.

This file imports nothing on purpose: `export.runtime` must stay importable
without TensorFlow and Keras.
"""
