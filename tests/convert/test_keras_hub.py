"""from_keras_hub: tiny random keras-hub ViT backbones and classifiers match their conversions."""

import keras
import numpy as np
import pytest

from tests.convert.helpers import assert_reloads, assert_same_logits, random_pixels

keras_hub = pytest.importorskip("keras_hub")

from keras_vit.convert import from_keras_hub  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_backbone(**kwargs):
    values = dict(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128
    )
    values.update(kwargs)
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(**values)
    rng = np.random.default_rng(0)
    for variable in backbone.weights:  # non-zero biases and tokens, so that each is tested
        variable.assign(variable.numpy() + 0.05 * rng.standard_normal(variable.shape).astype("float32"))
    return backbone


def normalized(pixels):
    return (pixels / 255.0 - np.asarray(MEAN, "float32")) / np.asarray(STD, "float32")


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(use_mha_bias=False, use_mlp_bias=False, use_patch_bias=False, layer_norm_epsilon=1e-12)],
    ids=["biases", "no-biases"],
)
def test_classifier_matches_and_reloads(kwargs, tmp_path):
    backbone = make_backbone(**kwargs)
    classifier = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=6)
    head = classifier.output_dense
    head.bias.assign(np.random.default_rng(1).standard_normal(6).astype("float32"))
    pixels = random_pixels(32)
    converted = from_keras_hub(classifier, mean=MEAN, std=STD)
    expected = classifier.predict(normalized(pixels), verbose=0)
    assert_same_logits(expected, converted.predict(pixels, verbose=0))
    assert_reloads(converted, pixels, tmp_path)


def test_mean_pooled_classifier_without_class_token_matches():
    backbone = make_backbone(use_class_token=False, image_shape=(64, 64, 3), patch_size=16)
    classifier = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=4, pooling="gap")
    pixels = random_pixels(64)
    converted = from_keras_hub(classifier, mean=MEAN, std=STD)
    assert_same_logits(
        classifier.predict(normalized(pixels), verbose=0), converted.predict(pixels, verbose=0)
    )


def test_backbone_features_match_and_statistics_come_from_the_converter():
    backbone = make_backbone()
    pixels = random_pixels(32)
    with pytest.raises(ValueError, match="num_classes"):
        from_keras_hub(backbone, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="mean"):
        from_keras_hub(backbone, num_classes=3)
    converted = from_keras_hub(backbone, mean=MEAN, std=STD, num_classes=3)
    features = keras.Model(converted.input, converted.get_layer("pool").output)
    tokens = backbone.predict(normalized(pixels), verbose=0)
    assert_same_logits(tokens[:, 0], features.predict(pixels, verbose=0))

    converter = keras_hub.layers.ViTImageConverter(
        image_size=(32, 32),
        scale=[1 / (255.0 * s) for s in STD],
        offset=[-m / s for m, s in zip(MEAN, STD, strict=True)],
    )
    preprocessor = keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter)
    classifier = keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=2, preprocessor=preprocessor
    )
    np.testing.assert_allclose(from_keras_hub(classifier).mean, [255.0 * m for m in MEAN], rtol=1e-5)


def test_unsupported_classifier_settings_are_named():
    backbone = make_backbone()
    classifier = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=3, intermediate_dim=16)
    with pytest.raises(ValueError, match="intermediate_dim"):
        from_keras_hub(classifier, mean=MEAN, std=STD)
    classifier = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=3, pooling="gap")
    with pytest.raises(ValueError, match="pooling='gap'"):
        from_keras_hub(classifier, mean=MEAN, std=STD)
