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
the functions only, and the converters on first use (PEP 562): `python -m
keras_vit.convert --help` imports no Keras.
"""

from __future__ import annotations

from keras_vit._lazy import lazy_attributes

_PUBLIC = {
    "download_from_hub": "transformers",
    "from_keras_hub": "keras_hub",
    "from_timm": "timm",
    "from_transformers": "transformers",
}


__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)

__all__ = sorted(_PUBLIC)
