"""Named training recipes (the `python -m keras_vit.train` settings that go together) and the
augmentation recipe and precision a run's flags select.

A recipe is a set of flag values (model preset and overrides, augmentation,
optimizer, schedule, precision, length) under one name:

    python -m keras_vit.train --recipe cifar10_gpu --data-dir DIR

Flags given on the command line win over the recipe's values, so
`--recipe cifar10_gpu --batch-size 512` is that recipe at batch 512. The
recipe's name and every value used go into `metrics.json` (`args`). Results
measured with each recipe are in the project's results page, next to their machine.

`python -m keras_vit.recipes` lists them.
"""

from __future__ import annotations

# The share of the training images `--validation-split` holds out when it is not given and the data has no val/.
DEFAULT_VALIDATION_SPLIT = 0.1

# Named augmentation recipes; `keras_vit.train --augment NAME` picks one.
# `mix_prob`: share of batches that MixUp/CutMix mixes; `repeats`: repeated
# augmentation (each image appears `repeats` times per batch, augmented
# differently; Hoffer et al. 2020, as used by DeiT); `erasing_max_area`: the
# largest share of the image a random-erasing box covers.
_NO_AUGMENTATION = dict(
    crop_padding=0,
    flip=False,
    randaug_ops=0,
    randaug_magnitude=0.0,
    erasing=0.0,
    erasing_max_area=0.25,
    mixup_alpha=0.0,
    cutmix_alpha=0.0,
    mix_prob=0.0,
    repeats=1,
)
_CROP_FLIP = dict(_NO_AUGMENTATION, crop_padding=4, flip=True)
AUGMENT_RECIPES = {
    "none": dict(_NO_AUGMENTATION),
    # Short runs: strong augmentation only pays off after many epochs.
    "basic": dict(_CROP_FLIP),
    # DeiT-style: every batch mixed.
    "strong": dict(
        _CROP_FLIP,
        randaug_ops=2,
        randaug_magnitude=9.0,
        erasing=0.25,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        mix_prob=1.0,
    ),
    # Cutout for the convolutional teacher (DeVries & Taylor 2017; Page's ResNet-9 used 8x8 squares):
    # crop + flip, and every image loses a rectangle of 2% to 12.5% of its area (8x8 is 6.25%).
    "cutout": dict(_CROP_FLIP, erasing=1.0, erasing_max_area=0.125),
    # Lee et al. 2021's CIFAR recipe for ViTs on small data sets, with their AutoAugment
    # replaced by RandAugment (keras_vit.training.augment): half the batches mixed (MixUp 1.0 or CutMix 1.0),
    # erasing 0.25 of up to 40% of the image. Their "--ra 3" is not in-batch repetition:
    # their sampler is called with repetitions=1 and len_factor=3, i.e. epochs three times
    # the data set (100 of them = 300 passes), so repeats stays 1 here. Also unlike their code: the crop pads
    # by reflection (theirs with zeros), erased boxes hold noise (theirs the data's mean), and RandAugment runs
    # before the crop and flip (their AutoAugment after).
    "lee2021": dict(
        _CROP_FLIP,
        randaug_ops=2,
        randaug_magnitude=9.0,
        erasing=0.25,
        erasing_max_area=0.4,
        mixup_alpha=1.0,
        cutmix_alpha=1.0,
        mix_prob=0.5,
    ),
}

# The SGD settings of each teacher (`python -m keras_vit.teacher --arch`) at batch 512.
TEACHER_RECIPES = {
    # Page's peak rate 0.4 and L2 5e-4 (decoupled: 5e-3 per unit of rate under momentum 0.9).
    "resnet9": dict(learning_rate=0.4, weight_decay=5e-3),
    # airbench94's step sizes (its lr 11.5 and weight decay 0.0153 per 1024 images, summed loss,
    # Nesterov 0.85) for a mean loss, batch 512 and momentum 0.9: a rate of 0.5 moves as far per image,
    # and a decoupled decay of 0.0133 per unit of rate shrinks the weights as much per step as its
    # coupled one does.
    "airbench": dict(learning_rate=0.5, weight_decay=0.0133),
}

