"""Named training recipes: the `python -m keras_vit.train` settings that go together.

A recipe is a set of flag values (model preset and overrides, augmentation,
optimizer, schedule, precision, length) under one name:

    python -m keras_vit.train --recipe cifar10_gpu --data-dir DIR

Flags given on the command line win over the recipe's values, so
`--recipe cifar10_gpu --batch-size 512` is that recipe at batch 512. The
recipe's name and every value used go into `metrics.json` (`args`). Results
measured with each recipe are in the README, next to their machine.

`benchmarks/gpu_cifar10.sh` takes its defaults from `cifar10_gpu`
(`python -m keras_vit.recipes cifar10_gpu --shell`), so the script and the
recipe cannot drift apart.
"""

from __future__ import annotations

import argparse
import shlex
import sys

TRAINING_RECIPES = {
    "cifar10_cpu": {
        "description": "The README's main job: vit_tiny (8x8 patches), 6 epochs of crop+flip, AdamW 1e-3 with "
        "1 epoch of warmup and a cosine, batch 128, float32; minutes on a 2-core CPU.",
        "flags": dict(
            preset="vit_tiny", epochs=6, batch_size=128, optimizer="adamw", learning_rate=1e-3, warmup_epochs=1.0,
            weight_decay=0.05, label_smoothing=0.1, augment="basic", mixed_precision="none",
        ),
    },
    "cifar10_gpu": {
        "description": "The 6-minute GPU attempt (issue 4): vit_cifar10 with 12 heads of 16 and Lee et al. 2021's "
        "augmentation (lee2021), AdamW 3e-3, weight decay 0.05, label smoothing 0.1, batch 512, bfloat16, "
        "warmup + cosine over the epochs that fit in 340 s of fit (--time-budget; --time-limit 355 as the "
        "backstop); validation every 10 epochs. --epochs is only the first estimate (benchmarks/gpu_cifar10.sh "
        "sets it from a throughput measurement). H100 run 6: 284 epochs, 87.20% (README); at batch 256 and "
        "1.5e-3 (run 5) 174 epochs, 85.17%. With --teacher (a ResNet-9 trained first, its fit time taken from the "
        "340 s; gpu_cifar10.sh does both) run 9: a 60-epoch cutout teacher in 48 s (92.18%), then 231 epochs in 292 s, "
        "90.29%.",
        "flags": dict(
            preset="vit_cifar10", num_heads=12, pooling="token", augment="lee2021", batch_size=512,
            optimizer="adamw", learning_rate=3e-3, weight_decay=0.05, label_smoothing=0.1,
            mixed_precision="bfloat16", epochs=280, warmup_epochs=28.0, time_budget=340.0, time_limit=355.0,
            max_epochs=1000, validation_freq=10, checkpoint_every=1000,
        ),
    },
}

# The names of gpu_cifar10.sh's settings for the recipe's flags.
SHELL_NAMES = {"preset": "PRESET", "num_heads": "HEADS", "pooling": "POOLING", "augment": "AUGMENT",
               "batch_size": "BATCH", "learning_rate": "LR", "weight_decay": "WD", "time_budget": "TRAIN_BUDGET",
               "max_epochs": "MAX_EPOCHS", "shifted_patches": "SHIFTED_PATCHES",
               "locality_attention": "LOCALITY_ATTENTION", "patch_dropout": "PATCH_DROPOUT",
               "unmasked_finish": "UNMASKED_FINISH"}


def recipe_flags(name):
    """The flag values of recipe `name` (argparse destinations), as a new dict.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    if name not in TRAINING_RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; known recipes: {', '.join(sorted(TRAINING_RECIPES))}.")
    return dict(TRAINING_RECIPES[name]["flags"])


def shell_defaults(name):
    """`: "${NAME:=value}"` lines that give gpu_cifar10.sh's settings the recipe's values where unset."""
    flags = recipe_flags(name)
    lines = []
    for flag, variable in SHELL_NAMES.items():
        if flag in flags:
            value = flags[flag]
            if isinstance(value, bool):  # an on/off flag: 1 or 0 in the script
                value = int(value)
            value = int(value) if isinstance(value, float) and value.is_integer() else value
            lines.append(f': "${{{variable}:={shlex.quote(str(value))}}}"')
    return "\n".join(lines)


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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m keras_vit.recipes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", choices=sorted(TRAINING_RECIPES), help="print this recipe (default: all)")
    parser.add_argument("--shell", action="store_true", help="print the recipe as gpu_cifar10.sh's settings")
    args = parser.parse_args(argv)
    if args.shell:
        if not args.name:
            parser.error("--shell needs a recipe name")
        print(shell_defaults(args.name))
        return 0
    for name in [args.name] if args.name else sorted(TRAINING_RECIPES):
        flags = " ".join(as_command_line(recipe_flags(name)))
        print(f"{name}: {TRAINING_RECIPES[name]['description']}\n  {flags}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
