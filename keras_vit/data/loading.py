"""One split of any labelled source at a model's input size, with labels in the model's order.

What `keras_vit.evaluate` scores a saved model on: a CIFAR-10 source or any
image-folder tree, whatever the model's resolution and class order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from keras_vit.data.cifar10 import load_cifar10
from keras_vit.data.class_names import same_name
from keras_vit.data.folders import check_not_bare_class_folders, list_folder, load_image_folder
from keras_vit.data.images import resize_images
from keras_vit.data.splits import CIFAR10_CLASSES, DATA_DIR_ENV, SPLITS


def given_data_dir(data_dir):
    """`data_dir`, else `$KERAS_VIT_DATA_DIR`, else None (the CIFAR-10 loader then searches its standard places):
    the folder a loader will read, for the choice between the CIFAR-10 loader and the image-folder loader."""
    if data_dir is not None:
        return data_dir
    return os.environ.get(DATA_DIR_ENV) or None


def image_folder_classes(root) -> list[str] | None:
    """The class folders of an image-folder tree `root/{train,test}/<class>/` (of train/, else of test/;
    dot-folders such as `.ipynb_checkpoints` left out), or None when `root` is not one (the official CIFAR-10
    batches, or a folder that holds them)."""
    root = Path(root).expanduser()
    for split in SPLITS:
        if (root / split).is_dir():
            return list_folder(root / split)[0]  # an entry that cannot be read: the loader warns of it
    return None


def holds_cifar10(root, image_size=None) -> bool:
    """Whether the CIFAR-10 loader reads `root`: anything but an image-folder tree, or a tree of exactly the
    CIFAR-10 class folders, unless such a tree is asked for at another `image_size` than 32x32 (the image-folder
    loader resizes, the CIFAR-10 loader does not); `image_size` None: at the loader's own size."""
    classes = image_folder_classes(root)
    if classes is None:
        return True
    return set(classes) == set(CIFAR10_CLASSES) and (image_size is None or tuple(image_size) == (32, 32))


def load_split(data_dir, split: str, image_size, limit=None, seed: int = 0, cache_dir=None, stream=False):
    """Loads one split of a dataset at the model's input size.

    A CIFAR-10 source (the official batches, or an image-folder tree with
    exactly the CIFAR-10 class folders when the model takes 32x32 images) is
    read with `load_cifar10`; any other image-folder tree with
    `load_image_folder`, resized to `image_size`. Only `split` is read: a
    folder may lack the other one, and the split's class folders are its
    classes, even where `train/` has more (`match_labels` maps them to the
    model's).

    Args:
        data_dir: dataset folder, or None: `$KERAS_VIT_DATA_DIR`, else the
            standard CIFAR-10 places `load_cifar10` searches.
        split: `"train"` or `"test"`.
        image_size: `(height, width)` of the model input.
        limit: optional number of images, drawn evenly from the classes.
        seed: seed of the `limit` selection.
        cache_dir: decoded-array cache folder (False disables it).
        stream: leave an image-folder tree's images on disk: the images are
            a `keras_vit.data.streaming.FileImages`, decoded when read (an
            unreadable file raises then); nothing is cached.

    Returns:
        Tuple `(images uint8 (n, h, w, 3), labels int32 (n,), class_names,
        source, num_skipped)`; labels index `class_names` (the data's order).

    Raises:
        DataNotFoundError: no data where it was looked for.
        OSError, ValueError: a malformed data folder.
    """
    size = tuple(int(v) for v in image_size)
    root = given_data_dir(data_dir)
    if stream and root is not None:
        check_not_bare_class_folders(Path(root).expanduser())  # DIR/<class>/*.jpg: said as such
    if stream and (root is None or image_folder_classes(root) is None):
        raise ValueError(
            "streaming reads an image-folder tree DIR/{train,test}/<class>/: give it as the data folder"
        )
    if root is None or (holds_cifar10(root, size) and not stream):
        splits = load_cifar10(data_dir, limit=limit, seed=seed, cache_dir=cache_dir, splits=(split,))
    else:
        splits = load_image_folder(  # min_classes=1: a trained model may be scored on one class's images
            root,
            image_size=size,
            limit=limit,
            seed=seed,
            cache_dir=cache_dir,
            splits=(split,),
            min_classes=1,
            classes_of_split=True,  # matched to the model's by name: train/ may have more
            stream=stream,
        )
    x, y = (splits.x_train, splits.y_train) if split == "train" else (splits.x_test, splits.y_test)
    if stream:
        return x, np.asarray(y, np.int32), tuple(splits.class_names), splits.source, 0
    if tuple(x.shape[1:3]) != size:  # CIFAR-10 batches for a model of another resolution.
        x = resize_images(x, size)
    return x, np.asarray(y, np.int32), tuple(splits.class_names), splits.source, len(splits.skipped)


def match_labels(labels, data_classes: Sequence[str], model_classes: Sequence[str]) -> np.ndarray:
    """Maps data labels to the model's label order by class name (a name without an exact match is compared in
    Unicode's composed form, NFC).

    Args:
        labels: int labels indexing `data_classes`.
        data_classes: the dataset's class names.
        model_classes: the model's class names.

    Returns:
        int32 labels indexing `model_classes`.

    Raises:
        ValueError: if a data class is not one of the model's classes.
    """
    exact = {name: i for i, name in enumerate(model_classes)}
    composed = {same_name(name): i for i, name in enumerate(model_classes)}
    # A name matches itself first, and only then its composed form (two classes may differ in form alone).
    index = {name: exact.get(name, composed.get(same_name(name))) for name in data_classes}
    unknown = [name for name in data_classes if index[name] is None]
    if unknown:
        raise ValueError(
            f"data classes {unknown} are not among the model's classes ({', '.join(model_classes)}); "
            "pass --labels FILE with the model's class names"
        )
    mapping = np.asarray([index[name] for name in data_classes], np.int32)
    return mapping[np.asarray(labels, np.int64)]
