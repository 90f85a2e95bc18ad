"""keras_vit._lazy: the packages' names import on first use, without Keras until a Keras-backed name is used."""

import pytest
from conftest import run_python


@pytest.mark.parametrize(
    ("package", "light", "heavy"),
    [
        ("keras_vit", "get_preset", "build_vit"),
        ("keras_vit.models", "PRESETS", "ViT"),
        ("keras_vit.convert", None, "from_timm"),
    ],
)
def test_a_packages_names_import_on_first_use(package, light, heavy):
    code = f"""
import importlib, sys
package = importlib.import_module({package!r})
assert {heavy!r} in dir(package) and {heavy!r} in package.__all__
if {light!r} is not None:
    getattr(package, {light!r})
assert "keras" not in sys.modules, "imported Keras before a Keras-backed name was used"
value = getattr(package, {heavy!r})
assert "keras" in sys.modules and vars(package)[{heavy!r}] is value  # bound: found directly from now on
assert dir(package).count({heavy!r}) == 1, "a name once used is listed twice"
try:
    package.no_such_name
except AttributeError as error:
    assert str(error) == f"module {{package.__name__!r}} has no attribute 'no_such_name'", error
else:
    raise AssertionError("no AttributeError")
"""
    result = run_python(code, backend="jax")
    assert result.returncode == 0, result.stderr[-2000:]
