"""keras_vit.convert.sources: checkpoint names to converted models, the source's own forward pass and its
class names."""

import json

import numpy as np
import pytest

from keras_vit.convert import sources
from keras_vit.convert.transformers import from_transformers
from tests.convert.helpers import assert_same_logits, random_pixels


def save_hugging_face_folder(folder, labels=None, model_class="ViTForImageClassification"):
    """A tiny random Hugging Face ViT saved as the Hub keeps it: model.safetensors, config.json (with `labels` as
    id2label) and preprocessor_config.json; returns the torch model."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    config = dict(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4)
    config.update(intermediate_size=128, num_labels=len(labels or "abc"))
    if labels:
        config.update(id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    model = getattr(transformers, model_class)(transformers.ViTConfig(**config))
    with torch.no_grad():  # non-zero biases, so that a wrong mapping shows
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model.eval().save_pretrained(folder, safe_serialization=True)
    statistics = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    (folder / "preprocessor_config.json").write_text(json.dumps(statistics))
    return model


def test_names_go_to_their_loaders(monkeypatch, tmp_path):
    calls = []
    for loader in ("_from_timm", "_from_keras_hub", "_from_hugging_face_folder"):
        monkeypatch.setattr(
            sources, loader, lambda spec, options, loader=loader: calls.append((loader, spec))
        )
    monkeypatch.setattr(sources, "download_from_hub", lambda name: f"cache/{name}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    for spec in ("timm:deit_tiny_patch16_224", "keras_hub:vit_base", "hf:google/vit", tmp_path, weights):
        sources.load_source(spec)
    assert calls == [
        ("_from_timm", "deit_tiny_patch16_224"),
        ("_from_keras_hub", "vit_base"),
        ("_from_hugging_face_folder", "cache/google/vit"),
        ("_from_hugging_face_folder", str(tmp_path)),
        ("_from_hugging_face_folder", str(weights)),
    ]
    (tmp_path / "weights.pt").write_bytes(b"a PyTorch checkpoint")
    with pytest.raises(ValueError, match="not a checkpoint keras_vit converts: give timm:NAME"):
        sources.load_source(tmp_path / "weights.pt")
    with pytest.raises(OSError, match="no such file or folder: .*elsewhere.pt"):
        sources.load_source(tmp_path / "elsewhere.pt")
    with pytest.raises(OSError, match="no such file"):
        sources.load_source(tmp_path / "missing.safetensors")
    with pytest.raises(OSError, match="no such file"):
        sources.load_source(f"{tmp_path / 'vit-b16'}/")  # a folder, by its trailing separator


def test_repeated_class_names_get_their_index():
    names = ["tench", "crane", "goldfish", "crane "]
    assert sources.unique_class_names(names) == ("tench", "crane (1)", "goldfish", "crane (3)")


def test_a_hugging_face_folder_gives_its_forward_pass_and_its_class_names(tmp_path):
    # 12 classes: id2label's keys "10" and "11" sort after "9" only as numbers.
    labels = ["cat", "dog", "cat", "owl", "eel", "elk", "emu", "gnu", "hen", "jay", "kea", "yak"]
    source = save_hugging_face_folder(tmp_path, labels=labels)
    converted = sources.load_source(tmp_path)
    assert converted.class_names == ("cat (0)", "dog", "cat (2)", *labels[3:])
    assert converted.names_from == "the config's id2label" and converted.no_reference is None
    pixels = random_pixels(32)
    expected = converted.reference(pixels)
    # The reference is the source itself, fed as its image processor would feed it.
    import torch

    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = ((pixels / 255.0 - mean) / std).astype("float32").transpose(0, 3, 1, 2)
    with torch.no_grad():
        np.testing.assert_allclose(
            expected, source(pixel_values=torch.from_numpy(x)).logits.numpy(), atol=1e-5
        )
    assert_same_logits(expected, converted.model.predict(pixels, verbose=0))


def test_the_sources_own_image_size_is_still_compared(tmp_path):
    """`--image-size` equal to the source's size changes nothing: the model is the source's, and checked."""
    save_hugging_face_folder(tmp_path, labels=["cat", "dog", "owl"])  # built for 32x32
    for size in (32, (32, 32)):
        converted = sources.load_source(tmp_path, image_size=size)
        assert converted.no_reference is None and converted.reference is not None
        pixels = random_pixels(32)
        assert_same_logits(converted.reference(pixels), converted.model.predict(pixels, verbose=0))
    assert sources.load_source(tmp_path, image_size=(32, 48)).reference is None


def test_a_folder_without_names_or_a_classifier_says_why_it_cannot_be_compared(tmp_path):
    save_hugging_face_folder(tmp_path)  # transformers' placeholder names LABEL_0, ...: no class names
    resized = sources.load_source(tmp_path, image_size=48)
    assert resized.class_names is None and resized.reference is None
    assert "--image-size resamples" in resized.no_reference
    backbone = tmp_path / "backbone"
    save_hugging_face_folder(backbone, model_class="ViTModel")
    headless = sources.load_source(backbone, num_classes=7)
    assert headless.model.output_shape[-1] == 7 and headless.reference is None
    assert "a new head was made" in headless.no_reference


def test_a_classifier_given_its_own_class_count_keeps_its_head_names_and_check(tmp_path):
    save_hugging_face_folder(tmp_path, labels=["cat", "dog", "owl"])
    converted = sources.load_source(tmp_path, num_classes=3)
    assert converted.class_names == ("cat", "dog", "owl") and converted.reference is not None
    # A config written from ViTConfig.to_dict() alone says "architectures": null: the head in the weights counts.
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": None}))
    bare = sources.load_source(tmp_path)
    pixels = random_pixels(32)
    assert bare.class_names == ("cat", "dog", "owl")
    assert_same_logits(bare.reference(pixels), bare.model.predict(pixels, verbose=0))


def keras_hub_presets(folder, name, shape, std, offset):
    """A 3-class keras-hub ViT classifier of 32x32 images and 8x8 patches, its weights moved off their start, saved
    as the preset folder `folder/name` and its backbone as `folder/backbone`; returns the classifier.

    `shape`: (layers, heads, width, MLP width); `std`, `offset`: its image converter's (x / 255 / std + offset).
    """
    keras_hub = pytest.importorskip("keras_hub")
    layers, heads, width, mlp = shape
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3),
        patch_size=8,
        num_layers=layers,
        num_heads=heads,
        hidden_dim=width,
        mlp_dim=mlp,
    )
    converter = keras_hub.layers.ViTImageConverter(image_size=(32, 32), scale=1 / (255 * std), offset=offset)
    preprocessor = keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter)
    classifier = keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=3, preprocessor=preprocessor
    )
    rng = np.random.default_rng(0)
    for variable in classifier.weights:
        variable.assign(variable.numpy() + 0.05 * rng.standard_normal(variable.shape).astype("float32"))
    classifier.save_to_preset(str(folder / name))
    backbone.save_to_preset(str(folder / "backbone"))
    return classifier


def test_a_local_keras_hub_preset_gives_its_forward_pass(tmp_path):
    classifier = keras_hub_presets(tmp_path, "preset", (2, 4, 64, 128), std=0.5, offset=-1.0)
    converted = sources.load_source(f"keras_hub:{tmp_path / 'preset'}")
    assert converted.model.mean == pytest.approx((127.5,) * 3) and converted.class_names is None
    pixels = random_pixels(32)
    # The classifier's own predict, preprocessor included, on the raw pixels: what the reference must match.
    np.testing.assert_allclose(converted.reference(pixels), classifier.predict(pixels, verbose=0), atol=1e-4)
    assert_same_logits(converted.reference(pixels), converted.model.predict(pixels, verbose=0))
    # --image-size at the preset's own size: still compared; at another size, not.
    assert sources.load_source(f"keras_hub:{tmp_path / 'preset'}", image_size=32).reference is not None
    resized = sources.load_source(f"keras_hub:{tmp_path / 'preset'}", image_size=48)
    assert resized.reference is None and "--image-size resamples" in resized.no_reference

    # --num-classes: the preset is read as a backbone (a classifier's too) and gets a new, zero head.
    headless = sources.load_source(
        f"keras_hub:{tmp_path / 'backbone'}", num_classes=5, mean=(0.5,) * 3, std=(0.5,) * 3
    )
    assert headless.model.output_shape[-1] == 5 and "a new head was made" in headless.no_reference


def test_a_keras_hub_preset_without_its_task_weights_is_a_backbone_preset(tmp_path):
    """task.json alone is no trained classifier (its head's weights are in task.weights.h5): the preset is read as
    a backbone, which needs a class count, and gets a new head and the preset's image converter statistics."""
    keras_hub_presets(tmp_path, "classifier", (1, 2, 16, 32), std=0.25, offset=-2.0)
    preset = tmp_path / "classifier"
    (preset / "task.weights.h5").unlink()
    assert (preset / "task.json").is_file()
    with pytest.raises(ValueError) as raised:
        sources.load_source(f"keras_hub:{preset}")
    assert str(raised.value) == (
        f"keras_hub:{preset} is a backbone preset (no trained classifier in it): give the class count of a new "
        "head (--num-classes N)"
    )
    headless = sources.load_source(f"keras_hub:{preset}", num_classes=4)
    assert headless.new_head and headless.reference is None and headless.model.output_shape[-1] == 4
    assert headless.model.std == pytest.approx((63.75,) * 3)


def test_a_local_keras_hub_preset_is_read_without_keras_hubs_private_helper(tmp_path, monkeypatch):
    """A local preset folder is told classifier from backbone by its files: it loads with keras-hub's
    preset_utils.check_file_exists gone (private, it may go in a release); a preset name then says what to do."""
    import importlib
    import sys
    import types

    keras_hub_presets(tmp_path, "classifier", (1, 2, 16, 32), std=0.25, offset=-2.0)
    helpers = importlib.import_module("keras_hub.src.utils.preset_utils")
    without = types.ModuleType(helpers.__name__)  # keras-hub's own loaders keep the module they imported
    without.__dict__.update(
        {key: value for key, value in vars(helpers).items() if key != "check_file_exists"}
    )
    monkeypatch.setitem(sys.modules, helpers.__name__, without)
    classifier = sources.load_source(f"keras_hub:{tmp_path / 'classifier'}")
    assert not classifier.new_head and classifier.reference is not None
    assert classifier.model.output_shape[-1] == 3
    backbone = sources.load_source(
        f"keras_hub:{tmp_path / 'backbone'}", num_classes=4, mean=(0.5,) * 3, std=(0.5,) * 3
    )
    assert backbone.new_head and backbone.model.output_shape[-1] == 4
    with pytest.raises(ValueError) as raised:
        sources.load_source("keras_hub:vit_base_patch16_224_imagenet")
    assert str(raised.value) == (
        "keras_hub:vit_base_patch16_224_imagenet: this keras-hub has no preset_utils.check_file_exists to tell a "
        "classifier from a backbone; download the preset to a folder "
        "(keras_hub.models.Backbone.from_preset(...).save_to_preset) and give that folder"
    )


def test_a_timm_name_gives_its_forward_pass_and_its_imagenet_class_names(monkeypatch):
    """timm:NAME (created without its pretrained weights here: no network) converts, runs beside the timm model
    within 1e-4, and names ImageNet's classes, the two "crane"s told apart."""
    timm = pytest.importorskip("timm")
    create_model = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, pretrained: create_model(name, pretrained=False))
    converted = sources.load_source("timm:deit_tiny_distilled_patch16_224")
    assert len(converted.class_names) == 1000 and converted.class_names[0] == "tench, Tinca tinca"
    assert converted.class_names[134] == "crane (134)" and converted.class_names[517] == "crane (517)"
    pixels = random_pixels(224, batch=2)
    assert_same_logits(converted.reference(pixels), converted.model.predict(pixels, verbose=0))


