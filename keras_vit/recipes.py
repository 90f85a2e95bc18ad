"""Lists the named training recipes: what each is for and its `python -m keras_vit.train` flags.

python -m keras_vit.recipes                 every recipe
python -m keras_vit.recipes cifar10_gpu     one
"""

from __future__ import annotations

import argparse
import sys

from keras_vit.cli_utils import exits_quietly_on_closed_stdout
from keras_vit.training.recipes import TRAINING_RECIPES, as_command_line, recipe_flags


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
    args = parser.parse_args(argv)
    for name in [args.name] if args.name else sorted(TRAINING_RECIPES):
        flags = " ".join(as_command_line(recipe_flags(name)))
        print(f"{name}: {TRAINING_RECIPES[name]['description']}\n  {flags}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
