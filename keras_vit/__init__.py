"""keras-vit: the Vision Transformer as Keras 3 layers, from `model.fit` to the edge."""

from keras_vit.layers import (DropPath, LayerNorm, LocalitySelfAttention, PatchDropout, Patches, PatchEncoder,
                              SequencePooling, TransformerBlock)
from keras_vit.model import build_vit, resize_vit, vit_arguments
from keras_vit.presets import PRESETS, get_preset
from keras_vit.pretrained import load_pretrained

__version__ = "0.1.0"


def load_model(path, compile=False):
    """Loads a `.keras` ViT file in safe mode (no `Lambda`, no pickled code).

    Args:
        path: path of a `.keras` file saved by `keras_vit`.
        compile: whether to restore the training configuration.

    Returns:
        The `keras.Model`.
    """
    import keras

    return keras.saving.load_model(path, compile=compile, safe_mode=True)


__all__ = [
    "DropPath", "LayerNorm", "LocalitySelfAttention", "PatchDropout", "Patches", "PatchEncoder", "SequencePooling", "TransformerBlock",
    "build_vit", "resize_vit", "vit_arguments", "PRESETS", "get_preset", "load_model", "load_pretrained",
]
