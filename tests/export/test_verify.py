"""Tests for export/verify.py: every exported file runs in its own runtime, at any batch size."""

import numpy as np
import pytest
from export_helpers import FILES

from export.verify import open_export

pytest_plugins = ["export_fixtures"]


@pytest.mark.parametrize("name", FILES)
def test_dynamic_batch(export_dir, trained, name):
    model = open_export(str(export_dir / name))
    x, logits = trained["x_test"], trained["logits"]
    for n in (1, 7, 3):  # one runtime call per size; back down to check re-allocation
        out = model.predict(x[:n], batch_size=n)
        assert out.shape == (n, 10)
        if name in ("savedmodel", "model_fp32.tflite", "model.onnx"):
            np.testing.assert_allclose(out, logits[:n], atol=1e-4, rtol=0)
        else:
            np.testing.assert_array_equal(out.argmax(1), logits[:n].argmax(1))