def _processor_logits(folder, source, pixels):
    """The source's logits on `pixels` through its own image processor (`preprocessor_config.json`), not
    resized: the Hugging Face pipeline a user of the checkpoint runs."""
    import torch
    import transformers

    processor = transformers.ViTImageProcessorPil.from_pretrained(folder)
    inputs = processor(list(pixels), do_resize=False, return_tensors="pt")
    with torch.no_grad():
        return source(**inputs).logits.numpy()


def test_an_image_processor_without_normalization_is_honoured_and_compared(tmp_path):
    """do_normalize false: the model normalizes with mean 0 and std 1 (0..1 units), not the config's image_mean
    and image_std, which the processor ignores; the check runs the source's own processor."""
    source = save_hugging_face_folder(tmp_path, labels=["cat", "dog", "owl"])
    processor = json.loads((tmp_path / "preprocessor_config.json").read_text())
    processor.update(do_normalize=False, do_rescale=True, rescale_factor=1 / 255)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor))
    converted = sources.load_source(tmp_path)
    assert converted.model.mean == pytest.approx((0.0,) * 3)
    assert converted.model.std == pytest.approx((255.0,) * 3)
    pixels = random_pixels(32)
    expected = _processor_logits(tmp_path, source, pixels)
    np.testing.assert_allclose(converted.reference(pixels), expected, atol=1e-5)
    assert_same_logits(expected, converted.model.predict(pixels, verbose=0))
    # --mean / --std replace the processor's: the check then covers the network, normalized as the model does.
    given = sources.load_source(tmp_path, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert_same_logits(given.reference(pixels), given.model.predict(pixels, verbose=0))


def test_a_reference_that_normalized_as_the_model_would_catch_other_statistics(tmp_path, monkeypatch):
    """The check runs the source's processor: a model converted with other statistics than the processor's
    differs from its reference (the check normalized with the model's own statistics before, so agreed)."""
    save_hugging_face_folder(tmp_path, labels=["cat", "dog", "owl"])
    monkeypatch.setattr(
        sources,
        "from_transformers",
        lambda path, **options: from_transformers(path, mean=(0.5,) * 3, std=(0.5,) * 3),
    )
    converted = sources.load_source(tmp_path)
    pixels = random_pixels(32)
    difference = np.max(np.abs(converted.reference(pixels) - converted.model.predict(pixels, verbose=0)))
    assert difference > 1e-2


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"do_rescale": False}, "do_rescale=False"),
        ({"rescale_factor": 1 / 127.5}, "rescale_factor=0.00784"),
        ({"rescale_offset": True}, "rescale_offset=True"),
    ],
)
def test_preprocessing_no_mean_and_std_express_is_refused_by_name(tmp_path, fields, named):
    save_hugging_face_folder(tmp_path, labels=["cat", "dog", "owl"])
    processor = json.loads((tmp_path / "preprocessor_config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**processor, **fields}))
    with pytest.raises(ValueError, match=f"preprocessor_config.json says {named}"):
        sources.load_source(tmp_path)
    # Statistics given for the pixels as the model saw them replace the processor's.
    assert sources.load_source(tmp_path, mean=(0.5,) * 3, std=(0.5,) * 3).model.mean == pytest.approx(
        (127.5,) * 3
    )


def test_a_sharded_hugging_face_folder_converts_and_is_compared(tmp_path):
    """model.safetensors.index.json and its shards (as the Hub keeps large models) convert like one file."""
    source = save_hugging_face_folder(tmp_path / "one", labels=["cat", "dog", "owl"])
    source.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    shards = sorted(path.name for path in (tmp_path / "sharded").glob("*.safetensors"))
    assert len(shards) > 1 and not (tmp_path / "sharded" / "model.safetensors").exists()
    (tmp_path / "sharded" / "preprocessor_config.json").write_text(
        (tmp_path / "one" / "preprocessor_config.json").read_text()
    )
    converted = sources.load_source(tmp_path / "sharded")
    pixels = random_pixels(32)
    assert_same_logits(converted.reference(pixels), converted.model.predict(pixels, verbose=0))
    one = sources.load_source(tmp_path / "one").model.predict(pixels, verbose=0)
    np.testing.assert_array_equal(converted.model.predict(pixels, verbose=0), one)
    (tmp_path / "sharded" / shards[0]).unlink()
    with pytest.raises(OSError, match=shards[0]):
        sources.load_source(tmp_path / "sharded")


def test_a_failed_download_names_the_source_and_the_hub_and_fetches_shards(monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    asked = {}

    def offline(repo_id, allow_patterns):
        asked.update(allow_patterns=allow_patterns)
        raise huggingface_hub.errors.LocalEntryNotFoundError(
            "Got: ConnectError: [Errno -2] Name or service not known\nAn error happened while trying to locate ..."
        )

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(OSError) as raised:
        sources.load_source("hf:google/vit-base-patch16-224")
    assert str(raised.value) == (
        "cannot download hf:google/vit-base-patch16-224 from the Hugging Face Hub (LocalEntryNotFoundError: Got: "
        "ConnectError: [Errno -2] Name or service not known)"
    )
    assert {"model.safetensors.index.json", "model-*-of-*.safetensors"} <= set(asked["allow_patterns"])


def test_keras_hub_presets_keep_a_classifiers_head_and_read_a_backbones_statistics(tmp_path):
    """keras-hub as Hugging Face: --num-classes of the classifier's own count keeps its head (and the check), another
    count is refused; a backbone preset takes its image_converter.json's statistics and needs a class count; an
    unknown preset name is one line."""
    classifier = keras_hub_presets(tmp_path, "classifier", (1, 2, 16, 32), std=0.25, offset=-2.0)

    same = sources.load_source(f"keras_hub:{tmp_path / 'classifier'}", num_classes=3)
    pixels = random_pixels(32)
    np.testing.assert_allclose(
        same.model.predict(pixels, verbose=0), classifier.predict(pixels, verbose=0), atol=1e-4
    )
    assert same.reference is not None and not same.new_head
    with pytest.raises(ValueError, match="3-class head; `num_classes`=5 would drop it"):
        sources.load_source(f"keras_hub:{tmp_path / 'classifier'}", num_classes=5)

    with pytest.raises(ValueError, match="is a backbone preset .*--num-classes N"):
        sources.load_source(f"keras_hub:{tmp_path / 'backbone'}")
    with pytest.raises(ValueError, match="does not say its input normalization"):
        sources.load_source(f"keras_hub:{tmp_path / 'backbone'}", num_classes=4)
    classifier.preprocessor.image_converter.save_to_preset(
        str(tmp_path / "backbone")
    )  # its image_converter.json
    headless = sources.load_source(f"keras_hub:{tmp_path / 'backbone'}", num_classes=4)
    assert headless.model.mean == pytest.approx((127.5,) * 3) and headless.model.std == pytest.approx(
        (63.75,) * 3
    )
    assert headless.new_head and headless.model.output_shape[-1] == 4
    assert sources.load_source(f"keras_hub:{tmp_path / 'backbone'}", backbone_classes=1).new_head

    with pytest.raises(ValueError) as raised:
        sources.load_source("keras_hub:nosuchpreset")
    assert str(raised.value) == (
        "keras_hub:nosuchpreset is no keras-hub preset: give a built-in preset name, a kaggle:// or hf:// handle, "
        "or a local preset folder"
    )
