"""The decoded-image cache: one `.npz` per split of an image folder, named by a hash of what made it.

Decoding 50,000 JPEGs takes minutes; reading them back from the cache about a
second. The key covers every file (its name, size, modification and status
change times), the image size, the classes and the `limit`/`seed` selection,
so any change decodes again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np

from keras_vit.files import atomic_path

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

CACHE_DIR_ENV = "KERAS_VIT_CACHE_DIR"  # the cache folder; default ~/.cache/keras_vit
CACHE_VERSION = 3  # 2: one cache file per split; 3: each file's own size and times in the key.


def default_cache_dir() -> Path:
    """`$KERAS_VIT_CACHE_DIR`, else `keras_vit` in the user's cache folder (`$XDG_CACHE_HOME` or ~/.cache)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "keras_vit"


def cache_path(
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
    cache_dir = default_cache_dir() if cache_dir in (None, True) else Path(cache_dir).expanduser()
    files_hash = hashlib.sha256()
    for file in paths:
        # The status change time too: a file replaced with its old modification time kept (`cp -p`, rsync,
        # an unpacked archive) still gets a new one, which no user can set back.
        stat = os.stat(file)
        files_hash.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\n".encode())
    key = {
        "version": CACHE_VERSION,
        "root": str(root),
        "split": split,
        "size": size,
        "classes": names,
        "limit": limit,
        "seed": seed,
        "files": (len(paths), files_hash.hexdigest()),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{root.name or 'data'}-{split}-{digest}.npz"


def write_cache(path: Path, x: np.ndarray, y: np.ndarray, skipped: list[tuple[str, str]]) -> None:
    """Writes one split's arrays to `path` (atomically); a failure only warns."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(  # Uncompressed: loading 50k images then takes ~1 s.
                f,
                x=x,
                y=y,
                skipped=np.array(skipped, dtype=str).reshape(-1, 2),
            )
        logger.info("Cached decoded arrays in %s.", path)
    except OSError as e:  # A read-only or full disk must not stop training.
        warnings.warn(f"Could not write the data cache {path}: {e}", stacklevel=3)


def read_cache(path: Path) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]] | None:
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
