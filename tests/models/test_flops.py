"""keras_vit.models.flops: training FLOPs of a ViT, forward FLOPs of a teacher, training sequence length."""

from keras_vit import build_vit
from keras_vit.models.flops import forward_flops_per_image, training_flops_per_image, training_sequence_length
from keras_vit.models.teachers import build_resnet9


def test_flops_count():
    model = build_vit("vit_micro")  # 16 patches of 192 values, width 32, 2 blocks, MLP 64, 17 tokens
    forward = 2 * 16 * 192 * 32 + 2 * (2 * 17 * (4 * 32 * 32 + 2 * 32 * 64) + 4 * 17 * 17 * 32) + 2 * 32 * 10
    assert training_flops_per_image(model) == 3 * forward
    # PatchDropout 0.5: the blocks see the class token and 8 patches in training.
    forward = 2 * 16 * 192 * 32 + 2 * (2 * 9 * (4 * 32 * 32 + 2 * 32 * 64) + 4 * 9 * 9 * 32) + 2 * 32 * 10
    assert training_flops_per_image(build_vit("vit_micro", patch_dropout=0.5)) == 3 * forward


def test_training_sequence_length():
    assert training_sequence_length(build_vit("vit_micro")) == 17  # 16 patches + the class token
    # PatchDropout keeps the class token, the register and half of the 16 patches.
    assert training_sequence_length(build_vit("vit_micro", patch_dropout=0.5, num_registers=1)) == 2 + 8
    assert training_sequence_length(build_vit("vit_micro", pooling="gap")) == 16


def test_forward_flops_count_every_convolution_and_the_head():
    w = 64
    convolutions = (
        32 * 32 * 3 * w
        + 32 * 32 * w * 2 * w
        + 2 * 16 * 16 * (2 * w) ** 2
        + 16 * 16 * 2 * w * 4 * w
        + 8 * 8 * 4 * w * 8 * w
        + 2 * 4 * 4 * (8 * w) ** 2
    )
    expected = 2 * 9 * convolutions + 2 * 8 * w * 10
    assert forward_flops_per_image(build_resnet9(width=w)) == expected  # 0.76 GFLOP
