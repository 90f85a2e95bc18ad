"""keras-vit: the Vision Transformer as Keras 3 layers, from `model.fit` to the edge.

The public names below are imported on first use (PEP 562), so that the
numpy-only modules (`keras_vit.data`, `keras_vit.labels`, `keras_vit.files`,
...) import without Keras or TensorFlow: the TF-free deployment runtime
(`export.runtime`) decodes images and reads labels with them.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "DropPath": "keras_vit.layers",
    "LayerNorm": "keras_vit.layers",
    "LocalitySelfAttention": "keras_vit.layers",
    "PatchDropout": "keras_vit.layers",
    "Patches": "keras_vit.layers",
    "PatchEncoder": "keras_vit.layers",
    "SequencePooling": "keras_vit.layers",
    "TransformerBlock": "keras_vit.layers",
    "build_vit": "keras_vit.model",
    "resize_vit": "keras_vit.model",
    "vit_arguments": "keras_vit.model",
    "PRESETS": "keras_vit.presets",
    "get_preset": "keras_vit.presets",
    "load_pretrained": "keras_vit.pretrained",
}


def load_model(path, compile=False):
    """Loads a `.keras` ViT file in safe mode (no `Lambda`, no pickled code).

    Args:
        path: path of a `.keras` file saved by `keras_vit`.
        compile: whether to restore the training configuration.

    Returns:
        The `keras.Model`.
    """
    import keras

    importlib.import_module("keras_vit.layers")  # registers the custom layers
    return keras.saving.load_model(path, compile=compile, safe_mode=True)


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_vit' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_PUBLIC])


__all__ = [*_PUBLIC, "load_model"]
