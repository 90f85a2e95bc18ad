"""Which test-time shifts pay: a Keras model's test accuracy under variants of flip-shift TTA.

    python benchmarks/tta_variants.py [MODEL.keras] --data-dir DIR [--output tta_variants.json]

Predicts the test split once per view (the images and their mirror images,
shifted by 1 or 2 pixels in the 4 diagonal or all 8 directions, the border
filled by reflection, edge repetition or zeros) and scores each variant as
the mean of its views' logits. `--tta flip-shift` (`keras_vit.tta.tta_views`)
is the variant "shift 1, diagonal, reflect". The default model is the shipped
`vit_cifar10`. The variants are compared on the test set itself: read small
differences between them as noise, not as a choice made on held-out data.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from keras_vit.tta import shift_images  # noqa: E402

DIAGONAL = ((1, 1), (1, -1), (-1, 1), (-1, -1))
ALL_EIGHT = DIAGONAL + ((0, 1), (0, -1), (1, 0), (-1, 0))
# (name, shift in pixels, directions, numpy padding mode)
VARIANTS = (
    ("shift 1, diagonal, reflect (--tta flip-shift)", 1, DIAGONAL, "reflect"),
    ("shift 1, all 8 directions, reflect", 1, ALL_EIGHT, "reflect"),
    ("shift 1, diagonal, edge", 1, DIAGONAL, "edge"),
    ("shift 1, diagonal, zeros", 1, DIAGONAL, "constant"),
    ("shift 2, diagonal, reflect", 2, DIAGONAL, "reflect"),
)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "model", nargs="?", default=None, help=".keras model (default: the shipped vit_cifar10)"
    )
    parser.add_argument(
        "--data-dir", default=None, help="CIFAR-10 location (default: $KERAS_VIT_DATA_DIR, ...)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="use N test images, drawn evenly from the classes"
    )
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    from keras_vit.data import load_cifar10
    from keras_vit.files import atomic_write_text
    from keras_vit.inference import load_model_checked, predict_logits
    from keras_vit.pretrained import model_path

    path = args.model or model_path()
    model = load_model_checked(path)
    splits = load_cifar10(args.data_dir, limit=args.limit, splits=("test",))
    images, labels = splits.x_test, splits.y_test

    def accuracy(logits):
        return float(np.mean(np.mean(logits, axis=0).argmax(-1) == labels))

    cache = {}

    def view(dy, dx, mode, flip):
        # Shared views (the plain and mirror images; a shift in every variant using it) are predicted once.
        key = (dy, dx, mode if (dy, dx) != (0, 0) else None, flip)
        if key not in cache:
            picture = shift_images(images, dy, dx, mode) if (dy, dx) != (0, 0) else images
            cache[key] = predict_logits(
                model,
                picture[:, :, ::-1] if flip else picture,
                args.batch_size,
                desc=f"shift {dy:+d} {dx:+d} {mode}{' mirrored' if flip else ''}",
            )
        return cache[key]

    base = [view(0, 0, None, False), view(0, 0, None, True)]
    rows = [
        {"variant": "plain", "views": 1, "accuracy": accuracy(base[:1])},
        {"variant": "flip", "views": 2, "accuracy": accuracy(base)},
    ]
    for name, size, directions, mode in VARIANTS:
        views = base + [
            view(size * dy, size * dx, mode, flip)
            for (dy, dx), flip in itertools.product(directions, (False, True))
        ]
        rows.append({"variant": name, "views": len(views), "accuracy": accuracy(views)})
    for row in rows:
        print(f"{row['variant']:<48} {row['views']:>5} views {row['accuracy']:8.2%}")
    if args.output:
        atomic_write_text(
            Path(args.output),
            json.dumps(
                {"model": str(path), "source": splits.source, "test_images": int(len(labels)), "rows": rows},
                indent=2,
            )
            + "\n",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
