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

Modules: `common` (backend, model/labels/data loading, atomic writes),
`cli` (the one-format flow), `verify` (the proof), `savedmodel`, `tflite`,
`onnx`, `report` (report.md/json), `runtime` (deployment side, TF-free),
`benchmark`.

This file imports nothing on purpose: `export.runtime` must stay importable
without TensorFlow and Keras.
"""
