"""keras_vit.model_flags: the flags that change a preset's model shape, read without Keras."""

import argparse

import pytest

from keras_vit.layers import SequencePooling
from keras_vit.model_flags import POOLING_MODES, add_model_flags, flag_overrides


def test_the_pooling_choices_are_the_layers_modes():
    assert POOLING_MODES == SequencePooling.MODES


def test_model_flags_become_build_vit_arguments():
    parser = argparse.ArgumentParser()
    add_model_flags(parser)
    args = parser.parse_args(["--registers", "1", "--pooling", "gap", "--model-arg", "depth=3"])
    assert flag_overrides(args) == {"num_registers": 1, "pooling": "gap", "depth": 3}
    with pytest.raises(SystemExit):
        parser.parse_args(["--model-arg", "image_size=64"])  # the data decide it
