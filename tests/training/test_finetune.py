"""Tests for keras_vit.training.finetune: the checkpoint, layer-wise decay, frozen blocks."""

import keras
import numpy as np
import pytest

from keras_vit.models import ViT, build_vit, vit_arguments
from keras_vit.training import finetune


def _vit(**kwargs):
    model = build_vit("vit_micro", **{"depth": 3, **kwargs})
    rng = np.random.default_rng(0)  # non-zero weights everywhere (the new ViT's head is zero)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def _layer_of(model, variable):
    return next(layer.name for layer in model.layers if any(v is variable for v in layer.trainable_variables))


def test_layer_decay_multipliers_follow_the_depth():
    model = _vit()  # 3 blocks: the embedding gets d**4, block i d**(3 - i), the norm and head 1
    factors = finetune.layer_decay_multipliers(model, 0.5)
    assert set(factors) == {v.path for v in model.trainable_variables}
    expected = {
        "patch_encoder": 0.5**4,
        "block_0": 0.5**3,
        "block_1": 0.5**2,
        "block_2": 0.5,
        "encoder_norm": 1.0,
    }
    expected["head"] = 1.0
    for variable in model.trainable_variables:
        assert factors[variable.path] == expected[_layer_of(model, variable)], variable.path
    assert {factors[v.path] for v in model.get_layer("patch_encoder").trainable_variables} == {0.5**4}
    assert all(value == 1.0 for value in finetune.layer_decay_multipliers(model, 1.0).values())
    for bad in (0.0, 1.5, -0.5):
        with pytest.raises(ValueError, match="layer decay"):
            finetune.layer_decay_multipliers(model, bad)


def test_freeze_first_blocks():
    model = _vit()
    everything = len(model.trainable_variables)
    assert finetune.freeze_first_blocks(model, 0) == [] and len(model.trainable_variables) == everything
    frozen = finetune.freeze_first_blocks(model, 2)
    assert "patch_encoder" in frozen and {"block_0", "block_1"} <= set(frozen)
    assert not {"block_2", "encoder_norm", "head"} & set(frozen)
    for name in ("patch_encoder", "block_0", "block_1"):
        assert not model.get_layer(name).trainable
    assert model.get_layer("block_2").trainable and model.get_layer("head").trainable
    left = {_layer_of(model, v) for v in model.trainable_variables}
    assert left == {"block_2", "encoder_norm", "head"}
    with pytest.raises(ValueError, match="cannot freeze 4 blocks of a ViT with 3"):
        finetune.freeze_first_blocks(_vit(), 4)
    assert len(finetune.freeze_first_blocks(_vit(), 3)) > 3  # a linear probe: every block frozen


