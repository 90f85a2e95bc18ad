"""Test accuracy of exported files with and without test-time augmentation.

    python benchmarks/tta_exports.py EXPORT_DIR --data-dir DIR [--output tta.json] [--tta flip]

Runs every `.tflite` and `.onnx` file of an export folder (`python -m export
MODEL EXPORT_DIR`) in its own runtime (ai-edge-litert, onnxruntime; no
TensorFlow) on the test split, once per view of `export.tta_views`
(ten for the default `--tta flip-shift`), and scores the plain images, the
flip (2 views) and the flip-shift (10 views) averages from those predictions
(`export.tta_accuracies`). Prints a table and writes JSON when
`--output` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from export import runtime  # noqa: E402
from keras_vit.tta import TTA_CHOICES, TTA_VIEW_COUNTS, tta_accuracies, tta_metric_name, tta_views  # noqa: E402


def measure(path, images, labels, tta="flip-shift"):
    """`{"file", "accuracy", "accuracy_<tta>_tta"..., "images", "seconds"}` of one exported file."""
    model = runtime.load(path)
    start = time.perf_counter()
    views = [model.predict(view) for view in tta_views(images, tta)]
    seconds = time.perf_counter() - start
    row = {"file": Path(path).name}
    for name, accuracy in tta_accuracies(views, labels).items():
        row[tta_metric_name(name)] = accuracy
    row.update(images=int(len(labels)), views=len(views), seconds=round(seconds, 1))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("export_dir")
    parser.add_argument(
        "--data-dir", default=None, help="CIFAR-10 location (default: $KERAS_VIT_DATA_DIR, ...)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="use N test images, drawn evenly from the classes"
    )
    parser.add_argument(
        "--tta",
        choices=TTA_CHOICES[1:],
        default="flip-shift",
        help="the widest augmentation to score; every narrower one comes from its first views "
        "(default: flip-shift, 10 predictions of the test set per file)",
    )
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    from keras_vit.data import load_cifar10

    export_dir = Path(args.export_dir)
    if not export_dir.is_dir():
        parser.error(f"{export_dir} is not a folder")
    files = sorted(p for p in export_dir.iterdir() if p.suffix in (".tflite", ".onnx"))
    if not files:
        parser.error(f"no .tflite or .onnx files in {export_dir}")
    splits = load_cifar10(args.data_dir, limit=args.limit, splits=("test",))
    names = [tta for tta in TTA_CHOICES if TTA_VIEW_COUNTS[tta] <= TTA_VIEW_COUNTS[args.tta]]
    print(
        f"{'file':<24}"
        + "".join(f" {name if name != 'none' else 'plain':>10}" for name in names)
        + f" {'seconds':>8}"
    )
    results = []
    for path in files:
        row = measure(path, splits.x_test, splits.y_test, args.tta)
        results.append(row)
        print(
            f"{row['file']:<24}"
            + "".join(f" {row[tta_metric_name(name)]:10.2%}" for name in names)
            + f" {row['seconds']:8.0f}",
            flush=True,
        )
    if args.output:
        from keras_vit.files import atomic_write_text

        atomic_write_text(
            Path(args.output), json.dumps({"source": splits.source, "results": results}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
