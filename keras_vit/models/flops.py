"""FLOPs per image of the models, for model FLOPs utilisation (MFU).

The counts are of the matrix products (2 x multiply-adds); norms, softmax,
activations, batch norm and pooling are small beside them and not counted.
"""

from __future__ import annotations

import keras

from keras_vit.layers import PatchDropout


def training_sequence_length(model):
    """Tokens per image in a training step of a ViT: fewer than at inference with `PatchDropout`.

    Args:
        model: a `ViT` (or a legacy functional one of the same layers).

    Returns:
        int, the tokens each transformer block sees in training.
    """
    encoder = model.get_layer("patch_encoder")
    for layer in model.layers:
        if isinstance(layer, PatchDropout):
            return layer.kept_tokens(encoder.num_tokens)
    return encoder.num_tokens


def training_flops_per_image(model):
    """Approximate FLOPs of one training step per image (3 x forward) of a ViT.

    Counts the patch projection, attention projections, attention scores and
    values, MLP and head. With `PatchDropout`, the blocks count the tokens
    that training keeps.

    Args:
        model: a `ViT` (or a legacy functional one of the same layers).

    Returns:
        int, FLOPs per training image.
    """
    encoder = model.get_layer("patch_encoder")
    blocks = [layer for layer in model.layers if layer.name.startswith("block_")]
    patch_dim = model.get_layer("patches").compute_output_shape(model.input_shape)[-1]
    tokens, dim = training_sequence_length(model), encoder.projection_dim
    forward = 2 * encoder.num_patches * patch_dim * dim
    for block in blocks:
        forward += 2 * tokens * (4 * dim * dim + 2 * dim * block.mlp_dim)  # qkv+out, MLP
        forward += 2 * 2 * tokens * tokens * dim  # scores and weighted values
    forward += 2 * dim * model.get_layer("head").units
    return 3 * forward


def forward_flops_per_image(model):
    """FLOPs of one image's forward pass through `model`'s convolutions and dense layers.

    For MFU when a teacher's forward pass shares the training step
    (`benchmarks/throughput.py --teacher-width`). Page's ResNet-9 (width 64)
    on 32x32 images: 0.76 GFLOP.

    Args:
        model: a functional `keras.Model`; nested models (an ensemble's
            members, `average_logits`) are counted too.

    Returns:
        int, FLOPs per image.
    """
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # an ensemble's members (average_logits)
            flops += forward_flops_per_image(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            kernel_h, kernel_w, channels_in, _ = layer.kernel.shape
            flops += 2 * height * width * kernel_h * kernel_w * channels_in * filters
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(flops)
