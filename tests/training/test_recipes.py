"""Named training recipes: valid flags, command-line overrides, the listing command."""

import subprocess
import sys

import pytest
from conftest import heavy_imports_of

from keras_vit.train import build_parser, parse_args
from keras_vit.training.recipes import (
    TRAINING_RECIPES,
    as_command_line,
    recipe_flags,
    training_recipe,
)


def as_argv(flags):
    return as_command_line(flags)


def test_on_off_flags_are_typed_as_flags():
    assert as_command_line({"shifted_patches": True, "batch_size": 64}) == [
        "--shifted-patches",
        "--batch-size",
        "64",
    ]
    assert parse_args(as_command_line({"shifted_patches": False})).shifted_patches is False
    assert parse_args([]).shifted_patches is None  # the preset's


@pytest.mark.parametrize("name", sorted(TRAINING_RECIPES))
def test_recipe_is_the_same_as_its_flags_typed_out(name):
    # Typed out, every value goes through argparse's types and choices; --recipe must give the same.
    flags = recipe_flags(name)
    spelled = vars(parse_args(as_argv(flags)))
    recipe = vars(parse_args(["--recipe", name]))
    assert set(flags) <= set(recipe), set(flags) - set(recipe)
    for flag, value in flags.items():
        assert recipe[flag] == spelled[flag] == value, flag
    assert recipe["recipe"] == name and TRAINING_RECIPES[name]["description"]


def test_command_line_flags_win_over_the_recipe():
    args = parse_args(["--recipe", "cifar10_gpu", "--batch-size", "256", "--num-heads", "3"])
    assert args.batch_size == 256 and args.num_heads == 3
    assert args.augment == "lee2021" and args.learning_rate == 3e-3 and args.time_budget == 340


def test_a_model_arg_on_the_command_line_wins_over_the_recipes_model_flag():
    """--model-arg num_heads=4 over cifar10_gpu's num_heads: the typed value, not 'given twice'."""
    from keras_vit.model_flags import flag_overrides

    args = parse_args(["--recipe", "cifar10_gpu", "--model-arg", "num_heads=4", "--model-arg", "pooling=gap"])
    assert args.num_heads is None and args.pooling is None and args.augment == "lee2021"
    assert flag_overrides(args) == {"num_heads": 4, "pooling": "gap"}
    typed_twice = parse_args(["--recipe", "cifar10_gpu", "--num-heads", "4", "--model-arg", "num_heads=4"])
    with pytest.raises(ValueError, match="num_heads given both as a flag and as --model-arg"):
        flag_overrides(typed_twice)  # both typed: still a clash


def test_cpu_recipe_is_the_readme_main_job():
    # The main job is `--preset vit_tiny --epochs 6 --validation-split 0` (a final run on all the training
    # images) with the parser's defaults.
    defaults = vars(build_parser().parse_args([]))
    main_job = {
        **defaults,
        "preset": "vit_tiny",
        "epochs": 6,
        "validation_split": 0.0,
        "recipe": "cifar10_cpu",
    }
    recipe = vars(parse_args(["--recipe", "cifar10_cpu"]))
    assert recipe == main_job


def test_unknown_recipe():
    with pytest.raises(SystemExit):
        parse_args(["--recipe", "nope"])
    with pytest.raises(ValueError, match="cifar10_gpu"):
        recipe_flags("nope")


def test_cli_lists_recipes_without_loading_keras():
    status, out, heavy = heavy_imports_of("keras_vit.recipes")
    assert status == 0 and "cifar10_gpu:" in out and "--time-budget 340" in out
    assert heavy == []  # a listing: no seconds of Keras import
    bad = subprocess.run(
        [sys.executable, "-m", "keras_vit.recipes", "nope"], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_cli_ends_quietly_when_its_reader_stops_early():
    """`python -m keras_vit.recipes | head -1`: the reader gone, the command exits 141 with no traceback."""
    listing = subprocess.Popen(
        [sys.executable, "-m", "keras_vit.recipes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    listing.stdout.close()  # before the command writes: its first write finds no reader
    assert listing.wait(timeout=300) == 141
    assert listing.stderr.read() == b""


def test_mix_prob_overrides_the_recipes_share():
    from keras_vit import build_vit
    from keras_vit.training.trainer import make_trainer

    assert training_recipe("lee2021")["mix_prob"] == 0.5
    recipe = training_recipe("lee2021", mix_prob=1.0)
    assert recipe["mix_prob"] == 1.0 and recipe["mixup_alpha"] == 1.0  # the rest of the recipe is kept
    assert make_trainer(build_vit("vit_micro"), recipe).mixing.mix_prob == 1.0
    assert make_trainer(build_vit("vit_micro"), training_recipe("lee2021", mix_prob=0.0)).mixing is None
    assert training_recipe("basic", mix_prob=0.0)["mix_prob"] == 0.0  # nothing mixed, as asked
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        training_recipe("strong", mix_prob=-0.1)
