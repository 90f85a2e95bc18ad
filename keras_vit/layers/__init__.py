"""The Vision Transformer's building blocks as serializable Keras 3 layers, one concept a module.

Every layer uses `keras.ops` only, so the same code runs on the TensorFlow,
JAX and PyTorch backends and converts to TFLite/ONNX with builtin operators.
Each layer creates its sublayers with explicit names and the layer's dtype
policy and builds them in its `build` (so weight paths are stable across
versions), and its `get_config()` holds exactly its constructor arguments.
The classes are registered as `keras_vit>ClassName`, the names `.keras`
files refer to.

The four parts of a ViT map onto these layers:

1. `Patches` (`patches.py`): image -> sequence of flattened patches.
2. `PatchEncoder` (`patch_encoder.py`): linear projection, class token,
   position embedding.
3. `TransformerBlock` (`transformer_block.py`) x depth: pre-norm
   self-attention (`attention.py`) + MLP, with `DropPath` (`drop_path.py`).
4. `SequencePooling` (`pooling.py`) + a `Dense` head: the class token (or
   the mean of the patch tokens) -> logits.

`PatchDropout` (`patch_dropout.py`) leaves patch tokens out in training.
Two helpers shape the exported graphs: `LayerNorm` (`norm.py`, Keras' layer
norm without a NEG op, which int8 TFLite lacks) and `dense_over_tokens`
(`common.py`, token-wise Dense layers without run-time shape arithmetic).
"""

from keras_vit.layers.attention import HeadMajorAttention, LocalitySelfAttention
from keras_vit.layers.common import PACKAGE, dense_over_tokens, pair
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.norm import LayerNorm
from keras_vit.layers.patch_dropout import PatchDropout
from keras_vit.layers.patch_encoder import PatchEncoder, sincos_position_embedding
from keras_vit.layers.patches import Patches
from keras_vit.layers.pooling import SequencePooling
from keras_vit.layers.transformer_block import TransformerBlock

__all__ = [
    "PACKAGE",
    "DropPath",
    "HeadMajorAttention",
    "LayerNorm",
    "LocalitySelfAttention",
    "PatchDropout",
    "PatchEncoder",
    "Patches",
    "SequencePooling",
    "TransformerBlock",
    "dense_over_tokens",
    "pair",
    "sincos_position_embedding",
]
