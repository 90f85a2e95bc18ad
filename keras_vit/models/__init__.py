"""The models: the ViT classifier, its presets, the ConvNet teachers and FLOP counts.

vit.py       ViT (a functional keras.Model that owns its config), build_vit, vit_arguments, resize_vit,
             class_token_forward (the inference pass export uses)
presets.py   PRESETS, get_preset: named ViT configurations
teachers.py  ResNet-9 and airbench teachers, load_teacher, average_logits, with_dtype_policy
flops.py     FLOPs per image (training step of a ViT, forward pass of a teacher), for MFU
"""

from keras_vit.models.flops import forward_flops_per_image, training_flops_per_image, training_sequence_length
from keras_vit.models.presets import PRESETS, get_preset
from keras_vit.models.teachers import (
    TEACHER_ARCHS,
    average_logits,
    build_airbench,
    build_resnet9,
    build_teacher,
    load_teacher,
    whitening_kernel,
    with_dtype_policy,
)
from keras_vit.models.vit import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    VIT_ARGUMENTS,
    ViT,
    build_vit,
    class_token_forward,
    resize_vit,
    vit_arguments,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "PRESETS",
    "TEACHER_ARCHS",
    "VIT_ARGUMENTS",
    "ViT",
    "average_logits",
    "build_airbench",
    "build_resnet9",
    "build_teacher",
    "build_vit",
    "class_token_forward",
    "forward_flops_per_image",
    "get_preset",
    "load_teacher",
    "resize_vit",
    "training_flops_per_image",
    "training_sequence_length",
    "vit_arguments",
    "whitening_kernel",
    "with_dtype_policy",
]
