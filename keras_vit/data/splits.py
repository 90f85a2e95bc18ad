"""What every loader returns (`Splits`) and raises, the layouts it reads, and the balanced selection of `limit`.

numpy only.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

# CIFAR-10's label order (label `i` is `CIFAR10_CLASSES[i]`); an image-folder tree with exactly these class
# folders gets this order too, so that its labels match a model trained on any CIFAR-10 source.
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
DATA_DIR_ENV = "KERAS_VIT_DATA_DIR"  # the data folder when none is given
SPLITS = ("train", "test")
BATCHES_DIRNAME = "cifar-10-batches-py"  # the official CIFAR-10 python batches

# The layouts a data folder may have; the end of every "not found" message.
LAYOUT_HELP = (
    "To use a local copy, pass `--data-dir DIR` or `export "
    f"{DATA_DIR_ENV}=DIR`, where DIR holds either\n"
    "  - an image-folder tree: DIR/train/<class>/*.png|jpg and "
    "DIR/test/<class>/*.png|jpg, or\n"
    f"  - the official `{BATCHES_DIRNAME}` folder (data_batch_1..5, "
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
        x_val: the validation split's images, as `x_train` (`(V, H, W, 3)`):
            held out of the training images by `hold_out`, or an image
            folder's own `val/`; None when there is no validation split.
        y_val: int32 array of shape `(V,)`, the labels of `x_val`; None with
            it.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    def hold_out(self, fraction: float, seed: int = 0) -> "Splits":
        """A copy whose validation split is `fraction` of the training images, class-balanced, drawn by `seed`.

        The validation images leave the training split (the two are disjoint);
        the test split is untouched. Model selection (the curves, early
        decisions, recipe choices) looks at the validation split, and the test
        split is scored once, at the end.

        Args:
            fraction: share of the training images to hold out, in `[0, 1)`;
                0 returns `self` unchanged (no validation split), and so
                does a data set that ships a validation split (an image
                folder's `val/`), which is used as it is.
            seed: the same seed holds out the same images.

        Returns:
            A new `Splits`.

        Raises:
            ValueError: `fraction` outside `[0, 1)`, one that holds out no
                image, or a class left without a training or a validation image.
        """
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"the validation split must be in [0, 1), got {fraction}")
        if (
            not fraction or self.x_val is not None
        ):  # none asked, or the data set ships its own (a val/ folder)
            return self
        count = int(round(fraction * len(self.y_train)))
        if count == 0:
            raise ValueError(
                f"a validation split of {fraction} holds out no image of {len(self.y_train)}; "
                "use a larger --validation-split, or 0 for none"
            )
        held = stratified_indices(self.y_train, count, seed)
        kept = np.setdiff1d(np.arange(len(self.y_train)), held)
        for name, labels in (("training", self.y_train[kept]), ("validation", self.y_train[held])):
            missing = sorted(set(range(self.num_classes)) - set(np.unique(labels).tolist()))
            if missing:
                names = ", ".join(self.class_names[i] for i in missing)
                raise ValueError(
                    f"a validation split of {fraction} leaves no {name} image of {names}; "
                    "use more images or another --validation-split"
                )
        return dataclasses.replace(
            self,
            x_train=self.x_train[kept],
            y_train=self.y_train[kept],
            x_val=self.x_train[held],
            y_val=self.y_train[held],
        )

    def with_validation(self, fraction: float | None, seed: int = 0, default: float = 0.1) -> "Splits":
        """The validation split a run asks for (`--validation-split`), from the training images or the data set's own.

        Args:
            fraction: None (not asked for): the data set's own validation split
                (an image folder's `val/`) when it ships one, else `default`
                held out (`hold_out`); 0: no validation, a shipped split left
                out too; another share: `hold_out(fraction)`, refused when
                the data set ships its own (which of the two would be meant is unclear).
            seed: the seed of `hold_out`.
            default: the share held out when `fraction` is None and none is shipped.

        Returns:
            A `Splits` (`self` when nothing changes).

        Raises:
            ValueError: a share other than 0 with a shipped validation split, or
                one `hold_out` refuses.
        """
        if fraction is None:
            return self if self.x_val is not None else self.hold_out(default, seed)
        if not fraction:
            return dataclasses.replace(self, x_val=None, y_val=None)
        if self.x_val is not None:
            raise ValueError(
                f"--validation-split {fraction:g} would hold out training images, but the data has its own "
                f"validation split (its val/ folder, {len(self.y_val)} images): leave --validation-split out to "
                "validate on val/, or give 0 for no validation"
            )
        return self.hold_out(fraction, seed)

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
        validation = "" if self.y_val is None else f" + {counts(self.y_val, 'validation')}"
        text = (
            f"{counts(self.y_train, 'train')}{validation} + {counts(self.y_test, 'test')} images of "
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


def stratified_indices(labels: Sequence[int] | np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
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


def normalize_splits(splits: str | Sequence[str]) -> tuple[str, ...]:
    """`"test"` or `("train", "test")`-like -> the requested subset of `SPLITS`, in order."""
    wanted = (splits,) if isinstance(splits, str) else tuple(splits)
    unknown = [s for s in wanted if s not in SPLITS]
    if unknown or not wanted:
        raise ValueError(f"`splits` must be one or more of {SPLITS}, got {splits!r}.")
    return tuple(s for s in SPLITS if s in wanted)


def empty_like(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero images of `x`'s image shape: the arrays of a split not loaded."""
    return np.empty((0, *x.shape[1:]), np.uint8), np.empty((0,), np.int32)


def splits_from_arrays(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    names: Sequence[str],
    source: str,
    limit: int | None,
    seed: int,
    splits: tuple[str, ...] = SPLITS,
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
        x_train=np.ascontiguousarray(x_train[i], dtype=np.uint8),
        y_train=y_train[i],
        x_test=np.ascontiguousarray(x_test[j], dtype=np.uint8),
        y_test=y_test[j],
        class_names=tuple(names),
        source=source,
    )
