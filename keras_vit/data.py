"""Data sources -> numpy arrays for keras-vit.

Everything here needs only numpy and Pillow: the training path must also run
on machines that have JAX but no TensorFlow. `tensorflow_datasets` and
`keras.datasets` are tried only as last resorts, imported lazily.

Typical use:

```python
from keras_vit import data

splits = data.load_cifar10()  # --data-dir / $KERAS_VIT_DATA_DIR / ...
print(data.describe(splits))
test_only = data.load_cifar10(splits="test")  # Evaluation: train/ is not read.
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import pickle
import socket
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
DATA_DIR_ENV = "KERAS_VIT_DATA_DIR"
CACHE_DIR_ENV = "KERAS_VIT_CACHE_DIR"

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_SPLITS = ("train", "test")
_BATCHES_DIRNAME = "cifar-10-batches-py"
# Sub-folder names accepted when a data dir *contains* the dataset.
_NESTED_FOLDER_NAMES = ("cifar10-jpeg", "cifar10", "cifar-10")
_CIFAR_URL_HOST = "www.cs.toronto.edu"  # Where both tfds and keras download from.
_CACHE_VERSION = 2  # 2: one cache file per split.

_LAYOUT_HELP = (
    "To use a local copy, pass `--data-dir DIR` or `export "
    f"{DATA_DIR_ENV}=DIR`, where DIR holds either\n"
    "  - an image-folder tree: DIR/train/<class>/*.png|jpg and "
    "DIR/test/<class>/*.png|jpg, or\n"
    f"  - the official `{_BATCHES_DIRNAME}` folder (data_batch_1..5, "
    "test_batch, batches.meta), or a folder containing it."
)


class DataNotFoundError(FileNotFoundError):
    """No data source worked; the message lists what was tried and why."""


@dataclasses.dataclass(repr=False, eq=False)  # `==` on arrays is ambiguous.
class Splits:
    """Train/test arrays plus where they came from.

    A split that was not requested (`splits=` of the loaders) has zero
    images; its arrays still have the other split's image shape.

    Attributes:
        x_train: uint8 array of shape `(N, H, W, 3)`, RGB.
        y_train: int32 array of shape `(N,)`.
        x_test: uint8 array of shape `(M, H, W, 3)`, RGB.
        y_test: int32 array of shape `(M,)`.
        class_names: Class names; label `i` is `class_names[i]`.
        source: Human-readable description of where the data came from.
        skipped: `(path, reason)` for every image that could not be read.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def summary(self) -> str:
        """One-line description: sizes, per-class counts, source."""

        def counts(y: np.ndarray, name: str) -> str:
            if not len(y):  # A split that was not loaded.
                return f"0 {name}"
            per = np.bincount(y, minlength=self.num_classes)
            lo, hi = int(np.min(per)), int(np.max(per))
            per_class = f"{lo}/class" if lo == hi else f"{lo}-{hi}/class"
            return f"{len(y)} {name} ({per_class})"

        h, w, c = self.image_shape
        text = (
            f"{counts(self.y_train, 'train')} + {counts(self.y_test, 'test')} images of "
            f"{h}x{w}x{c}, {self.num_classes} classes, from {self.source}"
        )
        if self.skipped:
            text += f"; {len(self.skipped)} unreadable image(s) skipped"
        return text

    def __repr__(self) -> str:
        return f"Splits({self.summary()})"


def describe(splits: Splits) -> str:
    """Returns a one-line summary string of `splits`."""
    return splits.summary()


