"""Evaluates a saved ViT on a labelled dataset.

```
python -m keras_vit.evaluate runs/vit/model.keras --data-dir /data/cifar10-jpeg
python -m keras_vit.evaluate model.keras --data-dir my_images --split test --limit 500
```

Prints the accuracy and a per-class accuracy table, and writes
`evaluation.json` and `confusion_matrix.png` (by default beside the model).
Every number is computed with numpy (`keras_vit.metrics`) from the model's
logits (`keras_vit.inference`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from keras_vit import data
from keras_vit.cli_utils import (
    CLIError,
    Terminated,
    console_output,
    exits_quietly_on_closed_stdout,
    first_line,
    interrupted_in_one_line,
    interrupted_status,
    missing_backend_in_one_line,
    os_error_reason,
    output_folder,
    positive_int,
    print_error,
    stop_on_signals,
)
from keras_vit.data.streaming import UnreadableImageError
from keras_vit.files import atomic_write_json
from keras_vit.labels import labels_for_model
from keras_vit.metrics import evaluation_metrics
from keras_vit.plots import plot_confusion_matrix
from keras_vit.pretrained import HERE as PRETRAINED_DIR
from keras_vit.tta import TTA_CHOICES, TTA_HELP

# Free space `--output` must have: evaluation.json and the confusion-matrix PNG are well under this.
OUTPUT_BYTES = 2**20

LAYOUT_HELP = """\
data layouts:
  DIR/{train,test}/<class>/*.png|jpg   an image-folder tree; images are resized to the
                                       model's input size, classes are matched to the
                                       model's labels by name; only the --split
                                       folder is read (DIR/test alone is enough)
  DIR/cifar-10-batches-py/             the official CIFAR-10 python batches (or DIR itself)
Without --data-dir, $KERAS_VIT_DATA_DIR and the usual CIFAR-10 places are tried.

The model's class names come from --labels, else <model>.labels.txt or labels.txt
beside the model, else the CIFAR-10 names for a 10-class model.
"""


def format_table(results: dict) -> str:
    """The per-class accuracy table printed by the CLI."""
    width = max(5, *(len(c["class"]) for c in results["per_class"]))
    lines = [f"{'class':<{width}}  accuracy  correct/total"]
    for c in results["per_class"]:
        acc = f"{c['accuracy']:.4f}" if c["accuracy"] is not None else "     -"
        lines.append(f"{c['class']:<{width}}  {acc:>8}  {c['correct']:>7}/{c['count']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keras_vit.evaluate",
        description="Evaluate a saved ViT (.keras) on a labelled dataset: accuracy, per-class "
        "accuracy, confusion matrix.",
        epilog=LAYOUT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="path of the .keras model file")
    parser.add_argument("--data-dir", metavar="DIR", help="dataset folder (see 'data layouts' below)")
    parser.add_argument(
        "--split", choices=("test", "train"), default="test", help="split to evaluate (default: test)"
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="evaluate only N images, drawn evenly from the classes",
    )
    parser.add_argument(
        "--seed", type=int, metavar="S", default=0, help="seed of the --limit selection (default: 0)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, metavar="B", default=256, help="images per batch (default: 256)"
    )
    parser.add_argument("--tta", choices=TTA_CHOICES, default="none", help=TTA_HELP)
    parser.add_argument(
        "--output",
        metavar="DIR",
        help="folder for evaluation.json and confusion_matrix.png (default: beside the model; "
        "for a model shipped in keras_vit/pretrained, runs/evaluate/NAME here)",
    )
    parser.add_argument(
        "--labels",
        metavar="FILE",
        help="class names file, one per line (default: <model>.labels.txt or labels.txt beside the model)",
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="decoded-image cache folder (default: $KERAS_VIT_CACHE_DIR or ~/.cache/keras_vit)",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="do not read or write the decoded-image cache"
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="leave an image-folder tree's images on disk, decoded a few thousand at a time: for a split larger "
        "than memory (nothing is cached; an unreadable image stops the evaluation, named)",
    )
    return parser


def default_output_dir(model_path) -> Path:
    """Where `evaluate` writes when `--output` is not given.

    Beside the model, except for a model shipped inside the package, whose
    folder may be read-only (an installed package) and is not the user's:
    `runs/evaluate/<name>` under the current folder instead.
    """
    folder = Path(model_path).absolute().parent
    if folder.resolve() == PRETRAINED_DIR:
        return Path("runs") / "evaluate" / Path(model_path).stem
    return folder


def _load_data(args, model, class_names):
    """The `--split` images and their labels in the model's order, with one-line errors."""
    cache_dir = False if args.no_cache else args.cache_dir
    try:
        x, y, data_classes, source, skipped = data.load_split(
            args.data_dir, args.split, model.input_shape[1:3], args.limit, args.seed, cache_dir, args.stream
        )
    except data.DataNotFoundError as e:
        if (
            args.data_dir is None
        ):  # The whole message: every source searched, why each failed, how to point at a copy.
            raise CLIError(str(e)) from None
        raise CLIError(f"{first_line(e)} (see --help for the expected layouts)") from None
    except (OSError, ValueError) as e:
        raise CLIError(f"could not load the data: {first_line(e)}") from None
    if len(y) == 0:
        raise CLIError(f"the {args.split} split of {source} has no images")
    if tuple(data_classes) != tuple(class_names):
        print(f"Matching data classes to the model's {len(class_names)} classes by name.")
    try:
        y = data.match_labels(y, data_classes, class_names)
    except ValueError as e:
        raise CLIError(str(e)) from None
    return x, y, source, skipped


def run(args) -> dict:
    """Runs an evaluation for parsed arguments; returns the results dict."""
    # Heavy (Keras): imported after parsing, so that --help and usage errors are instant.
    from keras_vit import inference

    model_path = Path(args.model)
    model = inference.load_model_checked(model_path)
    num_classes = int(model.output_shape[-1])
    try:
        class_names = labels_for_model(model_path, num_classes, args.labels)
    except (OSError, ValueError) as e:
        raise CLIError(first_line(e)) from None
    output = Path(args.output) if args.output else default_output_dir(model_path)
    # Before the data loads: a folder that cannot take the results is found in a second, not after minutes.
    what = "--output" if args.output else "output folder"
    with output_folder(output, min_free_bytes=OUTPUT_BYTES, what=what):  # removed again if nothing is written
        results = _results(args, model, model_path, class_names)
        json_path, plot_path = _write_results(output, results, model_path.name)

    print()
    print(format_table(results))
    print()
    line = f"Accuracy: {results['accuracy']:.4f} ({results['correct']}/{results['num_images']})"
    if "top5_accuracy" in results:
        line += f", top-5 accuracy: {results['top5_accuracy']:.4f}"
    print(line + f", loss: {results['loss']:.4f}")
    print(f"Wrote {json_path} and {plot_path}")
    return results


def _results(args, model, model_path, class_names) -> dict:
    """Loads the split, runs the model over it, and gathers what `evaluation.json` holds."""
    import keras

    from keras_vit import inference

    x, y, source, skipped = _load_data(args, model, class_names)
    print(f"Model: {model_path} ({model.count_params():,} parameters, backend {keras.backend.backend()})")
    print(f"Data: {args.split} split, {len(y)} images, from {source}")
    start = time.perf_counter()
    try:  # a chunk of images at a time: a streamed split is never decoded whole
        logits = inference.tta_logits_in_chunks(
            model, x, args.tta, args.batch_size, desc=f"evaluate {args.split}"
        )
    except UnreadableImageError as error:  # a streamed image, found when its chunk was read
        raise CLIError(f"{error}: remove or replace it and rerun") from None
    seconds = time.perf_counter() - start
    return {
        "model": str(model_path.absolute()),
        "data": source,
        "split": args.split,
        "limit": args.limit,
        "seed": args.seed,
        "tta": args.tta,
        "skipped_images": skipped,
        "class_names": list(class_names),
        **evaluation_metrics(logits, y, class_names),
        "backend": keras.backend.backend(),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(y) / seconds, 1) if seconds > 0 else None,
    }


def _write_results(output: Path, results: dict, model_name: str) -> tuple[Path, Path]:
    """Writes the confusion-matrix picture, then `evaluation.json`; returns their paths."""
    try:
        output.mkdir(parents=True, exist_ok=True)  # again: another command's failure may have removed it
        # The results last, the previous ones removed first: a folder with an evaluation.json holds its picture.
        (output / "evaluation.json").unlink(missing_ok=True)
        plot_path = plot_confusion_matrix(
            np.asarray(results["confusion_matrix"]),
            results["class_names"],
            output / "confusion_matrix.png",
            title=f"{model_name} on {results['split']} ({results['num_images']} images): "
            f"accuracy {results['accuracy']:.4f}",
        )
        return atomic_write_json(output / "evaluation.json", results), plot_path
    except OSError as e:  # the disk filled up, or the folder went away, since the check
        raise CLIError(f"cannot write to {output}: {os_error_reason(e)}") from None


@exits_quietly_on_closed_stdout
def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input, as `CLIError` says)."""
    args = build_parser().parse_args(argv)
    try:
        with stop_on_signals():  # SIGTERM too, and SIGINT in a background job: files in progress are removed
            run(args)
    except CLIError as e:
        print_error(e)
        return e.exit_status
    except (KeyboardInterrupt, Terminated) as stop:
        print_error("interrupted")
        return interrupted_status(stop)
    return 0


if __name__ == "__main__":
    sys.exit(interrupted_in_one_line(missing_backend_in_one_line(console_output(main)))())
