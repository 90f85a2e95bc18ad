"""keras-vit: the Vision Transformer as Keras 3 layers, from `model.fit` to the edge.

The public names below are imported on first use (PEP 562), so that the
numpy-only modules (`keras_vit.data`, `keras_vit.labels`, `keras_vit.files`,
...) import without Keras or TensorFlow: the TF-free deployment runtime
(`export.runtime`) decodes images and reads labels with them.
"""

from __future__ import annotations

import importlib
import os

from keras_vit._lazy import lazy_attributes

__version__ = "0.1.0"

# TensorFlow turns its oneDNN CPU kernels on by itself only on CPUs with AVX-512 VNNI or newer; elsewhere it runs
# slower Eigen kernels built for plain AVX (measured in docs/experiments/README.md). Turned on here, before Keras
# loads TensorFlow, unless the user chose (`TF_ENABLE_ONEDNN_OPTS=0` keeps it off).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# public name -> the module that defines it (relative to keras_vit)
_PUBLIC = {
    "DropPath": "layers.drop_path",
    "LayerNorm": "layers.norm",
    "LocalitySelfAttention": "layers.attention",
    "PatchDropout": "layers.patch_dropout",
    "Patches": "layers.patches",
    "PatchEncoder": "layers.patch_encoder",
    "SequencePooling": "layers.pooling",
    "TransformerBlock": "layers.transformer_block",
    "ViT": "models.vit",
    "build_vit": "models.vit",
    "resize_vit": "models.vit",
    "vit_arguments": "models.vit",
    "PRESETS": "models.presets",
    "get_preset": "models.presets",
    "load_pretrained": "pretrained",
    "ModelFileError": "inference",
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


__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC, submodules=True)

__all__ = [*_PUBLIC, "load_model"]