TRAINING_RECIPES = {
    "cifar10_cpu": {
        "description": "The README's main job: vit_tiny (8x8 patches), 6 epochs of crop+flip, AdamW 1e-3 with "
        "1 epoch of warmup and a cosine, batch 128, float32; minutes on a 2-core CPU.",
        "flags": dict(
            preset="vit_tiny",
            epochs=6,
            batch_size=128,
            optimizer="adamw",
            learning_rate=1e-3,
            warmup_epochs=1.0,
            weight_decay=0.05,
            label_smoothing=0.1,
            augment="basic",
            mixed_precision="none",
            validation_split=0.0,
        ),
    },
    "cifar10_gpu": {
        "description": "The 6-minute GPU run: vit_cifar10 with 12 heads of 16 and Lee et al. 2021's "
        "augmentation (lee2021), AdamW 3e-3, weight decay 0.05, label smoothing 0.1, batch 512, bfloat16, "
        "warmup + cosine over the epochs that fit in 340 s of fit (--time-budget; --time-limit 355 as the "
        "backstop); no validation split (the final run, on every training image; with --validation-split, "
        "validation every 10 epochs). --epochs is only the first estimate: --time-budget re-plans the "
        "schedule from the measured epochs. Add --teacher PATH to distil a trained teacher.",
        "flags": dict(
            preset="vit_cifar10",
            num_heads=12,
            pooling="token",
            augment="lee2021",
            batch_size=512,
            optimizer="adamw",
            learning_rate=3e-3,
            weight_decay=0.05,
            label_smoothing=0.1,
            mixed_precision="bfloat16",
            epochs=280,
            warmup_epochs=28.0,
            time_budget=340.0,
            time_limit=355.0,
            max_epochs=1000,
            validation_freq=10,
            validation_split=0.0,
            checkpoint_every=1000,
        ),
    },
}


def recipe_flags(name):
    """The flag values of recipe `name` (argparse destinations), as a new dict.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    if name not in TRAINING_RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; known recipes: {', '.join(sorted(TRAINING_RECIPES))}.")
    return dict(TRAINING_RECIPES[name]["flags"])


def as_command_line(flags):
    """The flags as `python -m keras_vit.train` arguments (on/off flags as `--name` / `--no-name`)."""
    words = []
    for flag, value in flags.items():
        name = flag.replace("_", "-")
        if isinstance(value, bool):
            words.append(f"--{name}" if value else f"--no-{name}")
        else:
            words += [f"--{name}", str(value)]
    return words


# --mixed-precision choices -> Keras dtype policies.
MIXED_PRECISION = {
    "none": "float32",
    "float32": "float32",
    "bfloat16": "mixed_bfloat16",
    "mixed_bfloat16": "mixed_bfloat16",
    "float16": "mixed_float16",
    "mixed_float16": "mixed_float16",
}


def training_recipe(augment, repeats=None, mix_prob=None):
    """The `AUGMENT_RECIPES[augment]` recipe, with --repeats and --mix-prob applied (None: the recipe's).

    Args:
        augment: a key of `AUGMENT_RECIPES`.
        repeats: optional int, repeated augmentation (images per batch row).
        mix_prob: optional float in `[0, 1]`, the share of batches MixUp/CutMix mixes.

    Returns:
        The recipe dict `make_trainer` takes.

    Raises:
        ValueError: for a `mix_prob` outside `[0, 1]`, or above 0 with a
            recipe that has no MixUp/CutMix to apply.
    """
    recipe = dict(AUGMENT_RECIPES[augment])
    if repeats is not None:
        recipe["repeats"] = repeats
    if mix_prob is not None:
        if not 0.0 <= mix_prob <= 1.0:
            raise ValueError(f"--mix-prob must be in [0, 1], got {mix_prob}")
        if mix_prob > 0 and recipe["mixup_alpha"] <= 0 and recipe["cutmix_alpha"] <= 0:
            raise ValueError(
                f"--mix-prob {mix_prob}: --augment {augment} has no MixUp/CutMix (lee2021 and strong have)"
            )
        recipe["mix_prob"] = mix_prob
    return recipe
