"""The command-line flags that change a preset's model shape, shared by `keras_vit.train` and the benchmarks.

add_model_flags(parser)   --drop-path, --num-heads, --pooling, --registers, --shifted-patches,
                          --locality-attention, --patch-dropout and --model-arg KEY=VALUE
flag_overrides(args)      the parsed flags as `build_vit` keyword arguments
without_model_args(...)   a recipe's defaults less the model flags a --model-arg overrides
"""

from __future__ import annotations

import argparse
import ast

from keras_vit.cli_utils import non_negative_int, positive_int, unit_fraction

# `SequencePooling.MODES`, here without importing Keras (the flags answer --help at once; a test keeps them equal).
POOLING_MODES = ("token", "gap", "seqpool")
# ViT arguments that --model-arg may not set: the data decide them, or --mixed-precision does.
_NOT_SETTABLE = ("image_size", "num_classes", "channels", "dtype")


def model_argument(text):
    """`KEY=VALUE` -> `(key, value)` for --model-arg; VALUE is read as a Python literal, else kept as a word."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not raw.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    from keras_vit.models.vit import VIT_ARGUMENTS  # Keras: only when a --model-arg is given

    settable = set(VIT_ARGUMENTS) - set(_NOT_SETTABLE)
    if key not in settable:
        raise argparse.ArgumentTypeError(
            f"unknown build_vit argument {key!r}; known: {', '.join(sorted(settable))}"
        )
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()
    return key, value


def add_model_flags(parser):
    """The flags that override a preset's model shape; `benchmarks/throughput.py` takes them too.

    `flag_overrides(args)` turns the parsed values into `build_vit` keyword arguments.
    """
    parser.add_argument(
        "--drop-path", type=float, default=None, help="override the preset's stochastic depth"
    )
    parser.add_argument(
        "--model-arg",
        dest="model_args",
        metavar="KEY=VALUE",
        type=model_argument,
        action="append",
        default=None,
        help="any other build_vit argument, over the preset's value (repeatable), "
        "e.g. --model-arg projection_dim=96 --model-arg depth=6; VALUE is a Python literal or a word",
    )
    parser.add_argument(
        "--num-heads",
        type=positive_int,
        default=None,
        help="override the preset's attention heads (the width must divide by it)",
    )
    parser.add_argument(
        "--pooling",
        default=None,
        choices=list(POOLING_MODES),
        help="override the preset's head: class token, mean of the patch tokens, or their "
        "learned weighted mean (seqpool; no class token: 64 tokens for 4x4 patches)",
    )
    parser.add_argument(
        "--registers",
        type=non_negative_int,
        default=None,
        help="learned register tokens after the class token (default: the preset's, 0); "
        "1 makes CIFAR's 65 tokens an even 66, which cuDNN's fused attention takes",
    )
    parser.add_argument(
        "--shifted-patches",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Shifted Patch Tokenization (Lee et al. 2021): each patch vector also holds its "
        "four half-patch diagonal shifts (default: the preset's, off)",
    )
    parser.add_argument(
        "--locality-attention",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Locality Self-Attention (Lee et al. 2021): no attention of a token to itself, learned "
        "softmax temperature (default: the preset's, off)",
    )
    parser.add_argument(
        "--patch-dropout",
        type=unit_fraction,
        default=None,
        metavar="RATE",
        help="leave out this share of each training image's patch tokens (PatchDropout, Liu et al. "
        "2022): cheaper steps and a regularizer; inference sees all tokens (default: the preset's, 0)",
    )


def model_overrides(
    drop_path=None,
    num_heads=None,
    pooling=None,
    num_registers=None,
    shifted_patches=None,
    locality_attention=None,
    patch_dropout=None,
):
    """`build_vit` overrides from the model flags (`add_model_flags`); None leaves the preset's value."""
    flags = {
        "drop_path": drop_path,
        "num_heads": num_heads,
        "pooling": pooling,
        "num_registers": num_registers,
        "shifted_patches": shifted_patches,
        "locality_attention": locality_attention,
        "patch_dropout": patch_dropout,
    }
    return {name: value for name, value in flags.items() if value is not None}


# The model flags' argparse destinations -> the `build_vit` arguments they set.
FLAG_ARGUMENTS = {
    "drop_path": "drop_path",
    "num_heads": "num_heads",
    "pooling": "pooling",
    "registers": "num_registers",
    "shifted_patches": "shifted_patches",
    "locality_attention": "locality_attention",
    "patch_dropout": "patch_dropout",
}


def flag_overrides(args):
    """`build_vit` overrides from --model-arg and the model flags (which give their own keys).

    Raises:
        ValueError: a key given both by its flag and by --model-arg.
    """
    named = model_overrides(**{argument: getattr(args, dest) for dest, argument in FLAG_ARGUMENTS.items()})
    free = dict(args.model_args or [])
    twice = sorted(set(free) & set(named))
    if twice:
        raise ValueError(f"{', '.join(twice)} given both as a flag and as --model-arg")
    return {**free, **named}


def without_model_args(defaults, model_args):
    """`defaults` (flag destinations -> values, e.g. a recipe's) less the model flags whose `build_vit` argument
    `model_args` (--model-arg's `(key, value)` pairs) sets: a --model-arg on the command line wins over them."""
    given = {key for key, _ in model_args or ()}
    return {dest: value for dest, value in defaults.items() if FLAG_ARGUMENTS.get(dest) not in given}
