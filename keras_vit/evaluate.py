"""Evaluates a saved ViT on a labelled dataset.

```
python -m keras_vit.evaluate runs/vit/model.keras --data-dir /data/cifar10-jpeg
python -m keras_vit.evaluate model.keras --data-dir my_images --split test --limit 500
```

Prints the accuracy and a per-class accuracy table, and writes
`evaluation.json` and `confusion_matrix.png` (by default beside the model).
Every number is computed here, with numpy, from the model's predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

# numpy only: the deployment runtime's views, so that Keras and the exported files average the same images.
from export.runtime import TTA_CHOICES, TTA_VIEW_COUNTS, tta_accuracies, tta_views  # noqa: F401

LAYOUT_HELP = """\
data layouts:
  DIR/{train,test}/<class>/*.png|jpg   an image-folder tree; images are resized to the
                                       model's input size, classes are matched to the
                                       model's labels by name; only the --split
                                       folder is read (DIR/test alone is enough)
  DIR/cifar-10-batches-py/             the official CIFAR-10 python batches (or DIR itself)
Without --data-dir, $KERAS_VIT_DATA_DIR and the usual CIFAR-10 places are tried.

The model's class names come from --labels, else labels.txt beside the model, else
the CIFAR-10 names for a 10-class model.
"""


class CLIError(Exception):
    """An error the command line reports as one `error: ...` line."""


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# --------------------------------------------------------------------------
# Shared with `keras_vit.predict`.


def load_model_checked(path):
    """Loads a `.keras` classifier in safe mode, with one-line errors.

    Args:
        path: path of the `.keras` file.

    Returns:
        The `keras.Model`.

    Raises:
        CLIError: if the file is missing, unreadable, or not a model taking
            `(batch, height, width, channels)` images to `(batch,
            num_classes)` logits.
    """
    path = Path(path)
    if not path.exists():
        raise CLIError(f"model file {path} does not exist")
    if path.is_dir():
        raise CLIError(f"{path} is a directory; expected a .keras model file")
    from keras_vit import load_model

    try:
        model = load_model(path)
    except Exception as e:  # Keras raises many types for bad files.
        raise CLIError(f"could not load model {path}: {type(e).__name__}: {_first_line(e)}") from None
    if len(model.inputs) != 1 or len(model.input_shape) != 4 or len(model.output_shape) != 2:
        raise CLIError(
            f"{path} is not an image classifier: input shape {model.input_shape}, "
            f"output shape {model.output_shape}"
        )
    if None in model.input_shape[1:]:
        raise CLIError(f"{path} has no fixed input size: {model.input_shape}")
    return model


def predict_logits(model, images, batch_size: int = 256, progress: bool = True, desc: str = "predict"):
    """Runs the model over `images` in batches and returns the logits.

    The last, partial batch is padded to `batch_size` so the compiled
    prediction function is not traced a second time for a new shape.

    Args:
        model: a `keras.Model` taking float images 0..255.
        images: array `(n, height, width, channels)`, uint8 or float.
        batch_size: images per call.
        progress: whether to show a tqdm progress bar (only on a terminal).
        desc: progress bar label.

    Returns:
        float32 numpy array `(n, num_classes)`.
    """
    from tqdm import tqdm

    images = np.asarray(images)
    n = len(images)
    batch_size = max(1, int(batch_size))
    logits = None
    with tqdm(total=n, desc=desc, unit="img", disable=None if progress else True, file=sys.stderr) as bar:
        for start in range(0, n, batch_size):
            batch = images[start:start + batch_size].astype("float32")
            size = len(batch)
            if size < batch_size and n > batch_size:
                pad = np.zeros((batch_size - size, *batch.shape[1:]), "float32")
                batch = np.concatenate([batch, pad])
            out = np.asarray(model.predict_on_batch(batch), dtype="float32")[:size]
            if logits is None:
                logits = np.empty((n, out.shape[-1]), "float32")
            logits[start:start + size] = out
            bar.update(size)
    if logits is None:
        raise ValueError("No images to predict.")
    return logits


def view_logits(model, images, tta: str = "none", batch_size: int = 256, progress: bool = True,
                desc: str = "predict"):
    """`predict_logits` of each view of a test-time augmentation.

    Args:
        tta: one of `TTA_CHOICES`; its views (`export.runtime.tta_views`,
            the same images the deployment runtime averages): `"none"` the
            images; `"flip"` also their mirror images (the training flip);
            `"flip-shift"` also both shifted by one pixel in each diagonal
            direction (reflect padding, as the training crop): 10 views.
        other arguments: as `predict_logits`.

    Returns:
        A list of float32 arrays `(n, num_classes)`, plain images first,
        mirror images second (`export.runtime.tta_accuracies` scores every
        augmentation the list covers).
    """
    # tta_views rejects an unknown name (RuntimeModelError, a ValueError) before the first view.
    return [predict_logits(model, view, batch_size, progress,
                           desc if tta == "none" else f"{desc} (view {i}/{TTA_VIEW_COUNTS[tta]})")
            for i, view in enumerate(tta_views(images, tta), 1)]


def tta_logits(model, images, tta: str = "none", batch_size: int = 256, progress: bool = True,
               desc: str = "predict"):
    """`predict_logits`, or its mean over the views of a test-time augmentation.

    Args:
        tta: `"none"`, `"flip"` (twice the prediction cost) or `"flip-shift"`
            (ten times; see `view_logits`). What each pays on the shipped
            vit_cifar10 (flip-shift about a point, flip alone little):
            benchmarks/README.md, "The shipped model and test-time augmentation".
        other arguments: as `predict_logits`.
    """
    return np.mean(view_logits(model, images, tta, batch_size, progress, desc), axis=0)


def softmax(logits) -> np.ndarray:
    """Numerically stable softmax over the last axis (numpy)."""
    logits = np.asarray(logits, dtype="float64")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------
# Metrics.


def evaluation_metrics(logits, labels, class_names: Sequence[str]) -> dict:
    """Accuracy, top-5 accuracy, loss, per-class accuracy and confusion matrix.

    Args:
        logits: `(n, num_classes)` model outputs.
        labels: `(n,)` true labels in the model's label order.
        class_names: the model's `num_classes` class names.

    Returns:
        A JSON-serialisable dict: `num_images`, `correct`, `accuracy`,
        `top5_accuracy` (for more than 5 classes), `loss` (mean
        cross-entropy), `mean_per_class_accuracy` (over the classes present),
        `per_class` (a list of `{"class", "count", "correct", "accuracy"}`,
        accuracy `None` for absent classes) and `confusion_matrix` (rows =
        true class).
    """
    from keras_vit.plots import confusion_matrix

    logits = np.asarray(logits, dtype="float64")
    labels = np.asarray(labels).astype("int64").reshape(-1)
    num_classes = len(class_names)
    if logits.shape != (len(labels), num_classes):
        raise ValueError(f"logits {logits.shape} do not match {len(labels)} labels x {num_classes} classes.")
    predicted = logits.argmax(axis=-1)
    correct = predicted == labels
    matrix = confusion_matrix(labels, predicted, num_classes)
    log_probs = logits - logits.max(axis=-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(axis=-1, keepdims=True))
    per_class = []
    for i, name in enumerate(class_names):
        count = int(matrix[i].sum())
        hits = int(matrix[i, i])
        per_class.append(
            {"class": name, "count": count, "correct": hits, "accuracy": hits / count if count else None}
        )
    present = [c["accuracy"] for c in per_class if c["count"]]
    results = {
        "num_images": int(len(labels)),
        "correct": int(correct.sum()),
        "accuracy": float(correct.mean()),
    }
    if num_classes > 5:
        top5 = np.argsort(-logits, axis=-1, kind="stable")[:, :5]
        results["top5_accuracy"] = float((top5 == labels[:, None]).any(axis=-1).mean())
    results.update(
        loss=float(-log_probs[np.arange(len(labels)), labels].mean()),
        mean_per_class_accuracy=float(np.mean(present)),
        per_class=per_class,
        confusion_matrix=matrix.tolist(),
    )
    return results


def format_table(results: dict) -> str:
    """The per-class accuracy table printed by the CLI."""
    width = max(5, *(len(c["class"]) for c in results["per_class"]))
    lines = [f"{'class':<{width}}  accuracy  correct/total"]
    for c in results["per_class"]:
        acc = f"{c['accuracy']:.4f}" if c["accuracy"] is not None else "     -"
        lines.append(f"{c['class']:<{width}}  {acc:>8}  {c['correct']:>7}/{c['count']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Data.


def _class_folders(root: Path) -> list[str]:
    for split in ("train", "test"):
        if (root / split).is_dir():
            return sorted(e.name for e in os.scandir(root / split) if e.is_dir() and not e.name.startswith("."))
    return []


def _resize_images(images, size):
    from PIL import Image

    height, width = size
    out = np.empty((len(images), height, width, images.shape[-1]), np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))
    return out


def load_split(data_dir, split: str, image_size, limit=None, seed: int = 0, cache_dir=None):
    """Loads one split of a dataset at the model's input size.

    A CIFAR-10 source (the official batches, or an image-folder tree with
    exactly the CIFAR-10 class folders when the model takes 32x32 images) is
    read with `keras_vit.data.load_cifar10`; any other image-folder tree with
    `keras_vit.data.load_image_folder`, resized to `image_size`.

    Args:
        data_dir: dataset folder, or None to let `load_cifar10` search
            (`$KERAS_VIT_DATA_DIR`, standard places).
        split: `"train"` or `"test"`.
        image_size: `(height, width)` of the model input.
        limit: optional number of images, drawn evenly from the classes.
        seed: seed of the `limit` selection.
        cache_dir: decoded-array cache folder (False disables it).

    Returns:
        Tuple `(images uint8 (n, h, w, 3), labels int32 (n,), class_names,
        source, num_skipped)`; labels index `class_names` (the data's order).
    """
    from keras_vit import data

    size = tuple(int(v) for v in image_size)
    root = Path(data_dir).expanduser() if data_dir is not None else None
    is_folder = root is not None and ((root / "train").is_dir() or (root / "test").is_dir())
    cifar_like = not is_folder or (set(_class_folders(root)) == set(data.CIFAR10_CLASSES) and size == (32, 32))
    # Only `split` is read: a folder may lack the other one, and it is not decoded.
    if cifar_like:
        splits = data.load_cifar10(root, limit=limit, seed=seed, cache_dir=cache_dir, splits=(split,))
    else:
        splits = data.load_image_folder(
            root, image_size=size, limit=limit, seed=seed, cache_dir=cache_dir, splits=(split,)
        )
    x, y = (splits.x_train, splits.y_train) if split == "train" else (splits.x_test, splits.y_test)
    if tuple(x.shape[1:3]) != size:  # CIFAR-10 batches for a model of another resolution.
        x = _resize_images(x, size)
    return x, np.asarray(y, np.int32), tuple(splits.class_names), splits.source, len(splits.skipped)


def match_labels(labels, data_classes: Sequence[str], model_classes: Sequence[str]) -> np.ndarray:
    """Maps data labels to the model's label order by class name.

    Args:
        labels: int labels indexing `data_classes`.
        data_classes: the dataset's class names.
        model_classes: the model's class names.

    Returns:
        int32 labels indexing `model_classes`.

    Raises:
        CLIError: if a data class is not one of the model's classes.
    """
    index = {name: i for i, name in enumerate(model_classes)}
    unknown = [name for name in data_classes if name not in index]
    if unknown:
        raise CLIError(
            f"data classes {unknown} are not among the model's classes ({', '.join(model_classes)}); "
            "pass --labels FILE with the model's class names"
        )
    mapping = np.asarray([index[name] for name in data_classes], np.int32)
    return mapping[np.asarray(labels, np.int64)]


# --------------------------------------------------------------------------
# Command line.


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
    parser.add_argument("--split", choices=("test", "train"), default="test", help="split to evaluate (default: test)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="evaluate only N images, drawn evenly from the classes")
    parser.add_argument("--seed", type=int, metavar="S", default=0, help="seed of the --limit selection (default: 0)")
    parser.add_argument("--batch-size", type=positive_int, metavar="B", default=256, help="images per batch (default: 256)")
    parser.add_argument("--tta", choices=TTA_CHOICES, default="none",
                        help="test-time augmentation: 'flip' averages the logits of each image and its mirror "
                        "image (twice the cost), 'flip-shift' also both shifted by one pixel in each diagonal "
                        "direction (ten times the cost; default: none)")
    parser.add_argument("--output", metavar="DIR", help="folder for evaluation.json and confusion_matrix.png (default: "
                        "beside the model; for a model shipped in keras_vit/pretrained, runs/evaluate/NAME here)")
    parser.add_argument("--labels", metavar="FILE", help="class names file, one per line (default: labels.txt beside the model)")
    parser.add_argument("--cache-dir", metavar="DIR", help="decoded-image cache folder (default: $KERAS_VIT_CACHE_DIR or ~/.cache/keras_vit)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the decoded-image cache")
    return parser


def default_output_dir(model_path):
    """Where `evaluate` writes when `--output` is not given: beside the model, except
    for a model shipped inside the package, whose folder may be read-only (an
    installed package) and is not the user's: `runs/evaluate/<name>` under the
    current folder instead."""
    from keras_vit.pretrained import HERE as PRETRAINED_DIR

    folder = Path(model_path).absolute().parent
    if folder.resolve() == PRETRAINED_DIR:
        return Path("runs") / "evaluate" / Path(model_path).stem
    return folder


def _bounded_int(text, low, what):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text):
    """argparse type: a positive int, with a clear message otherwise."""
    return _bounded_int(text, 1, "a positive integer")


def non_negative_int(text):
    """argparse type: an int >= 0, with a clear message otherwise."""
    return _bounded_int(text, 0, "a non-negative integer")


def run(args) -> dict:
    """Runs an evaluation for parsed arguments; returns the results dict."""
    import keras

    from keras_vit import data
    from keras_vit.labels import atomic_write_text, labels_for_model
    from keras_vit.plots import plot_confusion_matrix

    model_path = Path(args.model)
    model = load_model_checked(model_path)
    num_classes = int(model.output_shape[-1])
    try:
        class_names = labels_for_model(model_path, num_classes, args.labels)
    except (OSError, ValueError) as e:
        raise CLIError(_first_line(e)) from None

    cache_dir = False if args.no_cache else args.cache_dir
    try:
        x, y, data_classes, source, skipped = load_split(
            args.data_dir, args.split, model.input_shape[1:3], args.limit, args.seed, cache_dir
        )
    except data.DataNotFoundError as e:
        if args.data_dir is None:  # The whole message: every source searched, why each failed, how to point at a copy.
            raise CLIError(str(e)) from None
        raise CLIError(f"{_first_line(e)} (see --help for the expected layouts)") from None
    except (OSError, ValueError) as e:
        raise CLIError(f"could not load the data: {_first_line(e)}") from None
    if len(y) == 0:
        raise CLIError(f"the {args.split} split of {source} has no images")
    if tuple(data_classes) != tuple(class_names):
        print(f"Matching data classes to the model's {num_classes} classes by name.")
    y = match_labels(y, data_classes, class_names)

    print(f"Model: {model_path} ({model.count_params():,} parameters, backend {keras.backend.backend()})")
    print(f"Data: {args.split} split, {len(y)} images, from {source}")
    start = time.perf_counter()
    logits = tta_logits(model, x, args.tta, args.batch_size, desc=f"evaluate {args.split}")
    seconds = time.perf_counter() - start

    results = {
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

    output = Path(args.output) if args.output else default_output_dir(model_path)
    output.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_text(output / "evaluation.json", json.dumps(results, indent=2) + "\n")
    plot_path = plot_confusion_matrix(
        np.asarray(results["confusion_matrix"]), class_names, output / "confusion_matrix.png",
        title=f"{model_path.name} on {args.split} ({len(y)} images): accuracy {results['accuracy']:.4f}",
    )

    print()
    print(format_table(results))
    print()
    line = f"Accuracy: {results['accuracy']:.4f} ({results['correct']}/{results['num_images']})"
    if "top5_accuracy" in results:
        line += f", top-5 accuracy: {results['top5_accuracy']:.4f}"
    print(line + f", loss: {results['loss']:.4f}")
    print(f"Wrote {json_path} and {plot_path}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
