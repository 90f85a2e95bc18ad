"""from_timm: tiny random timm ViTs, DeiTs and distilled DeiTs give the same logits as their conversions."""

import numpy as np
import pytest

from tests.convert.helpers import (
    assert_reloads,
    assert_same_logits,
    normalized_nchw,
    random_pixels,
    timm_fixture,
)

try:  # a torchvision built for another torch fails at import with a RuntimeError, not an ImportError
    import timm
    import torch
except Exception as error:  # noqa: BLE001
    pytest.skip(f"timm cannot be imported: {error}", allow_module_level=True)

from keras_vit.convert import from_timm  # noqa: E402
from keras_vit.convert.timm import _architecture_spec, timm_architecture  # noqa: E402

TINY = dict(embed_dim=64, depth=2, num_heads=4, num_classes=7)


def make(name=None, distilled=False, **kwargs):
    """A tiny timm model with random (non-zero) weights, in eval mode."""
    torch.manual_seed(0)
    if distilled:
        from timm.models.deit import VisionTransformerDistilled

        model = VisionTransformerDistilled(**{**TINY, **kwargs})
    else:
        from timm.models.vision_transformer import VisionTransformer

        model = VisionTransformer(**{**TINY, **kwargs})
    with torch.no_grad():  # timm zero-initializes some biases and tokens: randomize all, so each is tested
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model.pretrained_cfg = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    return model.eval()


def check(model, tmp_path=None):
    """Converts `model`, compares logits on random images; returns the max |difference|."""
    pixels = random_pixels(tuple(model.patch_embed.img_size))
    config = model.pretrained_cfg
    with torch.no_grad():
        expected = model(torch.from_numpy(normalized_nchw(pixels, config["mean"], config["std"]))).numpy()
    converted = from_timm(model)
    diff = assert_same_logits(expected, converted.predict(pixels, verbose=0))
    if tmp_path is not None:
        assert_reloads(converted, pixels, tmp_path)
    return diff


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(img_size=32, patch_size=8),  # class token head, qkv bias
        dict(img_size=64, patch_size=16, qkv_bias=False),
        dict(img_size=64, patch_size=32, init_values=0.1),  # LayerScale, folded
        dict(img_size=32, patch_size=8, global_pool="avg"),  # class token + fc_norm (MAE style)
        dict(img_size=32, patch_size=8, global_pool="avg", fc_norm=False),  # class token, norm then mean
        dict(img_size=32, patch_size=8, global_pool="avg", class_token=False, fc_norm=False),
        dict(img_size=(32, 48), patch_size=8),
    ],
    ids=["token", "no-qkv-bias", "layerscale-p32", "avg-fc-norm", "avg-norm", "gap-no-class", "non-square"],
)
def test_vit_variants_match(kwargs, tmp_path):
    check(make(**kwargs), tmp_path)  # the logits, then the .keras round trip in safe mode


def test_distilled_deit_matches_and_reloads(tmp_path):
    check(make(distilled=True, img_size=32, patch_size=8), tmp_path)


def test_converted_model_reloads(tmp_path):
    check(make(img_size=32, patch_size=8, global_pool="avg"), tmp_path)


def test_headless_model_needs_num_classes():
    model = make(img_size=32, patch_size=8, num_classes=0)
    with pytest.raises(ValueError, match="num_classes"):
        from_timm(model)
    converted = from_timm(model, num_classes=3)
    assert converted.num_classes == 3


def test_other_resolution_resamples_the_position_embedding():
    converted = from_timm(make(img_size=32, patch_size=8), image_size=48)
    assert converted.get_layer("patch_encoder").position.shape == (1, 37, 64)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(reg_tokens=2, no_embed_class=True), "register tokens"),
        (dict(pre_norm=True), "pre-norm"),
        (dict(qk_norm=True), "q_norm"),
        (dict(global_pool="map"), "AttentionPoolLatent"),
    ],
)
def test_unsupported_variants_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        from_timm(make(img_size=32, patch_size=8, **kwargs))


def test_missing_statistics_are_an_error():
    model = make(img_size=32, patch_size=8)
    model.pretrained_cfg = {}
    with pytest.raises(ValueError, match="mean"):
        from_timm(model)
    assert from_timm(model, mean=(0.5,) * 3, std=(0.5,) * 3).mean == (127.5,) * 3
    with pytest.raises(ValueError, match="0..1 units"):
        from_timm(model, mean=(125.0,) * 3, std=(60.0,) * 3)


def test_state_dict_with_model_name_matches():
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3).eval()
    state = {name: value.numpy() for name, value in source.state_dict().items()}
    with pytest.raises(ValueError, match="model_name"):
        from_timm(state)
    with pytest.raises(ValueError, match="does not fit"):
        from_timm(state, model_name="vit_small_patch16_224")
    converted = from_timm(state, model_name="vit_tiny_patch16_224")
    pixels = random_pixels(224, batch=2)
    config = source.pretrained_cfg
    with torch.no_grad():
        expected = source(torch.from_numpy(normalized_nchw(pixels, config["mean"], config["std"]))).numpy()
    assert_same_logits(expected, converted.predict(pixels, verbose=0))


@pytest.mark.parametrize(
    "family", ["deit_distilled", "vit_avg_fc_norm", "vit_avg_no_class", "vit_layerscale"]
)
def test_a_model_and_its_state_dict_convert_alike(family):
    """The model path reads a timm model into the architecture the state-dict path takes: the committed
    fixture's architecture rebuilds timm's model, and both paths give timm's logits."""
    state, config, pixels, expected = timm_fixture(family)
    arguments = {k: v for k, v in config["architecture"].items() if k != "distilled"}
    if config["architecture"].get("distilled"):
        from timm.models.deit import VisionTransformerDistilled as Model
    else:
        from timm.models.vision_transformer import VisionTransformer as Model
    model = Model(**arguments).eval()
    model.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()}, strict=True)
    model.pretrained_cfg = {"mean": config["mean"], "std": config["std"]}
    with torch.no_grad():  # the fixture's logits came from another timm / torch build: the same function
        live = model(torch.from_numpy(normalized_nchw(pixels, config["mean"], config["std"]))).numpy()
    assert_same_logits(expected, live)
    described = timm_architecture(model)
    # The same keras_vit architecture and state-dict names as the arguments timm's model was built with.
    assert _architecture_spec(described) == _architecture_spec(config["architecture"])
    from_state = from_timm(state, architecture=described, mean=config["mean"], std=config["std"])
    np.testing.assert_array_equal(
        from_timm(model).predict(pixels, verbose=0), from_state.predict(pixels, verbose=0)
    )
