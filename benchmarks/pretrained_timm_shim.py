"""A one-off way to run tests/convert/test_timm.py (timm model objects) where timm cannot be installed.

    python benchmarks/pretrained_timm_shim.py PEERS_VENV/lib/python3.11/site-packages /tmp/timmshim
    PYTHONPATH=/tmp/timmshim python -m pytest -n0 tests/convert/test_timm.py

The dev environment has a CPU torch, and the package index offers torchvision only as CUDA builds that do not
load beside it, so timm (which imports torchvision names at import time) is not installed there and
tests/convert/test_timm.py skips. This writes FOLDER with a link to another environment's pure-Python `timm`
package (SITE_PACKAGES/timm) and a stand-in `torchvision` whose every name is an inert placeholder: enough
for `import timm`, whose VisionTransformer and DeiT code use no torchvision. A check by hand, not a supported
setup: anything in timm that does call torchvision (its data transforms, frozen batch norms) fails.
"""

from __future__ import annotations

import argparse
from pathlib import Path

STAND_IN = '''"""A stand-in torchvision (benchmarks/pretrained_timm_shim.py): every name an inert placeholder."""
import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "0+stand-in"


class _Names(type):
    def __getattr__(cls, name):  # e.g. InterpolationMode.NEAREST, used as a dict key at import time
        if name.startswith("__"):
            raise AttributeError(name)
        return name


class _Placeholder(metaclass=_Names):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("the stand-in torchvision of benchmarks/pretrained_timm_shim.py was called")


class _Module(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (_Placeholder,), {})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Module(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder())


def __getattr__(name):
    return type(name, (_Placeholder,), {})
'''


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("site_packages", help="the site-packages folder of an environment with timm")
    parser.add_argument("folder", help="the folder to write (then put it on PYTHONPATH)")
    args = parser.parse_args(argv)
    timm = Path(args.site_packages).resolve() / "timm"
    if not (timm / "__init__.py").exists():
        raise SystemExit(f"no timm package in {args.site_packages}")
    folder = Path(args.folder)
    (folder / "torchvision").mkdir(parents=True, exist_ok=True)
    (folder / "torchvision" / "__init__.py").write_text(STAND_IN)
    link = folder / "timm"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(timm, target_is_directory=True)
    print(f"PYTHONPATH={folder} python -m pytest -n0 tests/convert/test_timm.py")


if __name__ == "__main__":
    main()
