"""Convert a pretrained ViT into a keras_vit `.keras` file, checked against its source, with its class names.

    python -m keras_vit.convert hf:google/vit-base-patch16-224 vit_b16.keras
    python -m keras_vit.convert timm:deit_small_patch16_224.fb_in1k deit_s.keras
    python -m keras_vit.convert keras_hub:vit_base_patch16_224_imagenet vit_b16.keras
    python -m keras_vit.convert vit-b16/ vit_b16.keras      # a Hugging Face folder: no PyTorch needed
    python -m export vit_b16.keras runs/vit_b16/export       # then every deployable format, with its proofs

SOURCE is timm:NAME, hf:NAME (downloaded), keras_hub:PRESET (a name or a local preset folder), a Hugging Face
`.safetensors` file or a folder holding one with its config.json. The model written takes 0..255 pixels and
normalizes inside with the source's statistics (or --mean and --std). Where the source runs here (timm and
keras-hub; a Hugging Face folder with PyTorch and transformers installed), both run on random images first and
a logit difference above --tolerance stops the conversion with nothing written; the file is then reloaded in
safe mode and must give the same logits. Its class names (a Hugging Face config's id2label, timm's ImageNet
classes, or --labels) go to its twin OUTPUT-stem.labels.txt, which keras_vit.predict, keras_vit.evaluate and
python -m export read.
"""

from __future__ import annotations

import argparse
import sys

from keras_vit.cli_utils import (
    console_output,
    interrupted_in_one_line,
    positive_int,
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m keras_vit.convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help="the checkpoint (SOURCE above)")
    parser.add_argument("output", help="the .keras file to write")
    parser.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="run the model at NxN, the position embedding resampled (default: the source's size)",
    )
    parser.add_argument(
        "--mean",
        type=float,
        nargs=3,
        default=None,
        metavar=("R", "G", "B"),
        help="input mean per channel in 0..1 units, with --std (default: the source's)",
    )
    parser.add_argument(
        "--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="input std, with --mean"
    )
    parser.add_argument(
        "--num-classes",
        type=positive_int,
        default=None,
        metavar="N",
        help="for a source without a classifier (a backbone): a new, zero head of N classes",
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="FILE",
        help="class names, one per line, for the twin labels file (default: the source's, where it has them)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="the largest |logit difference| from the source allowed (default: %(default)s)",
    )
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.output.endswith(".keras"):
        parser.error(f"the output must be a .keras file, not {args.output}")
    if (args.mean is None) != (args.std is None):
        parser.error("--mean and --std go together")
    if not args.tolerance > 0:
        parser.error("--tolerance must be above 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    from keras_vit.convert import command  # Keras and the converters: only once the flags are good

    return command.main(args)


if __name__ == "__main__":
    sys.exit(interrupted_in_one_line(console_output(main))())
