"""Figures for training, evaluation and ViT internals, saved as PNG files.

Every function draws on a standalone `matplotlib.figure.Figure` with the Agg
canvas: no `pyplot`, no global backend switch, no display needed, and safe to
call from worker threads or notebooks that use another backend. Files are
written to a temporary file and renamed into place, so a reader never sees a
half-written PNG. Every function returns the `Path` it wrote. The numbers
drawn are computed elsewhere (`keras_vit.metrics`, `keras_vit.attention_maps`).

```python
from keras_vit import metrics, plots

plots.plot_training_curves(plots.read_history_csv("run/history.csv"), "run/curves.png")
cm = metrics.confusion_matrix(y_true, y_pred, num_classes=10)
plots.plot_confusion_matrix(cm, class_names, "run/confusion_matrix.png")
```
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from keras_vit.files import atomic_write_bytes

PathLike = Union[str, "os.PathLike[str]"]

# Keras names the accuracy metric after what was passed to `compile`.
ACCURACY_KEYS = ("accuracy", "sparse_categorical_accuracy", "categorical_accuracy", "acc")
LEARNING_RATE_KEYS = ("learning_rate", "lr")


# --------------------------------------------------------------------------
# Helpers.


def _figure(width, height):
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, dpi=100):
    """Saves `fig` as a PNG at `path` atomically and returns the `Path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return atomic_write_bytes(path, buffer.getvalue())


def to_display_image(image):
    """Converts an image to something `imshow` shows as intended.

    Args:
        image: array `(height, width)`, `(height, width, 1)` or `(height,
            width, 3)`: uint8, or float in 0..255 (the model's input
            convention) or 0..1.

    Returns:
        A float32 array with values in `[0, 1]`, 2-D for grayscale.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise ValueError(f"Expected an image of shape (H, W), (H, W, 1) or (H, W, 3), got {image.shape}.")
    integer = np.issubdtype(image.dtype, np.integer)
    image = image.astype("float32")
    if integer or (image.size and np.nanmax(image) > 1.0):
        image = image / 255.0
    return np.clip(np.nan_to_num(image), 0.0, 1.0)


def _values(history, key):
    return np.asarray([np.nan if v is None else float(v) for v in history[key]], dtype="float64")


def _epochs(history, length):
    """1-based epoch numbers; CSVLogger's `epoch` column counts from 0."""
    if "epoch" in history and len(history["epoch"]) == length:
        epochs = _values(history, "epoch")
        if np.all(np.isfinite(epochs)):
            return epochs + 1 if epochs.size and epochs[0] == 0 else epochs
    return np.arange(1, length + 1, dtype="float64")


def unmasked_span(history):
    """`(first, last)` epoch (1-based) of an unmasked finish in `history` (`unmasked` = 1), or None."""
    if "unmasked" not in history:
        return None
    flags = _values(history, "unmasked")
    if not np.any(flags == 1):
        return None
    epochs = _epochs(history, len(flags))
    return float(epochs[int(np.argmax(flags == 1))]), float(epochs[-1])


# --------------------------------------------------------------------------
# Training history.


def read_history_csv(path: PathLike) -> dict[str, list[float]]:
    """Reads a `keras.callbacks.CSVLogger` file into a history dict.

    Args:
        path: path of the CSV file (a header row, then one row per epoch).

    Returns:
        dict mapping each column name (e.g. `"epoch"`, `"loss"`,
        `"val_accuracy"`, `"learning_rate"`) to a list of floats; empty or
        non-numeric cells become `nan`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file has no header row.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise ValueError(f"History file {path} is empty: expected a CSV header row.")
        history: dict[str, list[float]] = {name: [] for name in reader.fieldnames}
        for row in reader:
            for name in reader.fieldnames:
                try:
                    history[name].append(float(row.get(name)))
                except (TypeError, ValueError):
                    history[name].append(float("nan"))
    return history


def plot_training_curves(history, path: PathLike, title: str | None = None) -> Path:
    """Plots loss, accuracy and learning rate per epoch.

    One panel for the loss, one for every accuracy-like metric (train as a
    solid line, validation dashed, the best validation accuracy marked), and
    one for the learning rate when it was logged. The epochs of an unmasked
    finish (`keras_vit.training.callbacks.UnmaskedFinish`) are shaded.

    Args:
        history: dict of metric name -> list of per-epoch values (as in
            `keras.callbacks.History.history` or `read_history_csv`), or a
            `History` object. Recognised keys: `loss`, `val_loss`, any key
            ending in `accuracy` (e.g. `accuracy`,
            `sparse_categorical_accuracy`, `top5_accuracy`) or `acc`, their
            `val_` twins, and `learning_rate` / `lr`.
        path: output PNG path.
        title: optional figure title.

    Returns:
        The `Path` of the PNG.

    Raises:
        ValueError: if `history` has neither a loss nor an accuracy series.
    """
    history = getattr(history, "history", history)
    if not isinstance(history, Mapping):
        raise TypeError(f"history must be a dict of lists or a keras History, got {type(history).__name__}.")
    history = {k: list(v) for k, v in history.items() if len(list(v))}
    panels = _history_panels(history)
    fig = _figure(4.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    span = unmasked_span(history)
    for ax, (label, keys) in zip(axes, panels):
        _draw_history_panel(ax, label, keys, history, span)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _history_panels(history):
    """`[(panel title, metric names)]` of `plot_training_curves`: loss, accuracies, learning rate."""

    def is_accuracy(key):
        return key.endswith("accuracy") or key == "acc"

    train_keys = [k for k in history if not k.startswith("val_") and k != "epoch"]
    val_only = [k[4:] for k in history if k.startswith("val_") and k[4:] not in history]
    names = train_keys + val_only
    loss_names = [k for k in names if k == "loss"]
    acc_names = [k for k in names if is_accuracy(k)]
    # The main accuracy first (it gets the "best" marker and the first colour).
    acc_names.sort(
        key=lambda k: (k not in ACCURACY_KEYS, ACCURACY_KEYS.index(k) if k in ACCURACY_KEYS else 0, k)
    )
    lr_names = [k for k in names if k in LEARNING_RATE_KEYS][:1]
    panels = [("Loss", loss_names), ("Accuracy", acc_names), ("Learning rate", lr_names)]
    panels = [(label, keys) for label, keys in panels if keys]
    if not any(label in ("Loss", "Accuracy") for label, _ in panels):
        raise ValueError(f"history has no loss or accuracy series to plot; its keys are {sorted(history)}.")
    return panels


def _draw_history_panel(ax, label, keys, history, span):
    """One panel of `plot_training_curves`: train solid, validation dashed, the unmasked finish shaded."""
    colors = ["C0", "C1", "C2", "C3", "C4", "C5"]
    if span is not None:  # PatchDropout off: the model trained on every token there
        ax.axvspan(span[0] - 0.5, span[1] + 0.5, color="0.9", zorder=0, label="every token")
    for i, key in enumerate(keys):
        color = colors[i % len(colors)]
        # Keras names the validation split's metrics val_*: that split is held out of the training images.
        for split, name, style in (("train", key, "-"), ("validation", f"val_{key}", "--")):
            if name not in history:
                continue
            y = _values(history, name)
            x = _epochs(history, len(y))
            # Skip missing epochs (CSVLogger writes "NA" when validation_freq > 1)
            # so the points that exist are still joined by a line.
            finite = np.isfinite(y)
            x, y = x[finite], y[finite]
            ax.plot(
                x,
                y,
                style,
                color=color,
                marker="." if len(y) <= 30 else None,
                label=f"{split} {key}" if len(keys) > 1 else split,
            )
            if label == "Accuracy" and split == "validation" and i == 0 and len(y):
                best = int(np.nanargmax(y))
                ax.plot(x[best], y[best], "*", color=color, markersize=11)
                ax.annotate(
                    f"best {y[best]:.4f}\n(epoch {x[best]:g})",
                    (x[best], y[best]),
                    textcoords="offset points",
                    xytext=(0, -26),
                    ha="center",
                    fontsize=8,
                )
    ax.set_title(label)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    if label == "Learning rate":
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    else:
        ax.legend(fontsize=8)
    if label == "Loss":
        losses = np.concatenate([_values(history, k) for k in ("loss", "val_loss") if k in history])
        losses = losses[np.isfinite(losses)]
        # A loss that falls over orders of magnitude reads better in log scale.
        if losses.size and losses.min() > 0 and losses.max() / losses.min() > 20:
            ax.set_yscale("log")


def plot_validation_comparison(histories, path: PathLike, title: str | None = None) -> Path:
    """Plots the validation accuracy of several runs on one set of axes (an A/B at a glance).

    Args:
        histories: dict of run label -> history (as for `plot_training_curves`);
            each needs a `val_accuracy` column (epochs without validation,
            empty or NaN, are skipped). Runs whose label shares the text
            before " seed" share a colour; seeds get their own line style.
        path: output PNG path.
        title: optional figure title.

    Returns:
        The `Path` of the PNG.

    Raises:
        ValueError: a run without any validation accuracy.
    """
    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    colours, drawn = {}, {}  # per group: its colour, and how many of its runs are drawn (the line style)
    styles = ["-", "--", ":", "-."]
    for label, history in histories.items():
        history = getattr(history, "history", history)
        values = _values(history, "val_accuracy") if "val_accuracy" in history else np.asarray([])
        epochs = _epochs(history, len(values))
        keep = np.isfinite(values)
        if not keep.any():
            raise ValueError(f"run {label!r} has no validation accuracy to plot.")
        group = label.split(" seed")[0]
        colour = colours.setdefault(group, f"C{len(colours)}")
        style = styles[drawn.get(group, 0) % len(styles)]
        drawn[group] = drawn.get(group, 0) + 1
        ax.plot(
            epochs[keep],
            100 * values[keep],
            style,
            color=colour,
            marker="o",
            markersize=3,
            label=f"{label}: {100 * values[keep][-1]:.2f}%",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return _save(fig, path)


# --------------------------------------------------------------------------
# Confusion matrix (counted by `keras_vit.metrics.confusion_matrix`).


def plot_confusion_matrix(
    matrix, class_names: Sequence[str], path: PathLike, normalize: bool = True, title: str | None = None
) -> Path:
    """Draws a confusion matrix as a heat map with the values written in.

    Args:
        matrix: `(n, n)` counts, rows = true class, columns = predicted.
        class_names: the `n` class names.
        path: output PNG path.
        normalize: if True, each row is divided by its total, so the
            diagonal shows per-class recall; empty rows stay zero.
        title: optional title; defaults to one with the overall accuracy.

    Returns:
        The `Path` of the PNG.
    """
    counts = np.asarray(matrix, dtype="float64")
    n = len(class_names)
    if counts.shape != (n, n):
        raise ValueError(f"matrix has shape {counts.shape} but there are {n} class names.")
    total = counts.sum()
    values = counts
    if normalize:
        rows = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    if title is None:
        accuracy = np.trace(counts) / total if total else float("nan")
        title = f"Confusion matrix{' (row-normalised)' if normalize else ''}: accuracy {accuracy:.4f}"

    side = max(5.0, 0.55 * n + 2.5)
    fig = _figure(side + 1.0, side)
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(values.max(), 1.0))
    fig.colorbar(image, ax=ax, shrink=0.8)
    if n <= 30:  # Beyond that the numbers would be unreadable.
        threshold = (1.0 if normalize else values.max()) / 2
        for i in range(n):
            for j in range(n):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(values[i, j])}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7 if n > 12 else 8,
                    color="white" if values[i, j] > threshold else "black",
                )
    ax.set_xticks(range(n), labels=list(class_names), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------
# ViT internals.


def plot_patches(image, patch_size: int, path: PathLike, title: str | None = None) -> Path:
    """Shows an image next to the patches the ViT cuts it into.

    The patches are drawn as a grid of small tiles separated by a gap, in
    the row-major order used by `keras_vit.layers.Patches`.

    Args:
        image: `(height, width, channels)` array, uint8 or float 0..255.
        patch_size: side of the square patches; must divide both sides.
        path: output PNG path.
        title: optional figure title.

    Returns:
        The `Path` of the PNG.
    """
    shown = to_display_image(image)
    height, width = shown.shape[:2]
    patch_size = int(patch_size)
    if patch_size <= 0 or height % patch_size or width % patch_size:
        raise ValueError(f"patch_size={patch_size} does not divide the {height}x{width} image.")
    rows, cols = height // patch_size, width // patch_size
    cmap = "gray" if shown.ndim == 2 else None

    fig = _figure(8.0, 4.2)
    grid = fig.add_gridspec(1, 2)
    ax = fig.add_subplot(grid[0])
    ax.imshow(shown, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(f"{height}x{width} image")
    ax.set_xticks(np.arange(0, width + 1, patch_size) - 0.5, labels=[])
    ax.set_yticks(np.arange(0, height + 1, patch_size) - 0.5, labels=[])
    ax.grid(color="white", linewidth=0.8)
    ax.tick_params(length=0)
    tiles = grid[1].subgridspec(rows, cols, wspace=0.08, hspace=0.08)
    for r in range(rows):
        for c in range(cols):
            tile = shown[r * patch_size : (r + 1) * patch_size, c * patch_size : (c + 1) * patch_size]
            sub = fig.add_subplot(tiles[r, c])
            sub.imshow(tile, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            sub.set_axis_off()
    fig.suptitle(title or f"{rows}x{cols} = {rows * cols} patches of {patch_size}x{patch_size} pixels")
    return _save(fig, path)


def position_similarity(position_embedding, grid_size) -> np.ndarray:
    """Cosine similarity between the position embeddings of all patches.

    Args:
        position_embedding: `(num_patches, dim)` array, or `(1, prefix +
            num_patches, dim)` as stored by `PatchEncoder`, whose leading
            rows belong to the class and distillation tokens
            (`PatchEncoder.num_positioned_prefix_tokens`, 0 to 2); they are
            dropped.
        grid_size: `(rows, cols)` of the patch grid.

    Returns:
        float32 array `(rows * cols, rows, cols)`: entry `[k]` is the
        similarity of position `k` to every position, laid out on the grid.

    Raises:
        ValueError: the table does not fit the grid.
    """
    table = np.asarray(position_embedding, dtype="float64")
    if table.ndim == 3 and table.shape[0] == 1:
        table = table[0]
    rows, cols = (int(v) for v in grid_size)
    n = rows * cols
    # The rows of the patches come last, after at most a class and a distillation token's.
    if table.ndim != 2 or not n <= table.shape[0] <= n + 2:
        raise ValueError(
            f"position_embedding of shape {np.shape(position_embedding)} does not fit a "
            f"{rows}x{cols} grid ({n} positions, plus up to 2 for the class and distillation tokens)."
        )
    table = table[-n:]
    unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    return (unit @ unit.T).reshape(n, rows, cols).astype("float32")


def plot_position_similarity(position_embedding, grid_size, path: PathLike, title: str | None = None) -> Path:
    """Plots how similar each position embedding is to all the others.

    As in the ViT paper (Dosovitskiy et al. 2021, Fig. 7 center): tile
    `(r, c)` shows the cosine similarity between the embedding of the patch
    at grid row `r`, column `c` and those of every patch. A trained model
    shows a bright spot at the tile's own position and row/column stripes.

    Args:
        position_embedding: see `position_similarity`; e.g.
            `model.get_layer("patch_encoder").position`.
        grid_size: `(rows, cols)` of the patch grid (`PatchEncoder.grid_size`).
        path: output PNG path.
        title: optional figure title.

    Returns:
        The `Path` of the PNG.
    """
    if not isinstance(position_embedding, (np.ndarray, list, tuple)):
        from keras import ops  # only for a Keras variable or tensor: plots imports without Keras

        position_embedding = ops.convert_to_numpy(position_embedding)
    sims = position_similarity(position_embedding, grid_size)
    rows, cols = (int(v) for v in grid_size)
    tile = max(0.35, min(1.0, 8.0 / max(rows, cols)))
    fig = _figure(cols * tile + 1.2, rows * tile + 0.8)
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=dict(wspace=0.05, hspace=0.05))
    image = None
    for k, ax in enumerate(axes.ravel()):
        image = ax.imshow(sims[k], cmap="viridis", vmin=-1.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        r, c = divmod(k, cols)
        if c == 0:
            ax.set_ylabel(str(r + 1), rotation=0, ha="right", va="center", fontsize=7)
        if r == rows - 1:
            ax.set_xlabel(str(c + 1), fontsize=7)
    fig.supxlabel("Input patch column", fontsize=9)
    fig.supylabel("Input patch row", fontsize=9)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="cosine similarity")
    fig.suptitle(title or "Position embedding similarity")
    return _save(fig, path)


# --------------------------------------------------------------------------
# Image grids.


def plot_image_grid(
    images,
    titles: Sequence[str] | None,
    path: PathLike,
    ncols: int = 8,
    title_colors: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Draws images in a grid, each with an optional caption.

    Args:
        images: sequence or array of `(height, width, channels)` images,
            uint8 or float 0..255 (or 0..1).
        titles: one caption per image, or None.
        path: output PNG path.
        ncols: images per row.
        title_colors: optional colour per caption (e.g. green for a correct
            prediction, red for a wrong one).
        title: optional figure title.

    Returns:
        The `Path` of the PNG.
    """
    images = list(images)
    if not images:
        raise ValueError("plot_image_grid needs at least one image.")
    for name, seq in (("titles", titles), ("title_colors", title_colors)):
        if seq is not None and len(seq) != len(images):
            raise ValueError(f"{len(images)} images but {len(seq)} {name}.")
    ncols = max(1, min(int(ncols), len(images)))
    nrows = math.ceil(len(images) / ncols)
    fig = _figure(1.6 * ncols, 1.7 * nrows + (0.4 if title else 0.0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if k >= len(images):
            continue
        shown = to_display_image(images[k])
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1)
        if titles is not None:
            color = title_colors[k] if title_colors is not None else "black"
            ax.set_title(str(titles[k]), fontsize=8, color=color)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# --------------------------------------------------------------------------
# Attention maps (computed by `keras_vit.attention_maps`).


def upsample_map(attention, size) -> np.ndarray:
    """Resizes a 2-D map to `(height, width)` bilinearly, scaled to [0, 1].

    Args:
        attention: 2-D array over the patch grid.
        size: `(height, width)` of the image.

    Returns:
        float32 array of shape `size` with min 0 and max 1 (all zeros for a
        constant map).
    """
    attention = np.asarray(attention, dtype="float32")
    if attention.ndim != 2:
        raise ValueError(f"Expected a 2-D map, got shape {attention.shape}.")
    height, width = (int(v) for v in size)
    resized = np.asarray(Image.fromarray(attention).resize((width, height), Image.Resampling.BILINEAR))
    low, high = float(resized.min()), float(resized.max())
    if high - low <= 1e-12:
        return np.zeros((height, width), "float32")
    return ((resized - low) / (high - low)).astype("float32")


def _show_image(ax, image):
    shown = to_display_image(image)
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_axis_off()
    return shown


def _overlay(ax, image, attention, alpha, cmap):
    shown = _show_image(ax, image)
    ax.imshow(upsample_map(attention, shown.shape[:2]), cmap=cmap, alpha=alpha, vmin=0, vmax=1)


def plot_attention(
    images,
    maps,
    path: PathLike,
    titles: Sequence[str] | None = None,
    ncols: int = 6,
    alpha: float = 0.55,
    cmap: str = "inferno",
    title: str | None = None,
) -> Path:
    """Shows each image above its attention map, upsampled and overlaid.

    Args:
        images: `(batch, height, width, channels)` images, uint8 or float
            0..255.
        maps: `(batch, rows, cols)` maps, e.g. from
            `keras_vit.attention_maps.rollout_map`; each is min-max scaled on its
            own.
        path: output PNG path.
        titles: optional caption per image.
        ncols: images per row.
        alpha: opacity of the map over the image.
        cmap: matplotlib colour map of the attention.
        title: optional figure title.

    Returns:
        The `Path` of the PNG.
    """
    images = list(images)
    maps = np.asarray(maps)
    if maps.ndim != 3 or len(maps) != len(images):
        raise ValueError(f"Expected one (rows, cols) map per image: {len(images)} images, maps {maps.shape}.")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(images)} images but {len(titles)} titles.")
    if not images:
        raise ValueError("plot_attention needs at least one image.")
    ncols = max(1, min(int(ncols), len(images)))
    nrows = math.ceil(len(images) / ncols)
    fig = _figure(1.8 * ncols, 3.5 * nrows + (0.4 if title else 0.0))
    axes = fig.subplots(2 * nrows, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, (image, attention) in enumerate(zip(images, maps)):
        r, c = divmod(k, ncols)
        _show_image(axes[2 * r, c], image)
        if titles is not None:
            axes[2 * r, c].set_title(str(titles[k]), fontsize=8)
        _overlay(axes[2 * r + 1, c], image, attention, alpha, cmap)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_attention_heads(
    image,
    maps,
    path: PathLike,
    alpha: float = 0.55,
    cmap: str = "inferno",
    title: str | None = None,
) -> Path:
    """Shows one image's attention map for every head of one block, and their mean.

    Args:
        image: `(height, width, channels)` image, uint8 or float 0..255.
        maps: `(heads, rows, cols)` maps of one block for this image, e.g.
            `keras_vit.attention_maps.attention_map(weights[layer, i], grid_size,
            "token", num_prefix_tokens)` (the heads take the place of the
            batch).
        path: output PNG path.
        alpha: opacity of the maps over the image.
        cmap: matplotlib colour map of the attention.
        title: optional figure title.

    Returns:
        The `Path` of the PNG.
    """
    maps = np.asarray(maps, dtype="float32")
    if maps.ndim != 3:
        raise ValueError(f"Expected one (rows, cols) map per head, got shape {maps.shape}.")
    panels = [("image", None)] + [(f"head {h}", m) for h, m in enumerate(maps)]
    panels.append(("mean of heads", maps.mean(axis=0)))
    fig = _figure(1.9 * len(panels), 2.3 + (0.3 if title else 0.0))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, attention) in zip(axes, panels):
        if attention is None:
            _show_image(ax, image)
        else:
            _overlay(ax, image, attention, alpha, cmap)
        ax.set_title(label, fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


__all__ = [
    "read_history_csv",
    "plot_training_curves",
    "plot_validation_comparison",
    "plot_confusion_matrix",
    "plot_patches",
    "position_similarity",
    "plot_position_similarity",
    "plot_image_grid",
    "to_display_image",
    "upsample_map",
    "plot_attention",
    "plot_attention_heads",
]