def stratified_indices(
    labels: Sequence[int] | np.ndarray, n: int | None, seed: int = 0
) -> np.ndarray:
    """Picks `n` indices spread evenly over the classes, in shuffled order.

    Each class gets `n // num_classes` indices; the remainder goes to randomly
    chosen classes. A class with too few items gives all it has and the
    shortfall is taken from the other classes.

    Args:
        labels: 1-D integer labels.
        n: Number of indices to return. `None` or `n >= len(labels)` returns
            a permutation of all indices.
        seed: Seed; the same seed gives the same indices.

    Returns:
        int64 array of indices into `labels`, deterministically shuffled
        (not grouped by class).

    Raises:
        ValueError: If `n` is not positive.
    """
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    if n is None or n >= len(labels):
        return rng.permutation(len(labels))
    if n <= 0:
        raise ValueError(f"`limit` must be a positive integer, got {n!r}.")
    classes = np.unique(labels)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    base, extra = divmod(n, len(classes))
    quota = np.full(len(classes), base)
    quota[rng.permutation(len(classes))[:extra]] += 1
    avail = np.array([len(p) for p in pools])
    take = np.minimum(quota, avail)
    shortfall = n - int(take.sum())
    while shortfall > 0:  # Terminates: n < len(labels) == avail.sum().
        for i in np.flatnonzero(take < avail)[:shortfall]:
            take[i] += 1
            shortfall -= 1
    chosen = np.concatenate([p[:t] for p, t in zip(pools, take)])
    return rng.permutation(chosen)


def _normalize_splits(splits: str | Sequence[str]) -> tuple[str, ...]:
    """`"test"` or `("train", "test")`-like -> the requested subset of `_SPLITS`, in order."""
    wanted = (splits,) if isinstance(splits, str) else tuple(splits)
    unknown = [s for s in wanted if s not in _SPLITS]
    if unknown or not wanted:
        raise ValueError(f"`splits` must be one or more of {_SPLITS}, got {splits!r}.")
    return tuple(s for s in _SPLITS if s in wanted)


def _empty_like(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero images of `x`'s image shape: the arrays of a split not loaded."""
    return np.empty((0, *x.shape[1:]), np.uint8), np.empty((0,), np.int32)


# --------------------------------------------------------------------------
# Image folders.


def load_image_folder(
    root: PathLike,
    *,
    image_size: int | tuple[int, int] | None = None,
    class_names: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    cache_dir: PathLike | bool | None = None,
    splits: str | Sequence[str] = _SPLITS,
) -> Splits:
    """Loads `root/{train,test}/<class>/*.{png,jpg,jpeg}` into arrays.

    Non-image files (`.txt`, `.DS_Store`, ...) and sub-folders of class
    folders are ignored. Grayscale, RGBA and palette images are converted to
    RGB. Unreadable (corrupt, truncated) images are skipped, reported with
    `warnings.warn` and listed in `Splits.skipped`. Decoded arrays are cached
    as one `.npz` per split so the next load takes about a second (a
    test-only load reuses the test cache of an earlier full load).

    Args:
        root: Dataset folder containing `train/` and `test/` (only the
            folders of the requested `splits` need to exist).
        image_size: `int` or `(height, width)`; images of another size are
            resized with Pillow. `None` requires all images to share a size.
        class_names: Class folders to use, in label order. Defaults to the
            sorted sub-folders of `train/` (CIFAR-10 label order if they
            are exactly the CIFAR-10 classes), so labels are the same
            whichever splits are loaded; of `test/` if only `test` is
            requested and `train/` is absent.
        limit: If set, use only this many images of each split, drawn evenly
            from the classes (see `stratified_indices`). Only the selected
            files are decoded.
        seed: Seed for the `limit` selection and for the shuffle; arrays are
            always returned in a deterministic shuffled order, never sorted
            by class (so e.g. `validation_split` in `fit` stays balanced).
        cache_dir: Folder for the decoded-array cache. Defaults to
            `$KERAS_VIT_CACHE_DIR` or `~/.cache/keras_vit`. `False` disables
            the cache.
        splits: `"train"`, `"test"` or both (the default). Only these
            splits are read; the other one is returned with zero images.

    Returns:
        A `Splits`.

    Raises:
        DataNotFoundError: If `root`, a requested split folder or one of its
            class folders is missing.
        ValueError: If a class folder has no images, all images of a split
            are unreadable, images differ in size and `image_size` is
            `None`, or `splits` names an unknown split.
    """
    root = Path(root).expanduser().absolute()
    size = _normalize_size(image_size)
    wanted = _normalize_splits(splits)
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit <= 0):
        raise ValueError(f"`limit` must be a positive integer or None, got {limit!r}.")
    if not root.is_dir():
        raise DataNotFoundError(f"Image folder {root} does not exist.\n{_LAYOUT_HELP}")
    for split in wanted:
        if not (root / split).is_dir():
            other = " next to the other split" if len(wanted) == len(_SPLITS) else ""
            raise DataNotFoundError(
                f"Missing split folder {root / split}: expected "
                f"{root}/{split}/<class>/*.png|jpg{other}."
            )
    names = _class_names(root, class_names, wanted)
    files = {split: _scan_split(root / split, names) for split in wanted}

    start = time.perf_counter()
    arrays, skipped, cached, decoded = {}, [], [], 0
    for split in wanted:
        paths, labels = files[split]
        cache_path = _cache_path(cache_dir, root, split, paths, size, names, limit, seed)
        hit = _read_cache(cache_path) if cache_path is not None and cache_path.is_file() else None
        if hit is not None:
            x, y, bad = hit
            cached.append(cache_path)
        else:
            order = stratified_indices(labels, limit, seed)
            paths = [paths[i] for i in order]
            x, ok, bad = _decode_many(paths, size, root)
            if not ok.any():
                raise ValueError(
                    f"None of the {len(paths)} images in {root / split} could be "
                    f"read; first error: {bad[0][0]}: {bad[0][1]}"
                )
            y = labels[order]
            # Indexing copies; skip it in the common all-readable case (memory).
            if not ok.all():
                x, y = x[ok], y[ok]
            decoded += len(paths)
            if cache_path is not None:
                _write_cache(cache_path, x, y, bad)
        arrays[split] = (x, y)
        skipped += bad
    if decoded:
        logger.info(
            "Decoded %d images from %s in %.1f s.", decoded, root, time.perf_counter() - start
        )
    for split in _SPLITS:  # A split not requested: zero images of the same shape.
        arrays.setdefault(split, _empty_like(arrays[wanted[0]][0]))
    source = f"image folder {root}"
    if cached:
        source += f" (cached: {'; '.join(map(str, cached))})"
    result = Splits(
        *arrays["train"], *arrays["test"], class_names=names, source=source, skipped=skipped,
    )
    _warn_skipped(skipped, root)
    return result


