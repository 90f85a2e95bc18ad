"""Starting a run from a pretrained ViT: the checkpoint, layer-wise learning-rate decay, frozen blocks.

load_checkpoint(source)            a `.keras` file, or a checkpoint `keras_vit.convert.sources` converts
fine_tuning_start(model, ...)      the checkpoint at the data's resolution, with a new head and other regularization
check_fine_tuning_overrides(...)   refuses ViT arguments that would change the checkpoint's architecture
layer_decay_multipliers(model, d)  each trainable variable's learning-rate factor (BEiT's layer-wise decay)
freeze_first_blocks(model, n)      the patch embedding and the first n blocks stop training
"""

from __future__ import annotations

import os

from keras_vit.convert.sources import SOURCE_KINDS, load_source, names_a_source
from keras_vit.inference import load_keras_model
from keras_vit.models import ViT, resize_vit, vit_arguments

# The ViT arguments a fine-tuning run may change: they add or remove no weights.
REGULARIZATION_ARGUMENTS = ("dropout", "attention_dropout", "drop_path", "patch_dropout")


def load_checkpoint(source):
    """The pretrained ViT that `source` names.

    Args:
        source: a keras_vit `.keras` file; or a checkpoint to convert
            (`keras_vit.convert.sources`): `timm:NAME` (timm's pretrained
            weights: timm, PyTorch and the network, or timm's cache),
            `hf:NAME` (a Hugging Face Hub ViT, downloaded), `keras_hub:PRESET`,
            or a Hugging Face `.safetensors` file or folder holding
            `model.safetensors` with its `config.json` (and
            `preprocessor_config.json`, which gives the input mean and std).

    Returns:
        A `ViT` (or a legacy keras_vit functional model) taking 0..255 pixels.

    Raises:
        ValueError: a source of no known kind, or one the converters refuse.
        OSError: a file that cannot be read.
        ImportError: the converter's library is not installed
            (`pip install keras-vit[convert]`).
    """
    text = os.fspath(source)
    if text.endswith(".keras"):
        return load_keras_model(text)
    if not names_a_source(text):
        raise ValueError(f"{text!r} is not a checkpoint keras_vit reads: give a .keras file, {SOURCE_KINDS}")
    return load_source(text).model


def check_fine_tuning_overrides(overrides):
    """Raises ValueError, naming them, where `overrides` (ViT arguments) hold more than regularization."""
    fixed = sorted(set(overrides) - set(REGULARIZATION_ARGUMENTS))
    if fixed:
        raise ValueError(
            f"the checkpoint fixes the architecture: {', '.join(fixed)} cannot be changed when fine-tuning "
            f"(only {', '.join(REGULARIZATION_ARGUMENTS)} can)"
        )


def fine_tuning_start(model, image_size, num_classes, overrides=None):
    """The pretrained `model` made ready to fine-tune on other data.

    Args:
        model: the pretrained ViT (`load_checkpoint`).
        image_size: `(height, width)` of the training images; the position
            embedding is resampled to their patch grid (`resize_vit`).
        num_classes: the data's class count; another count than the
            checkpoint's gets a new, zero head.
        overrides: optional dict of `REGULARIZATION_ARGUMENTS` values for the
            fine-tuning run (e.g. `{"drop_path": 0.1}`); the checkpoint fixes
            every other argument.

    Returns:
        A new `ViT` under the global dtype policy, with the checkpoint's
        weights.

    Raises:
        ValueError: an override that would change the architecture, or an
            image size the patch size does not divide.
    """
    overrides = dict(overrides or {})
    check_fine_tuning_overrides(overrides)
    start = resize_vit(model, image_size, num_classes=num_classes)
    if not overrides:
        return start
    # Regularization layers hold no weights: the same weights fit the rebuilt network.
    rebuilt = ViT(**{**vit_arguments(start), **overrides})
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
