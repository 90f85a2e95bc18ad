"""Classifies image files with a saved ViT.

```
python -m keras_vit.predict runs/vit/model.keras cat.jpg ship.png
python -m keras_vit.predict model.keras photos/ --top-k 3 --json
```

Each image is read with Pillow, converted to RGB and resized (bicubic) to
the model's input size; the printed probabilities are the softmax of the
model's logits. A folder argument stands for the images directly in it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from keras_vit.evaluate import (TTA_CHOICES, CLIError, _first_line, load_model_checked, positive_int, softmax,
                                tta_logits)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def load_image(path, size) -> np.ndarray:
    """Reads an image file as uint8 RGB at the given size.

    Applies the EXIF orientation (phone photos), converts grayscale, palette
    and RGBA images to RGB, and resizes with bicubic filtering, as
    `keras_vit.data` does for image folders.

    Args:
        path: image file.
        size: `(height, width)`.

    Returns:
        uint8 array `(height, width, 3)`.

    Raises:
        OSError / ValueError (from Pillow) for missing or unreadable files.
    """
    from PIL import Image, ImageOps

    height, width = (int(v) for v in size)
    with Image.open(path) as image:
        image.draft("RGB", (width, height))  # JPEG: decode at a reduced scale, much faster.
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")  # Avoids Pillow's palette-transparency warning.
        image = image.convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.uint8)


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Replaces each folder in `paths` by the image files directly in it, sorted."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            out.append(p)
    return out


def top_k(probabilities, class_names: Sequence[str], k: int) -> list[list[dict]]:
    """The `k` most probable classes of each row, most probable first.

    Args:
        probabilities: `(n, num_classes)` array.
        class_names: the `num_classes` names.
        k: how many classes to keep (capped at `num_classes`).

    Returns:
        For each row, a list of `{"label", "index", "probability"}` dicts.
    """
    probabilities = np.asarray(probabilities)
    k = min(int(k), probabilities.shape[-1])
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return [
        [{"label": class_names[i], "index": int(i), "probability": float(row[i])} for i in idx]
        for row, idx in zip(probabilities, order)
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keras_vit.predict",
        description="Classify image files with a saved ViT (.keras): prints the top-k classes "
        "and their probabilities.",
    )
    parser.add_argument("model", help="path of the .keras model file")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (or folders of images)")
    parser.add_argument("--top-k", type=positive_int, metavar="K", default=5, help="classes to show per image (default: 5)")
    parser.add_argument("--labels", metavar="FILE", help="class names file, one per line (default: labels.txt beside the model)")
    parser.add_argument("--batch-size", type=positive_int, metavar="B", default=64, help="images per batch (default: 64)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--tta", choices=TTA_CHOICES, default="none",
                        help="test-time augmentation: 'flip' (2 predictions an image) or 'flip-shift' (10); as "
                        "python -m keras_vit.evaluate --tta (default: none)")
    return parser


def run(args) -> tuple[list[dict], list[dict]]:
    """Runs predictions for parsed arguments.

    Returns:
        `(predictions, errors)`: one `{"image", "top_k"}` dict per readable
        image, one `{"image", "error"}` dict per unreadable one.
    """
    from keras_vit.labels import labels_for_model

    model_path = Path(args.model)
    model = load_model_checked(model_path)
    try:
        class_names = labels_for_model(model_path, int(model.output_shape[-1]), args.labels)
    except (OSError, ValueError) as e:
        raise CLIError(_first_line(e)) from None

    size = model.input_shape[1:3]
    paths = expand_paths(args.images)
    if not paths:
        raise CLIError(f"no image files found in {', '.join(args.images)}")
    images, readable, errors = [], [], []
    for path in paths:
        try:
            images.append(load_image(path, size))
            readable.append(path)
        except Exception as e:  # Pillow raises many types for bad files.
            reason = "file does not exist" if not path.exists() else f"{type(e).__name__}: {_first_line(e)}"
            errors.append({"image": str(path), "error": reason})
            print(f"error: cannot read image {path}: {reason}", file=sys.stderr)
    predictions = []
    if images:
        logits = tta_logits(model, np.stack(images), args.tta, args.batch_size, progress=len(images) > 256)
        ranked = top_k(softmax(logits), class_names, args.top_k)
        predictions = [{"image": str(p), "top_k": r} for p, r in zip(readable, ranked)]
    return predictions, errors


def format_predictions(predictions: list[dict]) -> str:
    """The text the CLI prints: each image, then its ranked classes."""
    lines = []
    for item in predictions:
        lines.append(item["image"])
        width = max(len(p["label"]) for p in item["top_k"])
        for rank, p in enumerate(item["top_k"], 1):
            lines.append(f"  {rank}. {p['label']:<{width}}  {100 * p['probability']:6.2f}%")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if any image failed)."""
    args = build_parser().parse_args(argv)
    try:
        predictions, errors = run(args)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"model": str(Path(args.model)), "predictions": predictions, "errors": errors}, indent=2))
    elif predictions:
        print(format_predictions(predictions))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