def _normalize_size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    if len(size) != 2 or not all(int(s) == s and s > 0 for s in size):
        raise ValueError(
            f"`image_size` must be a positive int or (height, width), got {image_size!r}."
        )
    return int(size[0]), int(size[1])


def _is_image_file(name: str) -> bool:
    # Dot-files include macOS "._x.jpg" resource forks, which aren't images.
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _subdirs(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _class_names(
    root: Path, class_names: Sequence[str] | None, wanted: tuple[str, ...] = _SPLITS
) -> tuple[str, ...]:
    if class_names is not None:
        names = tuple(str(c) for c in class_names)
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"`class_names` must be non-empty and unique, got {names}.")
        return names
    # train/ defines the classes (and so the labels) whenever it has any, even
    # if only test/ is loaded; a test-only tree uses test/'s own folders.
    train = root / "train"
    use_train = "train" in wanted or (train.is_dir() and bool(_subdirs(train)))
    ref = "train" if use_train else wanted[0]
    names = _subdirs(root / ref)
    if not names:
        raise DataNotFoundError(
            f"{root / ref} has no class sub-folders: expected "
            f"{root}/{ref}/<class>/*.png|jpg."
        )
    for split in wanted:
        extra = sorted(set(_subdirs(root / split)) - set(names)) if split != ref else []
        if extra:
            raise ValueError(
                f"{root / split} has class folders that {root / ref} lacks: {extra}."
            )
    if set(names) == set(CIFAR10_CLASSES):
        return CIFAR10_CLASSES
    return tuple(names)


