"""keras_vit.pretrained: the shipped model, its labels and metrics."""

import numpy as np
import pytest
from conftest import cifar10_dir

import keras_vit.pretrained
from keras_vit import build_vit, data, load_pretrained, vit_arguments
from keras_vit.pretrained import labels_path, metrics, model_path


def test_pretrained_model_loads():
    assert model_path().stat().st_size < 20 * 2**20
    model = load_pretrained()
    assert model.output_shape == (None, 10)
    assert labels_path().read_text().split()[0] == "airplane"
    assert metrics()["test_accuracy"] > 0.5


def test_the_docstring_names_each_argument_the_shipped_model_does_not_take_from_its_preset():
    """The module docstring calls the model the `vit_cifar10` preset's shape "but for" some arguments: it names
    each one that differs from the preset (and the constructor's defaults), with its value."""
    expected = vit_arguments(build_vit("vit_cifar10"))
    shipped = vit_arguments(load_pretrained())
    differing = {key: value for key, value in shipped.items() if value != expected[key]}
    assert differing == {"num_heads": 12, "num_registers": 1}  # as its metrics' arguments say
    assert (metrics()["args"]["num_heads"], metrics()["args"]["registers"]) == (12, 1)
    words = " ".join(keras_vit.pretrained.__doc__.split())
    for key, value in differing.items():
        assert f"`{key}={value}`" in words, key


@pytest.mark.slow
@pytest.mark.skipif(cifar10_dir() is None, reason="no real CIFAR-10 copy")
def test_pretrained_model_scores_what_its_metrics_say():
    """The shipped file, scored here on all 10,000 real test images, gives the accuracy its metrics.json
    records (measured under JAX at the end of its run; the CPU rounds differently, by a few images): a stale
    metrics file or a swapped or damaged model fails."""
    splits = data.load_cifar10(cifar10_dir(), splits="test", download=False)
    assert list(splits.class_names) == labels_path().read_text().split()
    logits = load_pretrained().predict(splits.x_test, batch_size=500, verbose=0)
    accuracy = float(np.mean(logits.argmax(-1) == splits.y_test))
    assert len(splits.y_test) == metrics()["test_images"] == 10_000
    assert accuracy == pytest.approx(metrics()["test_accuracy"], abs=0.0015)


def test_pretrained_paths_check_the_name():
    assert model_path().name == "vit_cifar10.keras" and labels_path().name == "vit_cifar10.labels.txt"
    with pytest.raises(ValueError, match="available: vit_cifar10"):
        model_path("vit_huge")
