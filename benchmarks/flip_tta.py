"""Test accuracy of exported files with and without test-time flip.

    python benchmarks/flip_tta.py EXPORT_DIR --data-dir DIR [--output flip_tta.json]

Runs every `.tflite` and `.onnx` file of an export folder (`python -m export
MODEL EXPORT_DIR`) in its own runtime (ai-edge-litert, onnxruntime; no
TensorFlow) on the test split, once plainly and once averaging each image's
logits with its mirror image's (`export.runtime.tta_logits`). Prints a
table and writes JSON when `--output` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from export import runtime  # noqa: E402


def measure(path, images, labels):
    model = runtime.load(path)
    start = time.perf_counter()
    plain = runtime.tta_logits(model, images, "none")
    flip = runtime.tta_logits(model, images, "flip")
    return {
        "file": Path(path).name,
        "accuracy": float(np.mean(plain.argmax(1) == labels)),
        "accuracy_flip_tta": float(np.mean(flip.argmax(1) == labels)),
        "images": int(len(labels)),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 location (default: $KERAS_VIT_DATA_DIR, ...)")
    parser.add_argument("--limit", type=int, default=None, help="use N test images, drawn evenly from the classes")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    from keras_vit.data import load_cifar10

    files = sorted(p for p in Path(args.export_dir).iterdir() if p.suffix in (".tflite", ".onnx"))
    if not files:
        parser.error(f"no .tflite or .onnx files in {args.export_dir}")
    splits = load_cifar10(args.data_dir, limit=args.limit, splits=("test",))
    results = []
    print(f"{'file':<24} {'plain':>8} {'flip TTA':>9}")
    for path in files:
        row = measure(path, splits.x_test, splits.y_test)
        results.append(row)
        print(f"{row['file']:<24} {row['accuracy']:8.2%} {row['accuracy_flip_tta']:9.2%}", flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({"source": splits.source, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