def _scan_split(split_dir: Path, names: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """Lists image files per class, sorted by name so `seed` is reproducible."""
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            raise DataNotFoundError(f"Missing class folder {class_dir}.")
        found = sorted(
            e.path for e in os.scandir(class_dir) if e.is_file() and _is_image_file(e.name)
        )
        if not found:
            raise ValueError(
                f"Class folder {class_dir} contains no images "
                f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder."
            )
        paths += found
        labels += [label] * len(found)
    return paths, np.asarray(labels, dtype=np.int32)


def _read_rgb(path: str, size: tuple[int, int] | None) -> np.ndarray:
    """Decodes one image to uint8 RGB HWC, resized to `size` if given."""
    with Image.open(path) as im:
        if size is not None:
            # JPEG only: decode at a reduced scale (>= size); big speedup for photos.
            im.draft("RGB", (size[1], size[0]))
        im.load()  # Raises here for truncated/corrupt files.
        if 0x0112 in im.getexif():  # Orientation tag: phone photos.
            im = ImageOps.exif_transpose(im)
        if im.mode.startswith("I;16"):
            # 16-bit grayscale: convert("RGB") would clip, so keep the high byte.
            im = Image.fromarray((np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8))
        elif im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")  # Avoids Pillow's palette-transparency warning.
        if im.mode != "RGB":
            im = im.convert("RGB")
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.Resampling.BICUBIC)
        return np.asarray(im, dtype=np.uint8)


