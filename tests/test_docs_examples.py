"""The README's quickstart and docs/usage.md's trainer example run as printed, on a tiny image tree.

Each example is read from its page, its data pointed at the tree and its epochs cut to 1, and run in its own
process: an example that drifted from the package fails here, not in a user's hands. The trainer example runs
twice, as docs/usage.md says it is repeatable: both runs save the same weights.
"""

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import run_python, write_colour_tree

ROOT = Path(__file__).resolve().parents[1]
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def python_block(page, index):
    """The `index`-th ```python block of `page` (a path relative to the repository)."""
    return PYTHON_BLOCK.findall((ROOT / page).read_text())[index]


def on_tiny_data(code, data_dir):
    """`code` reading `data_dir` instead of CIFAR-10, for 1 epoch; each change must find its target."""
    for pattern, replacement in (
        (r"load_cifar10\(\)", f"load_cifar10({str(data_dir)!r})"),
        (r"epochs=\d+", "epochs=1"),
    ):
        code, count = re.subn(pattern, replacement, code)
        assert count, f"the example no longer has {pattern}: update this test with it"
    return code


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from keras_vit.data import CIFAR10_CLASSES

    # 150 training images: a held-out tenth leaves a full batch of 128.
    root = tmp_path_factory.mktemp("examples_data")
    return write_colour_tree(root, CIFAR10_CLASSES, counts=(("train", 15), ("test", 2)))


def run_example(code, folder):
    folder.mkdir()
    result = run_python(code, backend="tensorflow", timeout=600, cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def saved_weights(path):
    from keras_vit import load_model

    return load_model(path).get_weights()


def test_readme_quickstart_runs_and_saves_a_model_that_reloads(data_dir, tmp_path):
    run_example(on_tiny_data(python_block("README.md", 0), data_dir), tmp_path / "run")
    assert len(saved_weights(tmp_path / "run" / "vit.keras")) > 0


def test_the_trainer_example_runs_and_repeats_bit_for_bit(data_dir, tmp_path):
    code = on_tiny_data(python_block("docs/usage.md", 0), data_dir)
    first = run_example(code, tmp_path / "first")
    assert "test accuracy" in first.stdout
    run_example(code, tmp_path / "second")
    for a, b in zip(
        saved_weights(tmp_path / "first" / "vit.keras"),
        saved_weights(tmp_path / "second" / "vit.keras"),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
