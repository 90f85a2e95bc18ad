"""The ViT options converted checkpoints use export to TFLite and ONNX, each file proven against Keras."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_vit.models import ViT
from tests.convert.helpers import TIMM_FAMILIES, convert_timm_fixture

TINY = dict(image_size=32, patch_size=8, projection_dim=32, depth=1, num_heads=2, mlp_dim=64, num_classes=10)
# A distilled DeiT (class + distillation token, two-token head) and a mean-pooled timm/keras-hub model with
# fc_norm (norm after the pooling) and transformers' epsilon.
VARIANTS = {
    "distilled": dict(distillation_token=True),
    "pooled_fc_norm": dict(pooling="gap", class_token=True, head_norm="pooled", layer_norm_epsilon=1e-12),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_converted_variants_export_with_their_proofs(variant, tiny_tree, tmp_path):
    model = ViT(**TINY, **VARIANTS[variant])
    rng = np.random.default_rng(0)  # weights far from zero: logits with a clear top-1
    model.set_weights([rng.normal(0, 0.1, w.shape).astype("float32") for w in model.get_weights()])
    model.save(tmp_path / "model.keras")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for tool, name in (("export.tflite", "model.tflite"), ("export.onnx", "model.onnx")):
        done = subprocess.run(
            [sys.executable, "-m", tool, str(tmp_path / "model.keras"), str(tmp_path / name)]
            + ["--data-dir", str(tiny_tree), "--eval-images", "40"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
        card = json.loads((tmp_path / f"{name}.json").read_text())
        proof = card.get("proof", card)
        assert proof["max_abs_diff"] <= 1e-4, proof
        assert proof["top1_agree"] == proof["images"] == 40, proof


@pytest.mark.parametrize("family", TIMM_FAMILIES)
def test_converted_timm_checkpoints_export_with_their_proofs(family, tmp_path):
    """Each timm family's converted checkpoint (timm's weights, `tests/convert/data/timm`) through the export
    commands: every file within 1e-4 of Keras on the proof images, the same top-1."""
    from export import onnx as export_onnx
    from export import tflite as export_tflite

    model = convert_timm_fixture(family)
    model.save(tmp_path / "model.keras")
    classes = model.output_shape[-1]
    (tmp_path / "labels.txt").write_text("".join(f"class_{i}\n" for i in range(classes)))
    for tool, name in ((export_tflite, "model.tflite"), (export_onnx, "model.onnx")):
        # No --data-dir: the proof runs on a fixed random batch (these models' 5 classes are no data set's).
        tool.main([str(tmp_path / "model.keras"), str(tmp_path / name)])
        card = json.loads((tmp_path / f"{name}.json").read_text())
        proof = card.get("proof", card)
        assert proof["max_abs_diff"] <= 1e-4, (name, proof)
        assert proof["top1_agree"] == proof["images"] > 0, (name, proof)
