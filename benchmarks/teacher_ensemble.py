"""Test accuracy of teachers alone and averaged, as `python -m keras_vit.train --teacher A B` would distil them.

    python benchmarks/teacher_ensemble.py A/model.keras B/model.keras --data-dir DIR [--output ensemble.json]

Loads each teacher and their average with `keras_vit.teacher.load_teacher`
(the training code path), classifies the test split plainly and with each
image's mirror averaged in (`--teacher-flip`), and prints a table; `--output`
writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def accuracies(model, images, labels, batch_size):
    from keras_vit.evaluate import flip_averaged, predict_logits

    plain = predict_logits(model, images, batch_size, progress=False)
    flipped = flip_averaged(model, images, plain, batch_size, progress=False)
    return {"accuracy": float(np.mean(plain.argmax(1) == labels)),
            "accuracy_flip": float(np.mean(flipped.argmax(1) == labels))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teachers", nargs="+", help=".keras teachers (python -m keras_vit.teacher)")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 location (default: $KERAS_VIT_DATA_DIR, ...)")
    parser.add_argument("--limit", type=int, default=None, help="use N test images, drawn evenly from the classes")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    from keras_vit.data import load_cifar10
    from keras_vit.teacher import load_teacher

    missing = [path for path in args.teachers if not Path(path).is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    splits = load_cifar10(args.data_dir, limit=args.limit, splits=("test",))
    image_size = tuple(splits.x_test.shape[1:3])
    rows = []
    print(f"{'teacher':<40} {'plain':>8} {'flip':>8}")
    candidates = [[path] for path in args.teachers] + ([args.teachers] if len(args.teachers) > 1 else [])
    for paths in candidates:
        model = load_teacher(paths, image_size, splits.num_classes)
        row = {"teachers": paths, **accuracies(model, splits.x_test, splits.y_test, args.batch_size)}
        rows.append(row)
        name = paths[0] if len(paths) == 1 else f"mean of {len(paths)}"
        print(f"{name[-40:]:<40} {row['accuracy']:8.2%} {row['accuracy_flip']:8.2%}", flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({"test_images": int(len(splits.y_test)), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