def test_fine_tuning_start_gets_a_new_head_and_keeps_the_rest():
    model = _vit()
    start = finetune.fine_tuning_start(model, (32, 32), 3)
    assert start.num_classes == 3 and start.output_shape == (None, 3)
    head = start.get_layer("head").get_weights()
    assert all(not np.any(w) for w in head)  # a new, zero head
    for name in ("patch_encoder", "block_0", "block_2", "encoder_norm"):
        for old, new in zip(
            model.get_layer(name).get_weights(), start.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(old, new, err_msg=name)
    same = finetune.fine_tuning_start(model, (32, 32), 10)  # the checkpoint's own classes: its head kept
    np.testing.assert_array_equal(
        same.get_layer("head").get_weights()[0], model.get_layer("head").get_weights()[0]
    )


def test_fine_tuning_start_resamples_to_the_data_size_and_takes_regularization():
    model = _vit()
    larger = finetune.fine_tuning_start(model, (48, 64), 10, {"drop_path": 0.2, "dropout": 0.1})
    arguments = vit_arguments(larger)
    assert (
        arguments["image_size"] == (48, 64) and arguments["drop_path"] == 0.2 and arguments["dropout"] == 0.1
    )
    assert larger.get_layer("patch_encoder").grid_size == (6, 8)
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 48, 64, 3)).astype("float32")
    plain = finetune.fine_tuning_start(model, (48, 64), 10)
    # Regularization acts in training only: the same function at inference.
    np.testing.assert_allclose(larger.predict(pixels, verbose=0), plain.predict(pixels, verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match="num_heads, projection_dim cannot be changed"):
        finetune.fine_tuning_start(model, (32, 32), 10, {"projection_dim": 64, "num_heads": 4})


def test_load_pretrained_reads_a_keras_file_and_refuses_what_it_cannot_read(tmp_path):
    model = _vit()
    model.save(tmp_path / "vit.keras")
    loaded = finetune.load_pretrained(tmp_path / "vit.keras").model
    np.testing.assert_array_equal(loaded.get_weights()[3], model.get_weights()[3])
    (tmp_path / "weights.pt").write_bytes(b"a PyTorch checkpoint")
    with pytest.raises(ValueError, match="not a checkpoint keras_vit reads"):
        finetune.load_pretrained(tmp_path / "weights.pt")
    for missing in ("missing.safetensors", "missing.pt"):  # a path that does not exist is said to be missing
        with pytest.raises(OSError, match=f"no such file or folder: .*{missing}"):
            finetune.load_pretrained(tmp_path / missing)
    with pytest.raises(ValueError, match="missing.keras"):
        finetune.load_pretrained(tmp_path / "missing.keras")


def test_load_pretrained_converts_every_other_source(monkeypatch, tmp_path):
    """Names and paths other than a .keras file go to keras_vit.convert.sources (tested in tests/convert)."""
    calls = []

    class Converted:
        model = "converted model"
        class_names, names_from, new_head = None, None, False

    monkeypatch.setattr(
        finetune, "load_source", lambda spec, backbone_classes: calls.append(spec) or Converted
    )
    for spec in (
        "timm:vit_small_patch16_224.augreg_in21k",
        "hf:google/vit-base-patch16-224",
        "keras_hub:vit",
    ):
        assert finetune.load_pretrained(spec).model == "converted model"
    assert finetune.load_pretrained(tmp_path).model == "converted model"  # a folder
    assert calls == [
        "timm:vit_small_patch16_224.augreg_in21k",
        "hf:google/vit-base-patch16-224",
        "keras_hub:vit",
        str(tmp_path),
    ]


def test_choose_head_keeps_reorders_or_replaces_it_by_the_class_names(tmp_path):
    data = ["bird", "cat", "dog"]
    same = finetune.choose_head(3, data, ["bird", "cat", "dog"], "vit.labels.txt")
    assert same.action == "keep" and "vit.labels.txt" in same.message
    reordered = finetune.choose_head(3, data, ["cat", "dog", "bird"], "the config's id2label")
    assert reordered.action == "reorder" and reordered.order == (2, 0, 1)  # the data's bird is logit 2
    assert "reordered" in reordered.message
    others = finetune.choose_head(3, data, ["ant", "cat", "dog"], "vit.labels.txt")
    assert others.action == "new" and "'ant'" in others.message
    assert finetune.choose_head(5, data, ["bird", "cat", "dog", "x", "y"], "f").action == "new"
    unknown = finetune.choose_head(3, data, None, "no labels file beside vit.keras")
    assert unknown.action == "keep" and "unknown (no labels file beside vit.keras)" in unknown.message
    assert finetune.choose_head(4, data, None, "no labels file").action == "new"
    backbone = finetune.choose_head(1, data, None, "the source names no classes", new_head=True)
    assert backbone.action == "new" and "has none" in backbone.message
    for choice in (same, reordered, others, unknown, backbone):  # one line each
        assert "\n" not in choice.message
    # What Python users call: the loaded checkpoint's choice for their data.
    names = [str(i) for i in range(10)]
    pretrained = finetune.Pretrained(_vit(), tuple(names[::-1]), "vit.labels.txt")
    assert pretrained.head_for(names).order == tuple(range(9, -1, -1))
    # A checkpoint saved before `ViT` existed (a plain functional model, as the shipped one) answers alike.
    model = _vit()
    keras.Model(model.input, model.output, name=model.name).save(tmp_path / "legacy.keras")
    legacy = keras.saving.load_model(tmp_path / "legacy.keras", safe_mode=True)
    assert not isinstance(legacy, ViT)
    choice = finetune.Pretrained(legacy, tuple(names[::-1]), "vit.labels.txt").head_for(names)
    assert (choice.action, choice.order) == ("reorder", tuple(range(9, -1, -1)))
    # Names unknown: its class count (10, read from its layers) decides.
    assert finetune.Pretrained(legacy, None, "no labels file").head_for(names).action == "keep"
    assert finetune.Pretrained(legacy, None, "no labels file").head_for(names[:3]).action == "new"


def test_fine_tuning_start_reorders_or_zeroes_a_head_of_the_same_count():
    model = _vit()  # 10 classes
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    logits = model.predict(pixels, verbose=0)
    order = (3, 0, 9, 1, 2, 4, 5, 6, 7, 8)
    head = finetune.HeadChoice("reorder", order)
    reordered = finetune.fine_tuning_start(model, (32, 32), 10, head=head)
    np.testing.assert_allclose(reordered.predict(pixels, verbose=0), logits[:, order], atol=1e-5)
    new = finetune.fine_tuning_start(model, (32, 32), 10, head=finetune.HeadChoice("new"))
    assert all(not np.any(w) for w in new.get_layer("head").get_weights())
    kept = finetune.fine_tuning_start(model, (32, 32), 10, head=finetune.HeadChoice("keep"))
    np.testing.assert_allclose(kept.predict(pixels, verbose=0), logits, atol=1e-5)


def test_load_pretrained_reads_the_labels_beside_a_keras_file(tmp_path):
    model = _vit(num_classes=3)
    model.save(tmp_path / "vit.keras")
    assert finetune.load_pretrained(tmp_path / "vit.keras").class_names is None
    (tmp_path / "vit.labels.txt").write_text("cat\ndog\nbird\n")
    loaded = finetune.load_pretrained(tmp_path / "vit.keras")
    assert loaded.class_names == ("cat", "dog", "bird") and loaded.names_from.endswith("vit.labels.txt")
    assert not loaded.new_head
    (tmp_path / "vit.labels.txt").write_text("cat\ndog\n")  # another model's: not taken as this one's
    wrong = finetune.load_pretrained(tmp_path / "vit.keras")
    assert wrong.class_names is None and "has 2 names, the model 3 classes" in wrong.names_from
