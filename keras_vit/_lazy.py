"""Package names imported on first use (PEP 562): `keras_vit`, `keras_vit.models` and `keras_vit.convert` import
without Keras until one of their Keras-backed names is used."""

from __future__ import annotations

import importlib
import importlib.util
import sys


def lazy_attributes(package, public, submodules=False):
    """The module-level `__getattr__` and `__dir__` of a package whose public names import on first use.

    Args:
        package: the package's `__name__`.
        public: dict of each public name -> the module that defines it, relative to `package` (e.g. `"vit"`).
        submodules: whether a name outside `public` that names one of the package's modules imports that module
            (e.g. `keras_vit.pretrained`).

    Returns:
        `(__getattr__, __dir__)`, to bind at the package's top level.
    """

    def __getattr__(name):
        if name in public:
            value = getattr(importlib.import_module(f"{package}.{public[name]}"), name)
        elif submodules and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # found directly from now on
        return value

    def __dir__():
        return sorted({*vars(sys.modules[package]), *public})  # a name once used is in both

    return __getattr__, __dir__
