"""from_timm(state_dict, architecture=...): timm checkpoints converted without timm or PyTorch.

tests/convert/data/timm holds, per family, a tiny random timm model's state dict, its architecture and timm's
logits on fixed images, written by timm 1.0 in another Python
(`benchmarks/pretrained_timm_parity.py make`): here they are converted and compared, with no timm installed.
"""

import textwrap

import numpy as np
import pytest
from conftest import run_python

from keras_vit.convert import from_timm
from tests.convert.helpers import TIMM_DATA as DATA
from tests.convert.helpers import TIMM_FAMILIES as FAMILIES
from tests.convert.helpers import assert_reloads, assert_same_logits
from tests.convert.helpers import convert_timm_fixture as convert
from tests.convert.helpers import timm_fixture as fixture


def test_every_claimed_family_has_its_fixture():
    assert sorted(p.name for p in DATA.iterdir() if p.is_dir()) == sorted(FAMILIES)
    sizes = sum(f.stat().st_size for f in DATA.rglob("*") if f.is_file())
    assert sizes < 1_000_000, sizes  # tiny models: committed test data


@pytest.mark.parametrize("family", FAMILIES)
def test_state_dicts_match_timm_and_reload(family, tmp_path):
    _, config, pixels, expected = fixture(family)
    converted = convert(family)
    size = config["architecture"]["img_size"]
    assert converted.image_size == (tuple(size) if isinstance(size, list) else (size, size))
    assert_same_logits(expected, converted.predict(pixels, verbose=0))
    assert_reloads(converted, pixels, tmp_path, name=family)


def test_the_architecture_decides_the_layers():
    distilled = convert("deit_distilled")
    encoder = distilled.get_layer("patch_encoder")
    assert encoder.distillation_token and encoder.position.shape == (1, 16 + 2, 32)
    assert distilled.get_layer("head").kernel.shape == (64, 5)  # the mean of timm's two heads, as one
    pooled = convert("vit_avg_fc_norm")
    assert pooled.get_config()["pooling"] == "gap" and pooled.get_config()["head_norm"] == "pooled"
    assert convert("vit_avg_no_class").get_config()["class_token"] is False


def test_state_dict_and_architecture_must_agree():
    state, config, _, _ = fixture("vit_layerscale")
    architecture, stats = config["architecture"], dict(mean=config["mean"], std=config["std"])
    without_scale = {**architecture, "init_values": None}
    with pytest.raises(ValueError, match=r"unexpected \['blocks.0.ls1.gamma'"):
        from_timm(state, architecture=without_scale, **stats)
    partial = {k: v for k, v in state.items() if k != "blocks.1.attn.qkv.bias"}
    with pytest.raises(ValueError, match=r"missing \['blocks.1.attn.qkv.bias'\], unexpected \[\]"):
        from_timm(partial, architecture=architecture, **stats)
    with pytest.raises(
        ValueError, match=r"`blocks.0.mlp.fc1.weight` has shape \(128, 32\), expected \(64, 32\)"
    ):
        from_timm(state, architecture={**architecture, "mlp_ratio": 2.0}, **stats)
    with pytest.raises(ValueError, match="mean"):
        from_timm(state, architecture=architecture)  # a state dict does not say its input statistics


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(qk_norm=True), r"qk_norm=True: QK-norm \(blocks.\*.attn.q_norm"),
        (dict(reg_tokens=4), "reg_tokens=4: register tokens"),
        (dict(pre_norm=True), "pre_norm=True: a pre-norm"),
        (dict(global_pool="map"), "global_pool='map'"),
        (dict(global_pool="token", class_token=False), "without a class token"),
        (dict(no_embed_class=True), "no_embed_class=True with a class token"),
        (dict(pool_include_prefix=True), "pool_include_prefix=True"),
        (dict(norm_layer="rmsnorm"), "norm_layer='rmsnorm'"),
        (dict(patch_size=(4, 8)), "non-square patches"),
        (
            dict(use_swiglu=True),
            r"Unknown timm VisionTransformer arguments in the architecture: \['use_swiglu'\]",
        ),
    ],
)
def test_unsupported_architectures_are_named(change, message):
    state, config, _, _ = fixture("vit_token")
    with pytest.raises(ValueError, match=message):
        from_timm(
            state, architecture={**config["architecture"], **change}, mean=config["mean"], std=config["std"]
        )


def test_architecture_options():
    state, config, pixels, expected = fixture("vit_token")
    architecture = dict(config["architecture"], drop_path_rate=0.1, layer_norm_eps=1e-5)  # a training setting
    model = from_timm(state, architecture=architecture, mean=config["mean"], std=config["std"], image_size=32)
    assert model.get_layer("encoder_norm").epsilon == 1e-5 and model.get_config()["drop_path"] == 0.0
    assert model.get_layer("patch_encoder").position.shape == (1, 64 + 1, 32)  # resampled to 8x8 patches
    with pytest.raises(ValueError, match="`architecture` is for a state dict"):
        from_timm("vit_small_patch16_224", architecture=architecture)
    with pytest.raises(ValueError, match="one of `model_name` and `architecture`"):
        from_timm(state, architecture=architecture, model_name="vit_small_patch16_224")
    headless = {k: v for k, v in state.items() if not k.startswith("head.")}
    arguments = dict(config["architecture"], num_classes=0)
    with pytest.raises(ValueError, match="num_classes"):
        from_timm(headless, architecture=arguments, mean=config["mean"], std=config["std"])
    new_head = from_timm(
        headless, architecture=arguments, mean=config["mean"], std=config["std"], num_classes=3
    )
    assert new_head.num_classes == 3 and not np.any(new_head.get_layer("head").kernel.numpy())


def test_state_dicts_convert_without_timm_or_torch():
    """In a Python where importing torch or timm fails: a state dict with its architecture still converts."""
    code = textwrap.dedent(
        """
        import json, sys
        sys.modules["torch"] = sys.modules["timm"] = None  # any import of them raises ImportError
        import numpy as np
        from safetensors.numpy import load_file
        from keras_vit.convert import from_timm
        folder = sys.argv[1]
        config = json.load(open(folder + "/config.json"))
        reference = np.load(folder + "/reference.npz")
        state = load_file(folder + "/model.safetensors")
        model = from_timm(state, architecture=config["architecture"], mean=config["mean"], std=config["std"])
        logits = model.predict(reference["pixels"].astype("float32"), verbose=0)
        print(float(np.max(np.abs(logits - reference["logits"]))))
        """
    )
    done = run_python(code, DATA / "deit_distilled", backend="tensorflow")
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) <= 1e-4
