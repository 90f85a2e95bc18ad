"""Classifies image files with a saved ViT.

```
python -m keras_vit.predict runs/vit/model.keras cat.jpg ship.png
python -m keras_vit.predict model.keras photos/ --top-k 3 --json
```

Each image is decoded by `keras_vit.data.decode_image` (RGB, resized with
bicubic filtering to the model's input size: the pixels the training data
loader and the deployment runtime see); the printed probabilities are the
softmax of the model's logits. A folder argument stands for the images
directly in it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from keras_vit.cli_utils import (
    CLIError,
    Terminated,
    console_output,
    exits_quietly_on_closed_stdout,
    expand_wildcards,
    first_line,
    interrupted_in_one_line,
    interrupted_status,
    missing_backend_in_one_line,
    positive_int,
    print_error,
    stop_on_signals,
)
from keras_vit.data import decode_images
from keras_vit.data.folders import is_image_file, list_folder
from keras_vit.labels import cifar10_names_note, labels_and_where
from keras_vit.metrics import format_predictions, softmax, top_k
from keras_vit.tta import TTA_CHOICES


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Replaces each folder in `paths` by the image files directly in it, sorted, as training lists a class
    folder's (`IMAGE_EXTENSIONS`; dot-files such as macOS `._x.jpg` left out). A broken link among them stays, to
    be reported as unreadable with the others."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            unlisted: dict[str, str] = {}
            files = list_folder(p, unlisted)[1] + list(unlisted)
            out += sorted(Path(f) for f in files if is_image_file(Path(f).name))
        else:
            out.append(p)
    return out


def read_images(paths: Sequence[Path], size) -> tuple[np.ndarray | None, list[Path], list[dict]]:
    """Decodes image files at the model's input size, reporting the unreadable ones.

    Args:
        paths: image files.
        size: `(height, width)`.

    Returns:
        `(images, readable, errors)` of `keras_vit.data.decode_images`: uint8
        images `(n, height, width, 3)` of the readable files (`None` if there
        is none), those files, and one `{"image", "error"}` dict per
        unreadable file (also printed on stderr, one line each).
    """
    images, readable, errors = decode_images([Path(p) for p in paths], size)
    for error in errors:
        print_error(f"cannot read image {error['image']}: {error['error']}")
    return images, readable, errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keras_vit.predict",
        description="Classify image files with a saved ViT (.keras): prints the top-k classes "
        "and their probabilities.",
    )
    parser.add_argument("model", help="path of the .keras model file")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (or folders of images)")
    parser.add_argument(
        "--top-k", type=positive_int, metavar="K", default=5, help="classes to show per image (default: 5)"
    )
    parser.add_argument(
        "--labels",
        metavar="FILE",
        help="class names file, one per line (default: <model>.labels.txt or labels.txt beside the model)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, metavar="B", default=64, help="images per batch (default: 64)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument(
        "--tta",
        choices=TTA_CHOICES,
        default="none",
        help="test-time augmentation: 'flip' (2 predictions an image) or 'flip-shift' (10); as "
        "python -m keras_vit.evaluate --tta (default: none)",
    )
    return parser


def run(args) -> tuple[list[dict], list[dict]]:
    """Runs predictions for parsed arguments.

    Returns:
        `(predictions, errors)`: one `{"image", "top_k"}` dict per readable
        image, one `{"image", "error"}` dict per unreadable one.
    """
    from keras_vit import inference  # Keras loads here, after the flags: --help and bad flags answer at once

    model_path = Path(args.model)
    model = inference.load_model_checked(model_path)
    try:
        class_names, found = labels_and_where(model_path, int(model.output_shape[-1]), args.labels)
    except (OSError, ValueError) as e:
        raise CLIError(first_line(e)) from None
    if found is None:  # a user's 10 classes would be shown as CIFAR-10's
        print(f"note: {cifar10_names_note(model_path)}", file=sys.stderr)

    paths = expand_paths(expand_wildcards(args.images))
    if not paths:
        raise CLIError(f"no image files found in {', '.join(args.images)}")
    images, readable, errors = read_images(paths, model.input_shape[1:3])
    predictions = []
    if images is not None:
        logits = inference.tta_logits(model, images, args.tta, args.batch_size, progress=len(images) > 256)
        ranked = top_k(softmax(logits), class_names, args.top_k)
        predictions = [{"image": str(p), "top_k": r} for p, r in zip(readable, ranked)]
    return predictions, errors


@exits_quietly_on_closed_stdout
def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input, 1 if any image failed)."""
    args = build_parser().parse_args(argv)
    try:
        with stop_on_signals():  # SIGTERM too, and SIGINT in a background job
            predictions, errors = run(args)
    except CLIError as e:
        print_error(e)
        return e.exit_status
    except (KeyboardInterrupt, Terminated) as stop:
        print_error("interrupted")
        return interrupted_status(stop)
    if args.json:
        print(
            json.dumps(
                {"model": str(Path(args.model)), "predictions": predictions, "errors": errors}, indent=2
            )
        )
    elif predictions:
        print(format_predictions(predictions))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(interrupted_in_one_line(missing_backend_in_one_line(console_output(main)))())
