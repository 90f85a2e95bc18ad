"""Tests for export/savedmodel.py: the SavedModel command and its signature."""

import numpy as np
import tensorflow as tf
from export_helpers import explain, run

pytest_plugins = ["export_fixtures"]


def test_savedmodel_cli(trained, data_tree, tmp_path):
    root, _ = data_tree
    out = tmp_path / "new" / "sm"  # a missing parent directory is created
    proc = run(
        ["export.savedmodel", trained["path"], out, "--data-dir", root],
        env={"KERAS_VIT_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, explain(proc)
    fn = tf.saved_model.load(str(out)).signatures["serving_default"]
    logits = fn(images=tf.constant(trained["x_test"][:4], tf.float32))["logits"].numpy()
    np.testing.assert_allclose(logits, trained["logits"][:4], atol=1e-4, rtol=0)
    assert (out / "labels.txt").exists() and (out / "model_card.json").exists()
