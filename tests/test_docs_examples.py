"""The README's quickstart, docs/usage.md's trainer example and docs/distributed.md's model-parallel example run
as printed.

Each example is read from its page, its data pointed at a tiny image tree and its epochs cut to 1, and run in its
own process: an example that drifted from the package fails here, not in a user's hands. The trainer example runs
twice, as docs/usage.md says it is repeatable: both runs save the same weights. The model-parallel example runs
unchanged on JAX with 8 virtual CPU devices, the count its 4x2 mesh needs.
"""

import importlib.util
import json
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


# Appended to docs/distributed.md's model-parallel example: where a query kernel and an MLP kernel were placed,
# and whether the mesh refuses vit_cifar10's own 3 heads with the package's message.
SHARDING_REPORT = """
import json
placed = {v.path: str(v.value.sharding.spec) for v in model.weights}
try:
    distribution("model", (4, 2), model="vit_cifar10")
    refused = ""
except ValueError as error:
    refused = str(error)
print(json.dumps({"query": placed["block_0/attention/query/kernel"], "mlp": placed["block_0/mlp_hidden/kernel"],
                  "devices": len(keras.distribution.list_devices()), "refused": refused}))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="the JAX backend is not installed")
def test_the_model_parallel_example_runs_and_shards_the_weights(tmp_path):
    code = python_block("docs/distributed.md", 0)
    assert 'distribution("model"' in code, "the page's first Python block is no longer the model-parallel one"
    flags = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    result = run_python(code + SHARDING_REPORT, backend="jax", timeout=300, cwd=tmp_path, env=flags)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 8, report
    assert "model" in report["query"] and "model" in report["mlp"], report
    assert report["refused"] == "the model axis (2 devices) must divide num_heads (3)", report


def test_the_other_distributed_python_blocks_say_they_are_sketches_and_import():
    """The blocks not run above need a whole job of processes: each says it is a sketch, and its imports exist."""
    blocks = PYTHON_BLOCK.findall((ROOT / "docs/distributed.md").read_text())[1:]
    assert blocks
    for block in blocks:
        assert block.startswith("# A sketch"), block[:200]
        imports = "\n".join(line for line in block.splitlines() if line.startswith(("import ", "from ")))
        exec(compile(imports, "docs/distributed.md", "exec"), {})
