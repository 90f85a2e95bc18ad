"""The models: the ViT classifier, its presets, the ConvNet teachers and FLOP counts.

vit.py       ViT (a functional keras.Model that owns its config), build_vit, vit_arguments, resize_vit,
             class_token_forward (the inference pass export uses)
presets.py   PRESETS, get_preset: named ViT configurations
teachers.py  ResNet-9 and airbench teachers, load_teacher, average_logits, with_dtype_policy
flops.py     FLOPs per image (training step of a ViT, forward pass of a teacher), for MFU

The names below are imported on first use (PEP 562): `keras_vit.models.presets` and the command lines'
flags import without Keras.
"""

from __future__ import annotations

from keras_vit._lazy import lazy_attributes

_PUBLIC = {
    "forward_flops_per_image": "flops",
    "training_flops_per_image": "flops",
    "training_sequence_length": "flops",
    "PRESETS": "presets",
    "get_preset": "presets",
    "TEACHER_ARCHS": "teachers",
    "average_logits": "teachers",
    "build_airbench": "teachers",
    "build_resnet9": "teachers",
    "build_teacher": "teachers",
    "load_teacher": "teachers",
    "whitening_kernel": "teachers",
    "with_dtype_policy": "teachers",
    "CIFAR10_MEAN": "vit",
    "CIFAR10_STD": "vit",
    "VIT_ARGUMENTS": "vit",
    "ViT": "vit",
    "build_vit": "vit",
    "class_token_forward": "vit",
    "resize_vit": "vit",
    "vit_arguments": "vit",
}


__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)

__all__ = sorted(_PUBLIC)
