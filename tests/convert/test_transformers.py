"""from_transformers: tiny random Hugging Face ViTs, as models and as safetensors files, match their conversions."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.convert.helpers import assert_reloads, assert_same_logits, normalized_nchw, random_pixels

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from keras_vit.convert import from_transformers  # noqa: E402

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def make_config(**kwargs):
    values = dict(
        image_size=32,
        patch_size=8,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=5,
    )
    values.update(kwargs)
    return transformers.ViTConfig(**values)


def make(model_class="ViTForImageClassification", **kwargs):
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(make_config(**kwargs))
    with torch.no_grad():  # non-zero biases everywhere, so that each is tested
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def reference(model, pixels):
    with torch.no_grad():
        outputs = model(pixel_values=torch.from_numpy(normalized_nchw(pixels, MEAN, STD)))
    return outputs.logits.numpy()


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(qkv_bias=False), dict(image_size=64, patch_size=16, layer_norm_eps=1e-6)],
    ids=["default", "no-qkv-bias", "p16-eps1e-6"],
)
def test_model_object_matches(kwargs):
    model = make(**kwargs)
    pixels = random_pixels(model.config.image_size)
    converted = from_transformers(model, mean=MEAN, std=STD)
    assert converted.get_layer("block_0").layer_norm_epsilon == model.config.layer_norm_eps
    assert_same_logits(reference(model, pixels), converted.predict(pixels, verbose=0))


# transformers 5's weight names -> transformers 4's, those of the checkpoints on the Hub.
V4_NAMES = [
    ("vit.layers.", "vit.encoder.layer."),
    ("attention.q_proj", "attention.attention.query"),
    ("attention.k_proj", "attention.attention.key"),
    ("attention.v_proj", "attention.attention.value"),
    ("attention.o_proj", "attention.output.dense"),
    ("mlp.fc1", "intermediate.dense"),
    ("mlp.fc2", "output.dense"),
]


def v4_name(name):
    for new, old in V4_NAMES:
        name = name.replace(new, old)
    return name


@pytest.mark.parametrize("naming", ["transformers-5", "transformers-4"])
def test_safetensors_file_matches_and_reloads(naming, tmp_path):
    from safetensors.numpy import save_file

    model = make()
    arrays = {name: value.detach().numpy().copy() for name, value in model.state_dict().items()}
    if naming == "transformers-4":
        arrays = {v4_name(name): value for name, value in arrays.items()}
        assert "vit.encoder.layer.0.attention.attention.query.weight" in arrays
    save_file(arrays, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    pixels = random_pixels(32)
    converted = from_transformers(tmp_path, mean=MEAN, std=STD)  # the directory
    assert_same_logits(reference(model, pixels), converted.predict(pixels, verbose=0))
    assert_reloads(converted, pixels, tmp_path)


def test_backbone_gets_a_new_head():
    model = make("ViTModel")
    pixels = random_pixels(32)
    converted = from_transformers(model, mean=MEAN, std=STD, num_classes=3)
    with torch.no_grad():
        tokens = model(pixel_values=torch.from_numpy(normalized_nchw(pixels, MEAN, STD))).last_hidden_state
    import keras

    features = keras.Model(converted.input, converted.get_layer("pool").output)
    assert_same_logits(tokens[:, 0].numpy(), features.predict(pixels, verbose=0))
    assert converted.num_classes == 3


def test_errors_name_the_problem(tmp_path):
    model = make()
    with pytest.raises(ValueError, match="mean"):
        from_transformers(model)
    with pytest.raises(ValueError, match="hidden_act"):
        from_transformers(make(hidden_act="relu"), mean=MEAN, std=STD)
    from safetensors.numpy import save_file

    arrays = {name: value.detach().numpy().copy() for name, value in model.state_dict().items()}
    arrays["vit.embeddings.extra"] = np.zeros(3, "float32")
    save_file(arrays, str(tmp_path / "odd.safetensors"))
    with pytest.raises(ValueError, match="embeddings.extra"):
        from_transformers(tmp_path / "odd.safetensors", mean=MEAN, std=STD, config=model.config)
    with pytest.raises(ValueError, match="config"):
        from_transformers(tmp_path / "odd.safetensors", mean=MEAN, std=STD)


def test_a_mask_token_is_refused_by_name():
    """A ViTModel made with use_mask_token=True (masked-image modelling) carries `embeddings.mask_token`."""
    torch.manual_seed(0)
    masked = transformers.ViTModel(make_config(), use_mask_token=True).eval()
    with pytest.raises(ValueError, match=r"`embeddings.mask_token`: a mask token \(use_mask_token=True"):
        from_transformers(masked, mean=MEAN, std=STD, num_classes=3)


def test_safetensors_file_converts_without_pytorch(tmp_path):
    from safetensors.numpy import save_file

    model = make()
    save_file(
        {name: value.detach().numpy().copy() for name, value in model.state_dict().items()},
        str(tmp_path / "model.safetensors"),
    )
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    # A fresh interpreter in which `import torch` fails.
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from keras_vit.convert import from_transformers\n"
        f"model = from_transformers({str(tmp_path)!r}, mean=(0.5,) * 3, std=(0.5,) * 3)\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print(model.count_params())\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) > 0


def test_a_folder_gives_its_image_processors_mean_and_std(tmp_path):
    from safetensors.numpy import save_file

    model = make()
    save_file(
        {name: value.detach().numpy().copy() for name, value in model.state_dict().items()},
        str(tmp_path / "model.safetensors"),
    )
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    with pytest.raises(ValueError, match="no preprocessor_config.json"):
        from_transformers(tmp_path)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": mean, "image_std": std}))
    pixels = random_pixels(32)
    converted = from_transformers(tmp_path)
    with torch.no_grad():
        expected = model(pixel_values=torch.from_numpy(normalized_nchw(pixels, mean, std))).logits.numpy()
    assert_same_logits(expected, converted.predict(pixels, verbose=0))
    given = from_transformers(tmp_path, mean=MEAN, std=STD)  # given statistics win over the file's
    assert_same_logits(reference(model, pixels), given.predict(pixels, verbose=0))
