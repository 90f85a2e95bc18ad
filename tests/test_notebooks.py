"""Runs every notebook in notebooks/ top to bottom in its smoke setting.

Each notebook is executed with nbclient in a fresh `python3` kernel, with
`KERAS_VIT_NOTEBOOK_SMOKE=1` (a tiny, fast setting chosen by the notebook's
parameters cell), in a temporary copy: the committed notebooks and their
outputs are never touched. A cell that raises fails the test and the message
shows the cell and its traceback.

The kernel inherits this process's environment, with the repository root put
first on `PYTHONPATH` (so `import keras_vit` and `import export` work with or
without `pip install -e .`), and `KERAS_VIT_RUNS_DIR` pointing at a temporary
folder for the notebooks' intermediate files.

Needs CIFAR-10 (the notebooks show real images): `$KERAS_VIT_DATA_DIR`, else
the shared copy beside the repository, else the standard places that
`keras_vit.data.load_cifar10` searches (no download). Skips otherwise.

    KERAS_VIT_DATA_DIR=/path/to/cifar10 python -m pytest tests/test_notebooks.py
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from nbclient.exceptions import CellExecutionError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO / "notebooks"
NOTEBOOKS = ["01_train.ipynb", "02_export_deploy.ipynb", "03_attention.ipynb"]
SHARED_CIFAR10 = REPO.parent / "shared" / "data" / "cifar10-jpeg"
KERNEL = "python3"
CELL_TIMEOUT_S = 600  # one cell
NOTEBOOK_TIMEOUT_S = 900  # a whole notebook, smoke setting


def _find_cifar10():
    """`(data_dir or None, why)`: where the notebooks' `load_cifar10()` will find CIFAR-10."""
    given = os.environ.get("KERAS_VIT_DATA_DIR")
    if given:
        return given, f"$KERAS_VIT_DATA_DIR={given}"
    if (SHARED_CIFAR10 / "train").is_dir():
        return str(SHARED_CIFAR10), f"the shared copy {SHARED_CIFAR10}"
    # The standard places (~/.keras/datasets/cifar-10-batches-py, ./data/cifar10, ...), checked in a
    # subprocess so this module does not import Keras, with downloads off.
    probe = (
        "from keras_vit.data import load_cifar10\nload_cifar10(limit=10, download=False, cache_dir=False)\n"
    )
    env = _kernel_env({})
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    if proc.returncode == 0:
        return None, "a standard CIFAR-10 location"
    return None, None


@pytest.fixture(scope="module")
def data_dir():
    found, where = _find_cifar10()
    if where is None:
        pytest.skip(
            "the notebooks need CIFAR-10 and none was found: set KERAS_VIT_DATA_DIR to a CIFAR-10 copy "
            "(DIR/{train,test}/<class>/*.jpg|png or cifar-10-batches-py), or put one in a standard place "
            "(~/.keras/datasets/cifar-10-batches-py)"
        )
    return found


def _kernel_env(extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def test_kernel_is_available():
    """nbclient starts `python3` with this interpreter (jupyter_client maps the spec's `python`)."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    assert KERNEL in specs, (
        f"no '{KERNEL}' Jupyter kernel; install one: {sys.executable} -m ipykernel install --user"
    )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_outputs(name):
    """The committed notebook is valid and holds the outputs of one full run, in order, without errors."""
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{name}: not run top to bottom in one go: {counts}"
    errors = [o for c in code for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{name} was committed with an error output: {errors[0].get('ename')}"
    assert any("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", [])), name


@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S + 60)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, data_dir, tmp_path):
    source = NOTEBOOKS_DIR / name
    work = tmp_path / "notebooks"
    work.mkdir()
    copy = work / name
    committed = source.read_bytes()
    shutil.copyfile(source, copy)  # execute a copy: the committed file is never written
    nb = nbformat.read(copy, as_version=4)

    extra = {"KERAS_VIT_NOTEBOOK_SMOKE": "1", "KERAS_VIT_RUNS_DIR": str(tmp_path / "runs")}
    if data_dir is not None:
        extra["KERAS_VIT_DATA_DIR"] = data_dir
    env = _kernel_env(extra)
    env.pop("MPLBACKEND", None)  # the kernel uses ipykernel's inline backend, as in Jupyter

    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT_S,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},  # cwd = notebooks/, as in Jupyter
    )
    start = time.perf_counter()
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        pytest.fail(f"{name}: a cell failed in the smoke run:\n{error}", pytrace=False)
    finally:
        nbformat.write(nb, tmp_path / f"executed_{name}")  # kept in tmp_path for a look after a failure
    elapsed = time.perf_counter() - start
    print(f"{name}: executed in {elapsed:.0f} s (smoke)")

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{name}: not every code cell ran"
    images = sum("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", []))
    assert images >= 1, f"{name}: expected its pictures, got {images} PNG outputs"
    assert source.read_bytes() == committed, f"{name}: the committed notebook was modified"
