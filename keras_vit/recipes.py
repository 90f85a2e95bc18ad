"""Lists the named training recipes, or prints one as `benchmarks/gpu_cifar10.sh` settings.

python -m keras_vit.recipes                 every recipe and its flags
python -m keras_vit.recipes cifar10_gpu --shell
"""

from __future__ import annotations

import argparse
import sys

from keras_vit.cli_utils import exits_quietly_on_closed_stdout
from keras_vit.training.recipes import TRAINING_RECIPES, as_command_line, recipe_flags, shell_defaults


@exits_quietly_on_closed_stdout
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_vit.recipes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "name", nargs="?", choices=sorted(TRAINING_RECIPES), help="print this recipe (default: all)"
    )
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
