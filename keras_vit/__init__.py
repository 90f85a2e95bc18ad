"""keras-vit: the Vision Transformer as Keras 3 layers, from `model.fit` to the edge.

The public names below are imported on first use (PEP 562), so that the
numpy-only modules (`keras_vit.data`, `keras_vit.labels`, `keras_vit.files`,
...) import without Keras or TensorFlow: the TF-free deployment runtime
(`export.runtime`) decodes images and reads labels with them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

__version__ = "0.1.0"

# TensorFlow turns its oneDNN CPU kernels on by itself only on CPUs with AVX-512 VNNI or newer; elsewhere it runs
# slower Eigen kernels built for plain AVX (measured in docs/experiments/README.md). Turned on here, before Keras
# loads TensorFlow, unless the user chose (`TF_ENABLE_ONEDNN_OPTS=0` keeps it off).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# public name -> the module that defines it
_PUBLIC = {
    "DropPath": "keras_vit.layers.drop_path",
    "LayerNorm": "keras_vit.layers.norm",
    "LocalitySelfAttention": "keras_vit.layers.attention",
    "PatchDropout": "keras_vit.layers.patch_dropout",
    "Patches": "keras_vit.layers.patches",
    "PatchEncoder": "keras_vit.layers.patch_encoder",
    "SequencePooling": "keras_vit.layers.pooling",
    "TransformerBlock": "keras_vit.layers.transformer_block",
    "ViT": "keras_vit.models.vit",
    "build_vit": "keras_vit.models.vit",
    "resize_vit": "keras_vit.models.vit",
    "vit_arguments": "keras_vit.models.vit",
    "PRESETS": "keras_vit.models.presets",
    "get_preset": "keras_vit.models.presets",
    "load_pretrained": "keras_vit.pretrained",
    "ModelFileError": "keras_vit.inference",
}


def load_model(path, compile=False):
    """Loads a `.keras` ViT file in safe mode (no `Lambda`, no pickled code).

    The file is checked first (`keras_vit.inference.check_keras_file`): a
    truncated or corrupt archive, a file without a model config and a config
    that holds or names code are refused with one line that names the file.

    Args:
        path: path of a `.keras` file saved by `keras_vit`.
        compile: whether to restore the training configuration.

    Returns:
        The `keras.Model`.

    Raises:
        ModelFileError (a `ValueError`): the file is missing, not a valid
            `.keras` file, or refused by safe mode; the message says which.
    """
    inference = importlib.import_module("keras_vit.inference")  # imports Keras: only when a model is loaded
    return inference.load_keras_model(path, compile=compile)


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif importlib.util.find_spec(f"keras_vit.{name}") is not None:  # a subpackage, e.g. keras_vit.pretrained
        value = importlib.import_module(f"keras_vit.{name}")
    else:
        raise AttributeError(f"module 'keras_vit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_PUBLIC])


__all__ = [*_PUBLIC, "load_model"]
