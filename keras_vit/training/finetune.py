"""Starting a run from a pretrained ViT: the checkpoint, layer-wise learning-rate decay, frozen blocks.

load_pretrained(source)            a `.keras` file, or a checkpoint `keras_vit.convert.sources` converts, with the
                                   class names it was trained on where they are known
choose_head(...)                   keep, reorder or replace the checkpoint's head, by its and the data's class names
fine_tuning_start(model, ...)      the checkpoint at the data's resolution, with that head and other regularization
check_fine_tuning_overrides(...)   refuses ViT arguments that would change the checkpoint's architecture
layer_decay_multipliers(model, d)  each trainable variable's learning-rate factor (BEiT's layer-wise decay)
freeze_first_blocks(model, n)      the patch embedding and the first n blocks stop training
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np

from keras_vit.convert.sources import SOURCE_KINDS, check_path_exists, load_source, names_a_source
from keras_vit.inference import load_keras_model
from keras_vit.labels import find_labels_file, read_labels
from keras_vit.models import ViT, resize_vit, vit_arguments

# The ViT arguments a fine-tuning run may change: they add or remove no weights.
REGULARIZATION_ARGUMENTS = ("dropout", "attention_dropout", "drop_path", "patch_dropout")


@dataclasses.dataclass
class Pretrained:
    """A checkpoint loaded by `load_pretrained`.

    Attributes:
        model: the ViT, taking 0..255 pixels.
        class_names: the classes of its logits, in order, or None where
            unknown.
        names_from: where `class_names` come from, or why they are unknown.
        new_head: whether its head is no trained classifier (the source had
            none: a zero head that fine-tuning replaces).
    """

    model: object
    class_names: Optional[tuple] = None
    names_from: str = "the checkpoint names no classes"
    new_head: bool = False

    def head_for(self, class_names):
        """`choose_head` for data of these class names (in label order): keep, reorder or replace the head."""
        return choose_head(
            vit_arguments(self.model)["num_classes"],
            class_names,
            self.class_names,
            self.names_from,
            self.new_head,
        )


def load_pretrained(source):
    """The pretrained ViT that `source` names, with the class names it was trained on where they are known.

    Args:
        source: a keras_vit `.keras` file (its class names: the labels file
            beside it, `<stem>.labels.txt` or `labels.txt`, as
            `keras_vit.predict` finds it); or a checkpoint to convert
            (`keras_vit.convert.sources`): `timm:NAME` (timm's pretrained
            weights: timm, PyTorch and the network, or timm's cache),
            `hf:NAME` (a Hugging Face Hub ViT, downloaded), `keras_hub:PRESET`,
            or a Hugging Face `.safetensors` file or folder holding
            `model.safetensors` with its `config.json` (and
            `preprocessor_config.json`, which gives the input mean and std).
            A source without a classifier (a backbone) gets a zero 1-class
            head, `new_head` True.

    Returns:
        A `Pretrained`.

    Raises:
        ValueError: a source of no known kind, or one the converters refuse
            (`keras_vit.convert.sources.MissingStatisticsError` where it does not
            give its input mean and std).
        OSError: a file that cannot be read.
        ImportError: the converter's library is not installed
            (`pip install keras-vit[convert]`).
    """
    text = os.fspath(source)
    if text.endswith(".keras"):
        model = load_keras_model(text)
        names, names_from = _labels_beside(text, int(model.output_shape[-1]))
        return Pretrained(model, names, names_from)
    check_path_exists(text)
    if not names_a_source(text):
        raise ValueError(f"{text!r} is not a checkpoint keras_vit reads: give a .keras file, {SOURCE_KINDS}")
    converted = load_source(text, backbone_classes=1)
    names_from = converted.names_from or "the source names no classes"
    return Pretrained(converted.model, converted.class_names, names_from, converted.new_head)


def _labels_beside(path, num_classes):
    """`(names, where from)` of the labels file beside the `.keras` file `path`; `(None, why)` where there is none
    or it does not fit the model."""
    found = find_labels_file(path)
    if found is None:
        return None, f"no labels file beside {path}"
    try:
        names = read_labels(found)
    except (OSError, ValueError) as error:
        return None, f"its labels file cannot be read ({error})"
    if len(names) != num_classes:
        return None, f"{found} has {len(names)} names, the model {num_classes} classes"
    return names, str(found)


@dataclasses.dataclass(frozen=True)
class HeadChoice:
    """What `fine_tuning_start` does with the checkpoint's head (`choose_head`).

    Attributes:
        action: `"keep"`, `"reorder"` (the same classes in the data's order)
            or `"new"` (a zero head for the data's classes).
        order: for `"reorder"`, the checkpoint's logit of each of the data's
            classes, in the data's order.
        message: one line that says what was done and why.
    """

    action: str
    order: Optional[tuple] = None
    message: str = ""


def choose_head(checkpoint_classes, data_names, checkpoint_names=None, names_from=None, new_head=False):
    """Keep, reorder or replace the checkpoint's head, by its classes and the data's.

    The same names in the same order keep the head; the same names in
    another order reorder its rows to the data's order; other names get a
    new, zero head. Where the checkpoint's names are unknown, the head is
    kept when the class counts agree (the classes taken to be the data's,
    in its order: said), else replaced.

    Args:
        checkpoint_classes: the checkpoint's class count.
        data_names: the data's class names, in label order.
        checkpoint_names: the checkpoint's, in logit order, or None.
        names_from: where they come from (or why unknown), for the message.
        new_head: the checkpoint's head is no trained classifier.

    Returns:
        A `HeadChoice`.
    """
    data_names = [str(name) for name in data_names]
    count = len(data_names)
    if new_head:
        return HeadChoice(
            "new", message=f"Head: new, zero, for the data's {count} classes (the checkpoint has none)"
        )
    if checkpoint_names is None:
        if count == checkpoint_classes:
            return HeadChoice(
                "keep",
                message=f"Head: the checkpoint's, kept: {count} classes as the data, but its class names are "
                f"unknown ({names_from}), so its logit i is taken as the data's class {data_names[0]!r}, ... in "
                "the data's order",
            )
        return HeadChoice(
            "new",
            message=f"Head: new, zero, for the data's {count} classes (the checkpoint has {checkpoint_classes})",
        )
    checkpoint_names = [str(name) for name in checkpoint_names]
    if checkpoint_names == data_names:
        return HeadChoice("keep", message=f"Head: the checkpoint's, kept: the data's classes ({names_from})")
    if sorted(checkpoint_names) == sorted(data_names):
        order = tuple(checkpoint_names.index(name) for name in data_names)
        return HeadChoice(
            "reorder",
            order,
            message=f"Head: the checkpoint's, its rows reordered to the data's order of the same {count} classes "
            f"({names_from})",
        )
    others = sorted(set(checkpoint_names) - set(data_names))
    return HeadChoice(
        "new",
        message=f"Head: new, zero, for the data's {count} classes: the checkpoint's {len(checkpoint_names)} "
        f"classes are others ({names_from}: {', '.join(map(repr, others[:3]))}"
        f"{', ...' if len(others) > 3 else ''} not in the data)",
    )


def check_fine_tuning_overrides(overrides):
    """Raises ValueError, naming them, where `overrides` (ViT arguments) hold more than regularization."""
    fixed = sorted(set(overrides) - set(REGULARIZATION_ARGUMENTS))
    if fixed:
        raise ValueError(
            f"the checkpoint fixes the architecture: {', '.join(fixed)} cannot be changed when fine-tuning "
            f"(only {', '.join(REGULARIZATION_ARGUMENTS)} can)"
        )


def fine_tuning_start(model, image_size, num_classes, overrides=None, head=None):
    """The pretrained `model` made ready to fine-tune on other data.

    Args:
        model: the pretrained ViT (`load_pretrained`).
        image_size: `(height, width)` of the training images; the position
            embedding is resampled to their patch grid (`resize_vit`).
        num_classes: the data's class count.
        overrides: optional dict of `REGULARIZATION_ARGUMENTS` values for the
            fine-tuning run (e.g. `{"drop_path": 0.1}`); the checkpoint fixes
            every other argument.
        head: a `HeadChoice` (`choose_head`, from the checkpoint's and the
            data's class names); None: by the class count alone, the head
            kept where it is the checkpoint's, else new and zero.

    Returns:
        A new `ViT` under the global dtype policy, with the checkpoint's
        weights.

    Raises:
        ValueError: an override that would change the architecture, or an
            image size the patch size does not divide.
    """
    overrides = dict(overrides or {})
    check_fine_tuning_overrides(overrides)
    start = resize_vit(
        model, image_size, num_classes=num_classes, name=model.name
    )  # the copy stands in for it
    kept = int(num_classes) == vit_arguments(model)["num_classes"]  # resize_vit copied the head
    if head is not None and head.action != "keep":
        if head.action == "reorder" and not kept:
            raise ValueError(
                f"cannot reorder a {vit_arguments(model)['num_classes']}-class head to {num_classes}"
            )
        if kept:
            layer = start.get_layer("head")
            weights = layer.get_weights()  # kernel (features, classes), bias (classes,)
            if head.action == "new":  # as a new ViT's head
                weights = [np.zeros_like(w) for w in weights]
            else:
                weights = [w[..., list(head.order)] for w in weights]
            layer.set_weights(weights)
    if not overrides:
        return start
    # Regularization layers hold no weights: the same weights fit the rebuilt network.
    rebuilt = ViT(**{**vit_arguments(start), **overrides}, name=start.name)
    rebuilt.set_weights(start.get_weights())
    return rebuilt


def _block_count(model):
    return sum(layer.name.startswith("block_") for layer in model.layers)


def _layer_depth(model):
    """`{layer name: depth}`: 0 for the layers before the first block (the patch embedding), i + 1 for block i,
    the block count + 1 for the layers after the last (the final norm and the head)."""
    blocks = _block_count(model)
    depths, depth = {}, 0
    for layer in model.layers:
        if layer.name.startswith("block_"):
            depth = int(layer.name.removeprefix("block_")) + 1
        elif depth:  # after the blocks
            depth = blocks + 1
        depths[layer.name] = depth
    return depths


def layer_decay_multipliers(model, decay):
    """Layer-wise learning-rate decay (Bao et al. 2022, BEiT): each trainable variable's factor on the rate.

    The head and the final norm train at the full rate; each block below
    gets `decay` times the rate of the one above; the patch embedding, the
    class token and the position embedding get the smallest,
    `decay ** (blocks + 1)`.

    Args:
        model: a ViT (its layers `block_0`, `block_1`, ...).
        decay: float in `(0, 1]`.

    Returns:
        `{variable path: factor}` for every trainable variable.
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"layer decay must be in (0, 1], got {decay}.")
    top = _block_count(model) + 1
    depths = _layer_depth(model)
    return {
        variable.path: decay ** (top - depths[layer.name])
        for layer in model.layers
        for variable in layer.trainable_variables
    }


def freeze_first_blocks(model, count):
    """Stops training the patch embedding and the first `count` blocks (`count` 0: nothing is frozen).

    Args:
        model: a ViT.
        count: int in `[0, blocks]`.

    Returns:
        The names of the layers frozen.
    """
    blocks = _block_count(model)
    if not 0 <= count <= blocks:
        raise ValueError(f"cannot freeze {count} blocks of a ViT with {blocks}.")
    if count == 0:
        return []
    frozen = [name for name, depth in _layer_depth(model).items() if depth <= count]
    for name in frozen:
        model.get_layer(name).trainable = False
    return frozen
