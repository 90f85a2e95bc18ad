"""CIFAR-10 from the first source that works: a local folder, the standard places, tfds, keras.datasets.

numpy and Pillow only; `tensorflow_datasets` and `keras.datasets` are
imported only when every local source failed (the JAX training path has no
TensorFlow).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import socket
import threading
import warnings
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from keras_vit.cli_utils import first_line
from keras_vit.data.folders import check_not_bare_class_folders, load_image_folder
from keras_vit.data.splits import (
    BATCHES_DIRNAME,
    CIFAR10_CLASSES,
    DATA_DIR_ENV,
    LAYOUT_HELP,
    SPLITS,
    DataNotFoundError,
    Splits,
    normalize_splits,
    splits_from_arrays,
)

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

# Sub-folder names accepted when a data dir *contains* the dataset.
_NESTED_FOLDER_NAMES = ("cifar10-jpeg", "cifar10", "cifar-10")
_CIFAR_URL_HOST = "www.cs.toronto.edu"  # Where both tfds and keras download from.


def _load_cifar_batches(
    folder: Path, limit: int | None, seed: int, splits: tuple[str, ...] = SPLITS
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
        raise DataNotFoundError(f"{folder} looks like {BATCHES_DIRNAME} but lacks {', '.join(missing)}.")

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
    for split in SPLITS:
        parts = [read(p) for p in files[split]] if split in splits else []
        if parts:
            arrays[split] = (np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]))
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
    source = f"{BATCHES_DIRNAME} at {folder}"
    return splits_from_arrays(*arrays["train"], *arrays["test"], names, source, limit, seed, splits)


def _find_layout(folder: Path) -> tuple[str, Path] | None:
    """Returns `("batches" | "folder", path)` for a recognised layout."""

    def is_batches(d: Path) -> bool:
        return any((d / n).is_file() for n in ("data_batch_1", "test_batch", "batches.meta"))

    if is_batches(folder):
        return "batches", folder
    if (folder / "train").is_dir() or (folder / "test").is_dir():
        return "folder", folder
    if is_batches(folder / BATCHES_DIRNAME):
        return "batches", folder / BATCHES_DIRNAME
    for name in _NESTED_FOLDER_NAMES:
        if any((folder / name / split).is_dir() for split in SPLITS):
            return "folder", folder / name
    return None


def _load_dir(
    folder: Path,
    limit: int | None,
    seed: int,
    cache_dir: PathLike | bool | None,
    splits: tuple[str, ...] = SPLITS,
) -> Splits:
    if folder.is_file():
        is_tar = folder.name.endswith((".tar.gz", ".tgz"))
        hint = " (extract it first: `tar xzf FILE`)" if is_tar else ""
        raise DataNotFoundError(f"{folder} is a file, expected a directory{hint}.")
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder} does not exist.")
    layout = _find_layout(folder)
    if layout is None:
        check_not_bare_class_folders(folder)  # a user's own DIR/<class>/*.jpg: said as such, not as CIFAR-10
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
            f"{path} has classes {list(loaded.class_names)}, not the CIFAR-10 ones; using them anyway.",
            stacklevel=3,
        )
    return loaded


def _standard_places() -> list[Path]:
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return [
        keras_home / "datasets" / BATCHES_DIRNAME,
        keras_home / "datasets" / "cifar-10-batches-py-target" / BATCHES_DIRNAME,
        Path("data") / "cifar10",
        Path("data") / BATCHES_DIRNAME,
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
    import tensorflow_datasets as tfds  # optional and heavy: only when the local sources failed

    try:  # Keep TF off the GPU: JAX may be using it.
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
    except Exception:
        pass
    (train, test), info = tfds.load(
        "cifar10",
        split=["train", "test"],
        as_supervised=True,
        batch_size=-1,
        with_info=True,
        download=download,
    )
    (x_train, y_train), (x_test, y_test) = tfds.as_numpy(train), tfds.as_numpy(test)
    return x_train, y_train, x_test, y_test, tuple(info.features["label"].names)


def _load_keras_datasets() -> tuple:
    """Loads CIFAR-10 with `keras.datasets` (downloads if not cached)."""
    from keras.datasets import cifar10  # the last resort; keras_vit.data imports without Keras

    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    return x_train, y_train, x_test, y_test, CIFAR10_CLASSES


def load_cifar10(
    data_dir: PathLike | None = None,
    *,
    limit: int | None = None,
    seed: int = 0,
    cache_dir: PathLike | bool | None = None,
    download: bool = True,
    splits: str | Sequence[str] = SPLITS,
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
            class folder, or class folders without `train/` and `test/`), or
            `splits` names an unknown split.
    """
    wanted = normalize_splits(splits)
    origin = "the data_dir argument"
    if data_dir is None and os.environ.get(DATA_DIR_ENV):
        data_dir, origin = os.environ[DATA_DIR_ENV], f"${DATA_DIR_ENV}"
    if data_dir is not None:
        folder = Path(data_dir).expanduser().absolute()
        try:
            loaded = _load_dir(folder, limit, seed, cache_dir, wanted)
        except DataNotFoundError as e:
            raise DataNotFoundError(
                f"CIFAR-10 not found in {folder} (from {origin}): {e}\n{LAYOUT_HELP}"
            ) from None
        loaded.source += f" (from {origin})"
        return loaded

    tried = [f"data_dir argument / ${DATA_DIR_ENV}: not set"]
    loaded = _from_standard_places(limit, seed, cache_dir, wanted, tried)
    if loaded is None:
        loaded = _from_downloaders(download, limit, seed, wanted, tried)
    if loaded is not None:
        return loaded
    listing = "\n".join(f"  {i}. {t}" for i, t in enumerate(tried, 1))
    raise DataNotFoundError(f"Could not find CIFAR-10. Tried:\n{listing}\n{LAYOUT_HELP}")


def _from_standard_places(limit, seed, cache_dir, wanted, tried: list[str]) -> Splits | None:
    """Step 2 of `load_cifar10`; appends why each place failed to `tried`."""
    for place in _standard_places():
        shown = f"{place} ({place.absolute()})" if not place.is_absolute() else str(place)
        if not place.exists():
            tried.append(f"{shown}: does not exist")
            continue
        try:
            return _load_dir(place.absolute(), limit, seed, cache_dir, wanted)
        except (OSError, ValueError) as e:
            tried.append(f"{shown}: {first_line(e, with_type=True)}")
    return None


def _from_downloaders(download: bool, limit, seed, wanted, tried: list[str]) -> Splits | None:
    """Steps 3-4 of `load_cifar10`; appends why each failed to `tried`."""
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
            return splits_from_arrays(*arrays, "tensorflow_datasets", limit, seed, wanted)
        except Exception as e:
            tried.append(f"tensorflow_datasets: {first_line(e, with_type=True)}")

    if not can_download():
        tried.append(f"keras.datasets.cifar10: {no_net}")
        return None
    try:
        return splits_from_arrays(*_load_keras_datasets(), "keras.datasets.cifar10", limit, seed, wanted)
    except Exception as e:
        tried.append(f"keras.datasets.cifar10: {first_line(e, with_type=True)}")
    return None
