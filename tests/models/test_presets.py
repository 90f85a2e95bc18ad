"""keras_vit.models.presets: the named configurations and their sizes."""

import re

import pytest

from keras_vit import PRESETS, ViT, build_vit, get_preset
from keras_vit.models.vit import VIT_ARGUMENTS


def test_preset_sizes():
    assert {"vit_micro", "vit_tiny", "vit_cifar10"} <= set(PRESETS)
    cifar = build_vit("vit_cifar10")
    assert 2.5e6 <= cifar.count_params() <= 5e6
    assert build_vit("vit_tiny").count_params() < 1e6
    assert cifar.output_shape == (None, 10)


def test_preset_descriptions_give_their_size_right():
    """The size a description states is the model's: "tens of thousands of parameters" for `vit_micro`, and a
    count in millions ("2.7M parameters") to its first decimal."""
    micro = PRESETS["vit_micro"]["description"]
    assert (
        "tens of thousands of parameters" in micro
        and 10_000 <= build_vit("vit_micro").count_params() < 100_000
    )
    stated = {
        name: float(match.group(1))
        for name, preset in PRESETS.items()
        if (match := re.search(r"([0-9.]+)M parameters", preset["description"]))
    }
    assert "vit_cifar10" in stated
    for name, millions in stated.items():
        assert round(build_vit(name).count_params() / 1e6, 1) == millions, name


def test_presets_are_constructor_arguments_with_a_description():
    for name, preset in PRESETS.items():
        assert set(preset) == {"description", "config"} and preset["description"], name
        assert set(preset["config"]) <= set(VIT_ARGUMENTS), name
        assert isinstance(build_vit(name), ViT)


def test_get_preset():
    assert get_preset("vit_tiny") is not get_preset("vit_tiny")  # a copy
    assert get_preset("vit_tiny") == PRESETS["vit_tiny"]["config"]
    with pytest.raises(ValueError, match="known presets: vit_cifar10, vit_micro, vit_tiny"):
        get_preset("vit_huge")
