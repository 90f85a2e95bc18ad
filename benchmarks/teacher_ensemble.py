"""Test accuracy of teachers alone and averaged, as `python -m keras_vit.train --teacher A B` would distil them.

    python benchmarks/teacher_ensemble.py A/model.keras B/model.keras --data-dir DIR [--output ensemble.json]

Loads each teacher and their average with `keras_vit.teacher.load_teacher`
(the training code path), classifies the test split plainly, with each
image's mirror averaged in (what `--teacher-flip` distils) and, with `--tta
flip-shift`, also with one-pixel shifts (`keras_vit.evaluate --tta flip-shift`),
and prints a table; `--output` writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def accuracies(model, images, labels, batch_size, tta="flip"):
    """`{"accuracy": plain, "accuracy_flip": ..., ["accuracy_flip_shift": ...]}` from one pass over `tta`'s views."""
    from keras_vit.inference import view_logits
    from keras_vit.tta import tta_accuracies

    scored = tta_accuracies(view_logits(model, images, tta, batch_size, progress=False), labels)
    return {
        "accuracy" if name == "none" else f"accuracy_{name.replace('-', '_')}": value
        for name, value in scored.items()
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("teachers", nargs="+", help=".keras teachers (python -m keras_vit.teacher)")
    parser.add_argument(
        "--data-dir", default=None, help="CIFAR-10 location (default: $KERAS_VIT_DATA_DIR, ...)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="use N test images, drawn evenly from the classes"
    )
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--tta",
        choices=("flip", "flip-shift"),
        default="flip",
        help="also score this test-time augmentation (default: flip; flip-shift: 10 predictions)",
    )
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    from keras_vit.data import load_cifar10
    from keras_vit.models.teachers import load_teacher

    missing = [path for path in args.teachers if not Path(path).is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    splits = load_cifar10(args.data_dir, limit=args.limit, splits=("test",))
    image_size = tuple(splits.x_test.shape[1:3])
    rows = []
    columns = ["accuracy", "accuracy_flip"] + (["accuracy_flip_shift"] if args.tta == "flip-shift" else [])
    print(
        f"{'teacher':<40}"
        + "".join(f" {c.replace('accuracy_', '') if c != 'accuracy' else 'plain':>10}" for c in columns)
    )
    candidates = [[path] for path in args.teachers] + ([args.teachers] if len(args.teachers) > 1 else [])
    for paths in candidates:
        model = load_teacher(paths, image_size, splits.num_classes)
        row = {
            "teachers": paths,
            **accuracies(model, splits.x_test, splits.y_test, args.batch_size, args.tta),
        }
        rows.append(row)
        name = paths[0] if len(paths) == 1 else f"mean of {len(paths)}"
        print(f"{name[-40:]:<40}" + "".join(f" {row[c]:10.2%}" for c in columns), flush=True)
    if args.output:
        from keras_vit.files import atomic_write_text

        atomic_write_text(
            Path(args.output),
            json.dumps({"test_images": int(len(splits.y_test)), "rows": rows}, indent=2) + "\n",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
