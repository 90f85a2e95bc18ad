"""`from_transformers`: a Hugging Face `transformers` ViT (model or safetensors file) -> a keras_vit `ViT`."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np

from keras_vit.cli_utils import first_line
from keras_vit.convert._mapping import SourceViT, build_converted_vit, pixel_statistics

# transformers' ViT weight names (after the `vit.` prefix) -> timm's, per block and for the rest. Blocks are
# `encoder.layer.{i}.` in transformers 4 (and the checkpoints on the Hub), `layers.{i}.` in transformers 5.
_BLOCK_NAMES = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",  # transformers 4
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "attention.o_proj": "attn.proj",  # transformers 5
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
# The separate query, key and value projections (joined into timm's `qkv`), per naming.
_QKV_NAMES = {
    "attention.attention.query": 0,
    "attention.attention.key": 1,
    "attention.attention.value": 2,
    "attention.q_proj": 0,
    "attention.k_proj": 1,
    "attention.v_proj": 2,
}
_BLOCK = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")
_OTHER_NAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
    "classifier.weight": "head.weight",
    "classifier.bias": "head.bias",
}
# Config fields whose value the converted model depends on, and the only value supported.
_REQUIRED_CONFIG = {"hidden_act": "gelu", "model_type": "vit"}
# The weights of one file, and the index of a checkpoint saved in shards (`model-00001-of-00003.safetensors`, ...).
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# What the Hub's image processors rescale 0..255 pixels by before the mean and std: keras_vit's `mean` and `std`
# are in these 0..1 units too.
_RESCALE_FACTOR = 1 / 255


def from_transformers(source, image_size=None, mean=None, std=None, num_classes=None, config=None):
    """Converts a Hugging Face `transformers` ViT into a keras_vit `ViT` with the same function.

    Supported: `ViTForImageClassification` (class-token head on the final
    LayerNorm) and `ViTModel` (a backbone: pass `num_classes` for a new,
    zero head), any patch size and resolution, with or without `qkv_bias`,
    LayerNorm epsilon from the config (1e-12 by default). `ViTModel`'s
    pooler (a Dense + tanh on the class token that no classifier reads) is
    not converted: it is left out, not silently, as said here. Refused, by
    name: other model types (DeiT, BEiT, ...), another `hidden_act`, a mask
    token (`use_mask_token`), and any weight the mapping does not know.

    Args:
        source: a `transformers` `ViTForImageClassification` or `ViTModel`;
            or the path of a `.safetensors` file, or of a directory that
            holds `model.safetensors` (or the shards its
            `model.safetensors.index.json` lists) and `config.json`, read
            with the `safetensors` NumPy API (no PyTorch needed).
        image_size: optional int or `(height, width)` to run at; default:
            the config's. Another size resamples the position embedding.
        mean, std: per-channel input statistics in 0..1 units (the image
            processor's `image_mean` / `image_std`, e.g. 0.5 for Google's
            ViTs); default: those of the `preprocessor_config.json` beside
            a file (`processor_statistics`). Required otherwise: neither a
            model nor its weights carry them.
        num_classes: the class count of a new head, for a `ViTModel`.
        config: for a file: a `transformers` `ViTConfig` or its dict, when
            no `config.json` lies beside the file.

    Returns:
        A keras_vit `ViT` that takes 0..255 pixels, channels last.

    Raises:
        ValueError: an unsupported config field or weight (named), a
            missing config, missing input statistics, or an image processor
            whose preprocessing a mean and std cannot express.
    """
    source_mean = source_std = None
    if isinstance(source, (str, os.PathLike)):
        arrays, file_config, processor = _read_safetensors(os.fspath(source))
        config = config if config is not None else file_config
        if config is None:
            raise ValueError(f"No config.json beside {os.fspath(source)!r}: pass `config`.")
        described = f"The checkpoint {os.fspath(source)!r} (no preprocessor_config.json beside it)"
        if mean is None and std is None:  # given statistics replace the processor's: it is not read then
            source_mean, source_std = processor_statistics(processor, os.fspath(source))
    else:
        config = source.config
        arrays = {name: value.detach().cpu().float().numpy() for name, value in source.state_dict().items()}
        described = f"The transformers model {type(source).__name__}"
    if not isinstance(config, dict):
        config = config.to_dict()
    mean, std = pixel_statistics(mean, std, source_mean, source_std, described)
    arrays = _timm_names(arrays)
    spec = _spec(config, arrays)
    return build_converted_vit(spec, arrays, mean, std, image_size=image_size, num_classes=num_classes)


def download_from_hub(repo_id):
    """Downloads a Hugging Face Hub ViT's weights, config and image-processor config (not its PyTorch files).

    Args:
        repo_id: the Hub name, e.g. `"google/vit-base-patch16-224"`.

    Returns:
        The local folder that holds them (the Hub's cache), for `from_transformers`.
    """
    from huggingface_hub import snapshot_download  # lazily: transformers' own dependency, an optional extra

    # One file, or a large model's shards and their index.
    patterns = [
        WEIGHTS_FILE,
        INDEX_FILE,
        "model-*-of-*.safetensors",
        "config.json",
        "preprocessor_config.json",
    ]
    try:
        return snapshot_download(repo_id=repo_id, allow_patterns=patterns)
    except Exception as error:  # noqa: BLE001 - offline, no such repository, gated: the Hub's own words, one line
        raise OSError(
            f"cannot download hf:{repo_id} from the Hugging Face Hub ({first_line(error, with_type=True)})"
        ) from None


def processor_statistics(processor, where):
    """The `(mean, std)`, 0..1 units, of a Hugging Face image processor's config (`preprocessor_config.json`).

    keras_vit normalizes `(pixels / 255 - mean) / std`: the processor's
    rescale by 1/255 then its `image_mean` and `image_std`, or mean 0 and
    std 1 where `do_normalize` is false.

    Args:
        processor: the config's dict (`{}` where there is none).
        where: the checkpoint, for the error message.

    Returns:
        `(mean, std)`, or `(None, None)` where the config does not give them.

    Raises:
        ValueError: preprocessing no mean and std express (`do_rescale`
            false, another `rescale_factor`, a `rescale_offset`), named.
    """
    if not processor:
        return None, None
    factor = processor.get("rescale_factor", _RESCALE_FACTOR)
    unlike = [
        f"{field}={processor[field]!r}"
        for field, fits in (
            ("do_rescale", processor.get("do_rescale", True) is True),
            ("rescale_factor", isinstance(factor, (int, float)) and math.isclose(factor, _RESCALE_FACTOR)),
            ("rescale_offset", not processor.get("rescale_offset", False)),
        )
        if not fits
    ]
    if unlike:
        raise ValueError(
            f"{where}: its preprocessor_config.json says {', '.join(unlike)}; keras_vit models scale 0..255 "
            "pixels by 1/255 before the mean and std: give the mean and std of those units (--mean, --std)"
        )
    if processor.get("do_normalize", True) is False:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # rescaled to 0..1 only
    return processor.get("image_mean"), processor.get("image_std")


def weights_files(path):
    """`(folder, safetensors files)` of a `.safetensors` file, or of a folder holding `model.safetensors` or the
    shards its `model.safetensors.index.json` lists."""
    if not os.path.isdir(path):
        return os.path.dirname(path) or ".", [path]
    index = _read_json(os.path.join(path, INDEX_FILE))
    if os.path.exists(os.path.join(path, WEIGHTS_FILE)) or index is None:
        return path, [os.path.join(path, WEIGHTS_FILE)]
    shards = sorted(set(index.get("weight_map", {}).values()))
    if not shards:
        raise ValueError(f"{os.path.join(path, INDEX_FILE)} lists no weights files.")
    return path, [os.path.join(path, shard) for shard in shards]


def weight_names(path):
    """The weight names of the checkpoint at `path` (see `weights_files`), read from the files' headers only."""
    from safetensors import safe_open  # lazily: an optional extra

    names = []
    for file in weights_files(path)[1]:
        with safe_open(file, framework="np") as opened:
            names.extend(opened.keys())
    return names


def _read_safetensors(path):
    """`(arrays, config dict or None, image processor dict or {})` of a safetensors file or a folder (see
    `weights_files`), with the `config.json` and `preprocessor_config.json` beside it where they are."""
    from safetensors.numpy import load_file  # lazily: an optional extra

    directory, files = weights_files(path)
    arrays = {}
    for file in files:
        arrays.update(load_file(file))
    config = _read_json(os.path.join(directory, "config.json"))
    processor = _read_json(os.path.join(directory, "preprocessor_config.json")) or {}
    return arrays, config, processor


def _read_json(path):
    """The JSON object in `path`, or None where there is no such file."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _timm_names(arrays):
    """The arrays under timm's names, the pooler's left out; unknown names raise."""
    renamed, qkv = {}, {}
    for name, value in arrays.items():
        short = name[len("vit.") :] if name.startswith("vit.") else name
        if short.startswith("pooler."):  # ViTModel's pooler: read by no classifier (see from_transformers)
            continue
        if short == "embeddings.mask_token":
            raise ValueError(
                f"Unsupported transformers weight `{name}`: a mask token (use_mask_token=True, masked-image "
                "modelling)."
            )
        if short in _OTHER_NAMES:
            renamed[_OTHER_NAMES[short]] = value
            continue
        match = _BLOCK.match(short)
        if match is None:
            raise ValueError(f"Unsupported transformers weight `{name}`.")
        index, rest, kind = int(match[1]), match[2], match[3]
        if rest in _QKV_NAMES:
            qkv.setdefault((index, kind), [None] * 3)[_QKV_NAMES[rest]] = value
        elif rest in _BLOCK_NAMES:
            renamed[f"blocks.{index}.{_BLOCK_NAMES[rest]}.{kind}"] = value
        else:
            raise ValueError(f"Unsupported transformers weight `{name}`.")
    # Separate query, key and value projections -> timm's one `qkv` Linear.
    for (index, kind), parts in sorted(qkv.items()):
        if any(part is None for part in parts):
            raise ValueError(f"Block {index}: the query, key and value {kind}s are not all there.")
        renamed[f"blocks.{index}.attn.qkv.{kind}"] = np.concatenate(parts)
    return renamed


def config_image_size(config):
    """The `(height, width)` a transformers ViT config was built for (transformers' default: 224)."""
    image_size = config.get("image_size", 224)
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def _spec(config, arrays):
    """The `SourceViT` of a transformers ViT config, after checking its fields."""
    for field, value in _REQUIRED_CONFIG.items():
        if config.get(field, value) != value:
            raise ValueError(
                f"Unsupported transformers config: {field}={config.get(field)!r} (needs {value!r})."
            )
    if config.get("use_mask_token"):  # the weights' mask token is refused by name in `_timm_names`
        raise ValueError("Unsupported transformers config: use_mask_token=True.")
    image_size = config_image_size(config)
    patch_size = config.get("patch_size", 16)
    if not isinstance(patch_size, int):
        patch_size = tuple(patch_size)
        if patch_size[0] != patch_size[1]:
            raise ValueError(f"Unsupported transformers config: non-square patch_size={patch_size}.")
        patch_size = patch_size[0]
    num_classes = int(arrays["head.weight"].shape[0]) if "head.weight" in arrays else None
    return SourceViT(
        image_size=image_size,
        patch_size=int(patch_size),
        width=int(config.get("hidden_size", 768)),
        depth=int(config.get("num_hidden_layers", 12)),
        num_heads=int(config.get("num_attention_heads", 12)),
        mlp_dim=int(config.get("intermediate_size", 3072)),
        num_classes=num_classes,
        channels=int(config.get("num_channels", 3)),
        layer_norm_epsilon=float(config.get("layer_norm_eps", 1e-12)),
    )
