"""Image-folder datasets: `root/{train,test}/<class>/*.png|jpg` -> `Splits` of uint8 arrays.

numpy and Pillow only (images decoded by `keras_vit.data.images.decode_image`).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from keras_vit.data import cache
from keras_vit.data.class_names import check_class_names
from keras_vit.data.images import decode_image
from keras_vit.data.splits import (
    CIFAR10_CLASSES,
    LAYOUT_HELP,
    SPLITS,
    DataNotFoundError,
    Splits,
    empty_like,
    normalize_splits,
    stratified_indices,
)
from keras_vit.data.streaming import FileImages

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def _pillow_reads_avif() -> bool:
    try:
        from PIL import AvifImagePlugin  # Pillow 11.2 and later, with libavif in its wheels
    except ImportError:
        return False
    return bool(getattr(AvifImagePlugin, "SUPPORTED", False))


# The image files of a folder, for training, evaluation and prediction alike: the formats Pillow decodes.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".webp", ".tif", ".tiff") + (
    (".avif",) if _pillow_reads_avif() else ()
)
# Photo formats a folder may hold that are not read: said, not silently left out. Pillow cannot read HEIF, JPEG XL
# or raw files without plug-ins, and reads a PSD's layers, not the picture.
UNREAD_PHOTO_EXTENSIONS = tuple(
    extension
    for extension in (
        ".heic",
        ".heif",
        ".avif",
        ".jxl",
        ".dng",
        ".cr2",
        ".cr3",
        ".nef",
        ".arw",
        ".raf",
        ".psd",
    )
    if extension not in IMAGE_EXTENSIONS
)


def load_image_folder(
    root: PathLike,
    *,
    image_size: int | tuple[int, int] | None = None,
    class_names: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    cache_dir: PathLike | bool | None = None,
    splits: str | Sequence[str] = SPLITS,
    min_classes: int = 2,
    stream: bool = False,
    classes_of_split: bool = False,
) -> Splits:
    """Loads `root/{train,test}/<class>/*` (the `IMAGE_EXTENSIONS` files) into arrays.

    Non-image files (`.txt`, `.DS_Store`, ...) and sub-folders of class
    folders are ignored; photos in a format that is not read (`.heic`, raw
    files: `UNREAD_PHOTO_EXTENSIONS`) are left out with a warning.
    Grayscale, RGBA and palette images are converted to RGB. Unreadable
    (corrupt, truncated) images are skipped, reported with `warnings.warn`
    and listed in `Splits.skipped`; so are, with a warning of their own,
    entries that cannot even be listed (a symbolic-link loop, a broken
    link). Decoded arrays are cached as one `.npz` per split so the next load takes about a second (a
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
        min_classes: the fewest classes accepted: 2 for a classifier to
            train (one class would score 100% learning nothing); 1 to
            evaluate a trained model on the images of one class.
        stream: leave the images on disk: each split's images are a
            `keras_vit.data.streaming.FileImages` (the files, decoded when
            read, a batch at a time), for data sets larger than memory.
            Needs `image_size`; nothing is cached, and an unreadable file
            is found (and named) when its batch is read.
        classes_of_split: with one split requested, its own class folders
            are the classes (sorted), even where `train/` has more, and
            `val/` is not read: for scoring a trained model, whose classes
            are matched by name.

    Returns:
        A `Splits`.

    Raises:
        DataNotFoundError: If `root`, a requested split folder or one of its
            class folders is missing.
        ValueError: If `root` holds class folders but no `train/` or `test/`
            (`check_not_bare_class_folders`), there are fewer than
            `min_classes` classes, a class name cannot be a line of a labels
            file (`check_class_names`: e.g. a folder named with a trailing
            space), a class folder has no images, all images of a split or
            of a class are unreadable, images differ in size and
            `image_size` is `None`, or `splits` names an unknown split.
    """
    root = Path(root).expanduser().absolute()
    size = _normalize_size(image_size)
    wanted = normalize_splits(splits)
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit <= 0):
        raise ValueError(f"`limit` must be a positive integer or None, got {limit!r}.")
    if not root.is_dir():
        raise DataNotFoundError(f"Image folder {root} does not exist.\n{LAYOUT_HELP}")
    for split in wanted:
        if not (root / split).is_dir():
            check_not_bare_class_folders(root)
            other = " next to the other split" if len(wanted) == len(SPLITS) else ""
            raise DataNotFoundError(
                f"Missing split folder {root / split}: expected {root}/{split}/<class>/*.png|jpg{other}."
            )
    unlisted: dict[str, str] = {}  # entries that cannot be listed (symlink loops): path -> why
    classes_of_split = classes_of_split and len(wanted) == 1
    names = _class_names(root, class_names, wanted, unlisted, classes_of_split)
    if len(names) < min_classes:
        where = "`class_names`" if class_names is not None else str(root)
        raise ValueError(
            f"{where} has {len(names)} class ({', '.join(names)}); a classifier needs at least {min_classes}: "
            f"add a folder of images for each class ({root}/<split>/<class>/*.png|jpg)."
        )
    files = {split: _scan_split(root / split, names, unlisted) for split in wanted}
    _warn_unlisted(unlisted, root)
    if stream:
        return _streamed_splits(root, files, wanted, names, size, limit, seed, unlisted, classes_of_split)

    arrays, skipped, cached = {}, [], []
    for split in wanted:
        x, y, bad, cache_file = _load_split(root, split, files[split], size, names, limit, seed, cache_dir)
        arrays[split] = (x, y)
        skipped += bad
        if cache_file is not None:
            cached.append(cache_file)
    validation = None
    if _reads_val(root, wanted, classes_of_split):  # a data set that ships its validation split
        val_files = _scan_split(root / "val", names, unlisted)
        x, y, bad, cache_file = _load_split(root, "val", val_files, size, names, limit, seed, cache_dir)
        validation, skipped = (x, y), skipped + bad
        cached += [cache_file] if cache_file is not None else []
    for split in SPLITS:  # A split not requested: zero images of the same shape.
        arrays.setdefault(split, empty_like(arrays[wanted[0]][0]))
    source = f"image folder {root}"
    if cached:
        source += f" (cached: {'; '.join(map(str, cached))})"
    result = Splits(
        *arrays["train"],
        *arrays["test"],
        class_names=names,
        source=source,
        skipped=skipped,
        x_val=None if validation is None else validation[0],
        y_val=None if validation is None else validation[1],
    )
    _warn_skipped(skipped, root)
    return result


def _reads_val(root: Path, wanted: tuple[str, ...], classes_of_split: bool) -> bool:
    """Whether a load reads `val/`: a training load of a folder that has one (not one split scored alone)."""
    return "train" in wanted and not classes_of_split and (root / "val").is_dir()


def _streamed_splits(root, files, wanted, names, size, limit, seed, unlisted, classes_of_split=False):
    """`load_image_folder(..., stream=True)`: each split's selected files as a `FileImages`, in the seed's order."""
    if size is None:
        raise ValueError("a streamed image folder needs `image_size` (its files are decoded when read)")

    def split_arrays(split_files):
        paths, labels = split_files
        order = stratified_indices(labels, limit, seed)
        return FileImages([paths[i] for i in order], size), labels[order]

    arrays = {split: split_arrays(files[split]) for split in wanted}
    for split in SPLITS:  # a split not requested: zero images of the same shape
        arrays.setdefault(split, (FileImages([], size), np.zeros(0, np.int32)))
    validation = None
    if _reads_val(root, wanted, classes_of_split):
        validation = split_arrays(_scan_split(root / "val", names, unlisted))
    return Splits(
        *arrays["train"],
        *arrays["test"],
        class_names=names,
        source=f"image folder {root} (streamed from disk)",
        x_val=None if validation is None else validation[0],
        y_val=None if validation is None else validation[1],
    )


def _load_split(root, split, files, size, names, limit, seed, cache_dir):
    """One split of `load_image_folder`: from the cache, else decoded (and cached).

    Returns:
        `(x, y, skipped, cache_file)`: `cache_file` is the cache read, or
        `None` when the images were decoded.
    """
    paths, labels = files
    order = stratified_indices(labels, limit, seed)
    cache_file = cache.cache_path(cache_dir, root, split, paths, size, names, limit, seed)
    hit = cache.read_cache(cache_file) if cache_file is not None and cache_file.is_file() else None
    if hit is not None:
        _check_every_class_read(hit[1], labels[order], labels, hit[2], names, root / split)
        return (*hit, cache_file)
    start = time.perf_counter()
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
    _check_every_class_read(y, labels[order], labels, bad, names, root / split)
    logger.info("Decoded %d images from %s in %.1f s.", len(paths), root / split, time.perf_counter() - start)
    if cache_file is not None:
        cache.write_cache(cache_file, x, y, bad)
    return x, y, bad, None


def _check_every_class_read(y, selected, labels, bad, names, split_dir: Path) -> None:
    """Refuses a split in which no image of a class could be read.

    Training on would learn the class from nothing (and evaluating would
    leave it out) behind a line that says "0 images".

    Args:
        y: labels of the images read.
        selected: labels of the images selected (all, or a `limit`'s pick).
        labels: labels of every image file of the split.
        bad: the `(path, why)` of the images that could not be read.
        names: the class names.
        split_dir: the split's folder.

    Raises:
        ValueError: naming the first such class, its folder and an error.
    """
    lost = sorted(set(np.unique(selected).tolist()) - set(np.unique(y).tolist()))
    # With a `limit`, a class whose few picked images were unreadable may have readable ones left out.
    lost = [label for label in lost if np.sum(selected == label) == np.sum(labels == label)]
    if not lost:
        return
    name = names[lost[0]]
    count = int(np.sum(selected == lost[0]))
    folder = split_dir / name
    first = next(((p, why) for p, why in bad if Path(p).parent == folder), None)
    error = f"; first error: {first[0]}: {first[1]}" if first else ""
    others = f" (and {len(lost) - 1} other class(es))" if len(lost) > 1 else ""
    raise ValueError(
        f"None of the {count} images of class '{name}' in {folder} could be read{others}{error}."
    )


def _normalize_size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    if len(size) != 2 or not all(int(s) == s and s > 0 for s in size):
        raise ValueError(f"`image_size` must be a positive int or (height, width), got {image_size!r}.")
    return int(size[0]), int(size[1])


def check_not_bare_class_folders(folder: Path) -> None:
    """Refuses, with what to do, a folder of class folders that has no train/ or test/ (`DIR/<class>/*.jpg`),
    the layout most image collections come in.

    Raises:
        ValueError: `folder` has neither `train/` nor `test/`, and one of
            its sub-folders holds image files.
    """
    if any((folder / split).is_dir() for split in SPLITS):
        return
    try:
        classes = [name for name in _subdirs(folder) if _holds_images(folder / name)]
    except OSError:
        return
    if classes:
        shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
        raise ValueError(
            f"{folder} holds class folders ({shown}) but no train/ or test/ folder: give the folder that holds "
            f"train/<class>/ and test/<class>/, or move the class folders into {folder / 'train'} and a share "
            f"of each class's images into {folder / 'test'}/<class>/"
        )


def _holds_images(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(is_image_file(entry.name) for entry in entries)
    except OSError:
        return False


def is_image_file(name: str) -> bool:
    """Whether a file of this name is one of a folder's images: an `IMAGE_EXTENSIONS` file, dot-files left out."""
    # Dot-files include macOS "._x.jpg" resource forks, which aren't images.
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_folder(path: Path, unlisted: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """The sub-folder names and the file paths of a folder, each sorted; dot-entries left out.

    An entry that cannot be examined (a symbolic-link loop: `[Errno 40] Too
    many levels of symbolic links`; a link to nothing) is neither: it goes
    into `unlisted` (path -> why) for the caller to report, rather than
    stopping the whole listing.
    """
    dirs, files = [], []
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    dirs.append(entry.name)
                elif entry.is_file():
                    files.append(entry.path)
                elif entry.is_symlink():
                    raise FileNotFoundError(f"broken symbolic link to {os.readlink(entry.path)}")
            except OSError as e:
                if unlisted is not None:
                    unlisted[entry.path] = e.strerror or str(e)
    return sorted(dirs), sorted(files)


def _subdirs(path: Path, unlisted: dict[str, str] | None = None) -> list[str]:
    return list_folder(path, unlisted)[0]


def _warn_unlisted(unlisted: dict[str, str], root: Path) -> None:
    if not unlisted:
        return
    items = sorted(unlisted.items())
    first = "; ".join(f"{p} ({why})" for p, why in items[:3])
    more = f" and {len(items) - 3} more" if len(items) > 3 else ""
    warnings.warn(
        f"Skipped {len(items)} entr{'y' if len(items) == 1 else 'ies'} under {root} that cannot be read: "
        f"{first}{more}.",
        stacklevel=3,
    )


def _class_names(
    root: Path,
    class_names: Sequence[str] | None,
    wanted: tuple[str, ...] = SPLITS,
    unlisted: dict[str, str] | None = None,
    own_classes: bool = False,
) -> tuple[str, ...]:
    if class_names is not None:
        return tuple(check_class_names(class_names))
    # train/ defines the classes (and so the labels) whenever it has any, even
    # if only test/ is loaded; a test-only tree uses test/'s own folders.
    train = root / "train"
    use_train = "train" in wanted or (not own_classes and train.is_dir() and bool(_subdirs(train)))
    ref = "train" if use_train else wanted[0]
    names = _subdirs(root / ref, unlisted)
    if not names:
        raise DataNotFoundError(
            f"{root / ref} has no class sub-folders: expected {root}/{ref}/<class>/*.png|jpg."
        )
    # A training load reads val/ too, when there is one: its folders must be classes the model learns.
    with_val = (*wanted, "val") if _reads_val(root, wanted, own_classes) else wanted
    for split in with_val:
        extra = sorted(set(_subdirs(root / split, unlisted)) - set(names)) if split != ref else []
        if extra:
            raise ValueError(f"{root / split} has class folders that {root / ref} lacks: {extra}.")
    try:
        check_class_names(names)  # before any image is decoded: the run could not save its labels
    except ValueError as error:
        raise ValueError(f"{root / ref}: {error} Rename its folder.") from None
    if set(names) == set(CIFAR10_CLASSES):
        return CIFAR10_CLASSES
    return tuple(names)


def _scan_split(
    split_dir: Path, names: tuple[str, ...], unlisted: dict[str, str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Lists image files per class, sorted by name so `seed` is reproducible; warns of photos in formats that are
    not read (`UNREAD_PHOTO_EXTENSIONS`)."""
    paths: list[str] = []
    labels: list[int] = []
    unread: dict[str, int] = {}
    for label, name in enumerate(names):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            raise DataNotFoundError(f"Missing class folder {class_dir}.")
        files = list_folder(class_dir, unlisted)[1]
        found = [p for p in files if is_image_file(os.path.basename(p))]
        skipped = _unread_photos(files)
        if not found:
            held = f"; it holds {_counted(skipped)}, not read: convert them to JPEG or PNG" if skipped else ""
            raise ValueError(
                f"Class folder {class_dir} contains no images ({', '.join(IMAGE_EXTENSIONS)}){held}; add images "
                "or remove the folder."
            )
        for extension, count in skipped.items():
            unread[extension] = unread.get(extension, 0) + count
        paths += found
        labels += [label] * len(found)
    if unread:
        warnings.warn(
            f"Left out {_counted(unread)} under {split_dir}: a format keras_vit does not read; convert them to "
            "JPEG or PNG to use them.",
            stacklevel=3,
        )
    return paths, np.asarray(labels, dtype=np.int32)


def _unread_photos(files: list[str]) -> dict[str, int]:
    """How many of `files` are photos in a format that is not read, by extension."""
    counts: dict[str, int] = {}
    for path in files:
        extension = os.path.splitext(path)[1].lower()
        if extension in UNREAD_PHOTO_EXTENSIONS and not os.path.basename(path).startswith("."):
            counts[extension] = counts.get(extension, 0) + 1
    return counts


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(
        f"{count} {extension} file{'s' if count > 1 else ''}" for extension, count in counts.items()
    )


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
                size = decode_image(path, None).shape[:2]
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
                img = decode_image(paths[i], resize)
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
