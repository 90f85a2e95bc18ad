"""Prints a training recipe as the settings of the GPU scripts, for them to `eval`.

    python3 benchmarks/recipe_settings.py cifar10_gpu

Each line is `: "${NAME:=value}"`: the recipe's value where the environment does not set NAME,
so `gpu_cifar10.sh` and `throughput_sweep.sh` take their defaults from the recipe and cannot
drift from it. Imports no Keras (the scripts call it before every run).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_vit.training.recipes import TRAINING_RECIPES, recipe_flags  # noqa: E402

# The scripts' setting names for the recipe's flags.
SHELL_NAMES = {
    "preset": "PRESET",
    "num_heads": "HEADS",
    "pooling": "POOLING",
    "augment": "AUGMENT",
    "batch_size": "BATCH",
    "learning_rate": "LR",
    "weight_decay": "WD",
    "time_budget": "TRAIN_BUDGET",
    "max_epochs": "MAX_EPOCHS",
    "shifted_patches": "SHIFTED_PATCHES",
    "locality_attention": "LOCALITY_ATTENTION",
    "patch_dropout": "PATCH_DROPOUT",
    "unmasked_finish": "UNMASKED_FINISH",
}


def shell_defaults(name):
    """`: "${NAME:=value}"` lines that give the scripts' settings recipe `name`'s values where unset."""
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


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", choices=sorted(TRAINING_RECIPES), help="the recipe")
    print(shell_defaults(parser.parse_args(argv).name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
