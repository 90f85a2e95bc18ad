"""Named ViT configurations, in one table: configurations only.

Each entry gives the `ViT` constructor arguments (`build_vit(name)`) and a
one-line description. What the presets measure (accuracy, throughput, the
commands that produced them) is recorded in `docs/`, not here.
"""

from __future__ import annotations

PRESETS = {
    "vit_micro": {
        "description": "The smallest ViT (tens of thousands of parameters): 8x8 patches, width 32, 2 blocks; "
        "for unit tests and smoke runs.",
        "config": dict(
            image_size=32,
            patch_size=8,
            num_classes=10,
            projection_dim=32,
            depth=2,
            num_heads=2,
            mlp_dim=64,
            pooling="token",
        ),
    },
    "vit_tiny": {
        "description": "CPU-friendly ViT: 8x8 patches (16 tokens + CLS), width 128, 6 blocks; "
        "small enough to train on a laptop-class CPU.",
        "config": dict(
            image_size=32,
            patch_size=8,
            num_classes=10,
            projection_dim=128,
            depth=6,
            num_heads=4,
            mlp_dim=256,
            pooling="token",
            dropout=0.0,
            drop_path=0.0,
        ),
    },
    "vit_cifar10": {
        "description": "The CIFAR-10 ViT (2.7M parameters): 4x4 patches (64 tokens + CLS), width 192, "
        "9 blocks, MLP 384 as in Lee et al. 2021's ViT baseline, but 3 heads of 64 where they use 12 "
        "of 16 (`num_heads=12`, `--num-heads 12`: same parameters, more attention maps).",
        "config": dict(
            image_size=32,
            patch_size=4,
            num_classes=10,
            projection_dim=192,
            depth=9,
            num_heads=3,
            mlp_dim=384,
            pooling="token",
            dropout=0.0,
            drop_path=0.1,
        ),
    },
}


def get_preset(name):
    """Returns a copy of the `build_vit` arguments of preset `name`.

    Args:
        name: a key of `PRESETS`.

    Returns:
        dict of `ViT` constructor arguments.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}.")
    return dict(PRESETS[name]["config"])