def _decode_many(
    paths: list[str], size: tuple[int, int] | None, root: Path
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Decodes `paths` with a thread pool (Pillow releases the GIL).

    Returns:
        `(x, ok, skipped)`: `x[ok]` are the readable images in `paths` order.
    """
    errors: list[str | None] = [None] * len(paths)
    if size is None:  # Target size is that of the first readable image.
        for i, path in enumerate(paths):
            try:
                size = _read_rgb(path, None).shape[:2]
                break
            except Exception as e:  # Pillow raises many types on bad files.
                errors[i] = f"{type(e).__name__}: {e}"
        resize = None
    else:
        resize = size
    if size is None:
        empty = np.empty((0, 1, 1, 3), np.uint8)
        return empty, np.zeros(len(paths), bool), _skipped(paths, errors)

    x = np.empty((len(paths), *size, 3), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    other_sizes: dict[tuple[int, int], str] = {}

    def work(indices: np.ndarray) -> None:
        for i in indices:
            try:
                img = _read_rgb(paths[i], resize)
            except Exception as e:
                errors[i] = f"{type(e).__name__}: {e}"
                continue
            if img.shape[:2] != size:
                other_sizes.setdefault(img.shape[:2], paths[i])
                continue
            x[i] = img
            ok[i] = True

    workers = min(16, 2 * (os.cpu_count() or 1))
    chunks = np.array_split(np.arange(len(paths)), max(1, min(len(paths), workers * 8)))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, chunks))
    if other_sizes:
        found = ", ".join(f"{h}x{w} (e.g. {p})" for (h, w), p in list(other_sizes.items())[:3])
        raise ValueError(
            f"Images under {root} differ in size: {size[0]}x{size[1]} and {found}. "
            "Pass image_size=(height, width) (or an int) to resize them all."
        )
    return x, ok, _skipped(paths, errors)


def _skipped(paths: list[str], errors: list[str | None]) -> list[tuple[str, str]]:
    return [(p, e) for p, e in zip(paths, errors) if e is not None]


def _warn_skipped(skipped: list[tuple[str, str]], root: Path) -> None:
    if not skipped:
        return
    first = "; ".join(f"{p} ({why})" for p, why in skipped[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    warnings.warn(
        f"Skipped {len(skipped)} unreadable image(s) under {root}: {first}{more}. "
        "See Splits.skipped for the full list.",
        stacklevel=3,
    )


# --------------------------------------------------------------------------
# Decoded-array cache.


def _default_cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "keras_vit"


def _cache_path(
    cache_dir: PathLike | bool | None,
    root: Path,
    split: str,
    paths: list[str],
    size: tuple[int, int] | None,
    names: tuple[str, ...],
    limit: int | None,
    seed: int,
) -> Path | None:
    """Cache file of one split, named by a hash of everything that affects it."""
    if cache_dir is False:
        return None
    cache_dir = _default_cache_dir() if cache_dir in (None, True) else Path(cache_dir).expanduser()
    # Names (not just the count) so renames/moves also invalidate.
    names_hash = hashlib.sha256("\n".join(paths).encode()).hexdigest()
    newest = max(os.stat(p).st_mtime_ns for p in paths)
    key = {
        "version": _CACHE_VERSION, "root": str(root), "split": split, "size": size,
        "classes": names, "limit": limit, "seed": seed,
        "files": (len(paths), newest, names_hash),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{root.name or 'data'}-{split}-{digest}.npz"


def _write_cache(
    path: Path, x: np.ndarray, y: np.ndarray, skipped: list[tuple[str, str]]
) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # tmp file + os.replace: a concurrent reader never sees a partial file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(  # Uncompressed: loading 50k images then takes ~1 s.
                f, x=x, y=y, skipped=np.array(skipped, dtype=str).reshape(-1, 2),
            )
        os.replace(tmp, path)
        logger.info("Cached decoded arrays in %s.", path)
    except OSError as e:  # A read-only or full disk must not stop training.
        warnings.warn(f"Could not write the data cache {path}: {e}", stacklevel=3)
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]] | None:
    """`(x, y, skipped)` of one split, or None if the file is unusable."""
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
            skipped = [(str(p), str(r)) for p, r in f["skipped"]]
        if x.dtype != np.uint8 or x.ndim != 4 or y.shape != (len(x),):
            raise ValueError(f"unexpected arrays {x.dtype}{x.shape}, {y.dtype}{y.shape}")
        return x, y.astype(np.int32, copy=False), skipped
    except Exception as e:  # Corrupt cache: decode again (and overwrite it).
        logger.warning("Ignoring unreadable cache %s: %s", path, e)
        return None


# --------------------------------------------------------------------------
# Official `cifar-10-batches-py`.


def _load_cifar_batches(
    folder: Path, limit: int | None, seed: int, splits: tuple[str, ...] = _SPLITS
) -> Splits:
    """Reads the official pickled batches (trusted files, like keras does).

    Only the files of the requested `splits` are read (or need to exist).
    """
    files = {
        "train": [folder / f"data_batch_{i}" for i in range(1, 6)],
        "test": [folder / "test_batch"],
    }
    missing = [p.name for split in splits for p in files[split] if not p.is_file()]
    if missing:
        raise DataNotFoundError(
            f"{folder} looks like {_BATCHES_DIRNAME} but lacks {', '.join(missing)}."
        )

    def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data = batch.get(b"data", batch.get("data"))
            labels = batch.get(b"labels", batch.get("labels"))
            x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(labels, dtype=np.int32).reshape(-1)
            if len(x) != len(y):
                raise ValueError(f"{len(x)} images but {len(y)} labels")
        except Exception as e:
            raise ValueError(f"{path} is not a valid CIFAR-10 batch file: {e}") from None
        return x.transpose(0, 2, 3, 1), y  # CHW -> HWC

    arrays = {}
    for split in _SPLITS:
        parts = [read(p) for p in files[split]] if split in splits else []
        if parts:
            arrays[split] = (
                np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
            )
        else:
            arrays[split] = np.empty((0, 32, 32, 3), np.uint8), np.empty((0,), np.int32)
    names = CIFAR10_CLASSES
    meta = folder / "batches.meta"
    if meta.is_file():
        try:
            with open(meta, "rb") as f:
                raw = pickle.load(f, encoding="bytes")
            raw = raw.get(b"label_names", raw.get("label_names"))
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in raw)
        except Exception as e:
            logger.warning("Ignoring unreadable %s (%s); using CIFAR-10 names.", meta, e)
    source = f"{_BATCHES_DIRNAME} at {folder}"
    return _finish(*arrays["train"], *arrays["test"], names, source, limit, seed, splits)


def _finish(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    names: Sequence[str],
    source: str,
    limit: int | None,
    seed: int,
    splits: tuple[str, ...] = _SPLITS,
) -> Splits:
    """Applies `limit`/shuffle to in-memory arrays; casts dtypes.

    A split not in `splits` is emptied (zero images, same image shape).
    """
    y_train = np.asarray(y_train, np.int32).reshape(-1)
    y_test = np.asarray(y_test, np.int32).reshape(-1)
    if "train" not in splits:
        x_train, y_train = x_train[:0], y_train[:0]
    if "test" not in splits:
        x_test, y_test = x_test[:0], y_test[:0]
    i = stratified_indices(y_train, limit, seed)
    j = stratified_indices(y_test, limit, seed)
    return Splits(
        x_train=np.ascontiguousarray(x_train[i], dtype=np.uint8), y_train=y_train[i],
        x_test=np.ascontiguousarray(x_test[j], dtype=np.uint8), y_test=y_test[j],
        class_names=tuple(names), source=source,
    )


# --------------------------------------------------------------------------
# CIFAR-10 resolution.


def _find_layout(folder: Path) -> tuple[str, Path] | None:
    """Returns `("batches" | "folder", path)` for a recognised layout."""

    def is_batches(d: Path) -> bool:
        return any((d / n).is_file() for n in ("data_batch_1", "test_batch", "batches.meta"))

    if is_batches(folder):
        return "batches", folder
    if (folder / "train").is_dir() or (folder / "test").is_dir():
        return "folder", folder
    if is_batches(folder / _BATCHES_DIRNAME):
        return "batches", folder / _BATCHES_DIRNAME
    for name in _NESTED_FOLDER_NAMES:
        if any((folder / name / split).is_dir() for split in _SPLITS):
            return "folder", folder / name
    return None


def _load_dir(
    folder: Path,
    limit: int | None,
    seed: int,
    cache_dir: PathLike | bool | None,
    splits: tuple[str, ...] = _SPLITS,
) -> Splits:
    if folder.is_file():
        is_tar = folder.name.endswith((".tar.gz", ".tgz"))
        hint = " (extract it first: `tar xzf FILE`)" if is_tar else ""
        raise DataNotFoundError(f"{folder} is a file, expected a directory{hint}.")
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder} does not exist.")
    layout = _find_layout(folder)
    if layout is None:
        entries = sorted(os.listdir(folder))
        shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "")
        raise DataNotFoundError(
            f"{folder} has no recognised dataset layout (it contains: {shown or 'nothing'})."
        )
    kind, path = layout
    if kind == "batches":
        return _load_cifar_batches(path, limit, seed, splits)
    loaded = load_image_folder(
        path, image_size=32, limit=limit, seed=seed, cache_dir=cache_dir, splits=splits
    )
    if loaded.class_names != CIFAR10_CLASSES:
        warnings.warn(
            f"{path} has classes {list(loaded.class_names)}, not the CIFAR-10 ones; "
            "using them anyway.",
            stacklevel=3,
        )
    return loaded


def _standard_places() -> list[Path]:
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return [
        keras_home / "datasets" / _BATCHES_DIRNAME,
        keras_home / "datasets" / "cifar-10-batches-py-target" / _BATCHES_DIRNAME,
        Path("data") / "cifar10",
        Path("data") / _BATCHES_DIRNAME,
    ]


def _network_available(host: str = _CIFAR_URL_HOST, timeout: float = 3.0) -> bool:
    """Quick TCP probe, run in a thread so a slow DNS can't block for long."""
    result = [False]

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result[0] = True
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 2)
    return result[0]


