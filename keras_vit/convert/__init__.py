"""Pretrained ViTs in: timm, Hugging Face `transformers` and keras-hub checkpoints as keras_vit `ViT`s.

timm.py          from_timm: a timm VisionTransformer (ViT, DeiT, distilled DeiT), or a state dict with its
                 architecture (no timm or PyTorch needed)
transformers.py  from_transformers: a `transformers` ViT, or its safetensors file (no PyTorch needed);
                 download_from_hub: a Hub ViT's safetensors, config and image-processor config
keras_hub.py     from_keras_hub: a keras-hub ViTBackbone or ViTImageClassifier
_mapping.py      the shared part: the architecture and timm-named weights -> a keras_vit ViT

Each converter returns a `ViT` that takes 0..255 pixels and normalizes them
inside with the source's mean and std (or the given ones, in 0..1 units).
The source libraries (`pip install keras-vit[convert]`) are imported inside
the functions only.
"""

from keras_vit.convert.keras_hub import from_keras_hub
from keras_vit.convert.timm import from_timm
from keras_vit.convert.transformers import download_from_hub, from_transformers

__all__ = ["download_from_hub", "from_keras_hub", "from_timm", "from_transformers"]