def _load_tfds(download: bool) -> tuple:
    """Loads CIFAR-10 with tensorflow_datasets; returns arrays + class names."""
    import tensorflow_datasets as tfds

    try:  # Keep TF off the GPU: JAX may be using it.
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
    except Exception:
        pass
    (train, test), info = tfds.load(
        "cifar10", split=["train", "test"], as_supervised=True, batch_size=-1,
        with_info=True, download=download,
    )
    (x_train, y_train), (x_test, y_test) = tfds.as_numpy(train), tfds.as_numpy(test)
    return x_train, y_train, x_test, y_test, tuple(info.features["label"].names)


def _load_keras_datasets() -> tuple:
    """Loads CIFAR-10 with `keras.datasets` (downloads if not cached)."""
    from keras.datasets import cifar10

    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    return x_train, y_train, x_test, y_test, CIFAR10_CLASSES


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def load_cifar10(
    data_dir: PathLike | None = None,
    *,
    limit: int | None = None,
    seed: int = 0,
    cache_dir: PathLike | bool | None = None,
    download: bool = True,
    splits: str | Sequence[str] = _SPLITS,
) -> Splits:
    """Loads CIFAR-10 from the first source that works.

    Resolution order:

    1. `data_dir`, else `$KERAS_VIT_DATA_DIR`: an image-folder tree
       `DIR/{train,test}/<class>/*.png|jpg`, the official
       `cifar-10-batches-py` folder, or a folder containing either. If one is
       given and it is wrong, this fails right away (no fallback).
    2. Standard local places: `~/.keras/datasets/cifar-10-batches-py` (and
       keras 3's `cifar-10-batches-py-target/`), `./data/cifar10`,
       `./data/cifar-10-batches-py`.
    3. `tensorflow_datasets`, if installed (local copy, else download).
    4. `keras.datasets.cifar10.load_data()` (download).

    Downloads are only attempted after a quick network probe succeeds, so an
    offline machine gets a `DataNotFoundError` in seconds.

    Args:
        data_dir: Folder with the data (see above).
        limit: If set, use only this many images of each split, drawn
            evenly from the classes.
        seed: Seed for the `limit` selection and the (always applied)
            deterministic shuffle.
        cache_dir: Decoded-array cache for image folders (see
            `load_image_folder`); `False` disables it.
        download: Whether steps 3-4 may download.
        splits: `"train"`, `"test"` or both (the default). A local folder
            needs only the requested splits, and only those are read; the
            other split is returned with zero images.

    Returns:
        A `Splits` with 32x32 RGB uint8 images and int32 labels.

    Raises:
        DataNotFoundError: If no source works; the message lists every
            source tried and why it failed.
        ValueError: If a given image folder is malformed (e.g. an empty
            class folder), or `splits` names an unknown split.
    """
    wanted = _normalize_splits(splits)
    origin = "the data_dir argument"
    if data_dir is None and os.environ.get(DATA_DIR_ENV):
        data_dir, origin = os.environ[DATA_DIR_ENV], f"${DATA_DIR_ENV}"
    if data_dir is not None:
        folder = Path(data_dir).expanduser().absolute()
        try:
            loaded = _load_dir(folder, limit, seed, cache_dir, wanted)
        except DataNotFoundError as e:
            raise DataNotFoundError(
                f"CIFAR-10 not found in {folder} (from {origin}): {e}\n{_LAYOUT_HELP}"
            ) from None
        loaded.source += f" (from {origin})"
        return loaded

    tried = [f"data_dir argument / ${DATA_DIR_ENV}: not set"]
    for place in _standard_places():
        shown = f"{place} ({place.absolute()})" if not place.is_absolute() else str(place)
        if not place.exists():
            tried.append(f"{shown}: does not exist")
            continue
        try:
            return _load_dir(place.absolute(), limit, seed, cache_dir, wanted)
        except (OSError, ValueError) as e:
            tried.append(f"{shown}: {_one_line(e)}")

    online: bool | None = None

    def can_download() -> bool:
        nonlocal online
        if online is None:
            online = download and _network_available()
        return online

    no_net = f"no network ({_CIFAR_URL_HOST}:443 unreachable)" if download else "download=False"
    tfds_dir = Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets")
    if importlib.util.find_spec("tensorflow_datasets") is None:
        tried.append("tensorflow_datasets: not installed")
    elif not (tfds_dir / "cifar10").is_dir() and not can_download():
        # Skips the slow TensorFlow import when it could not succeed anyway.
        tried.append(f"tensorflow_datasets: no local copy in {tfds_dir / 'cifar10'}, {no_net}")
    else:
        try:
            arrays = _load_tfds(download=can_download())
            return _finish(*arrays, "tensorflow_datasets", limit, seed, wanted)
        except Exception as e:
            tried.append(f"tensorflow_datasets: {_one_line(e)}")

    if not can_download():
        tried.append(f"keras.datasets.cifar10: {no_net}")
    else:
        try:
            return _finish(*_load_keras_datasets(), "keras.datasets.cifar10", limit, seed, wanted)
        except Exception as e:
            tried.append(f"keras.datasets.cifar10: {_one_line(e)}")

    listing = "\n".join(f"  {i}. {t}" for i, t in enumerate(tried, 1))
    raise DataNotFoundError(f"Could not find CIFAR-10. Tried:\n{listing}\n{_LAYOUT_HELP}")
