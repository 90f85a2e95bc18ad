"""`from_timm`: a timm `VisionTransformer` (ViT, DeiT, DeiT distilled) -> a keras_vit `ViT`.

Two ways in, one conversion. A timm model is read into its architecture
(the arguments of timm's `VisionTransformer`) and its state dict; a bare
state dict comes with its architecture written out (`architecture=`, no timm
or PyTorch needed). `_convert` checks the architecture against what
keras_vit's layers compute and the state dict against the architecture
(every name, no more and no less), then builds the model.
"""

from __future__ import annotations

import math

import numpy as np

from keras_vit.convert._mapping import SourceViT, build_converted_vit, pixel_statistics

# The timm modules a supported model may hold; any other module (an attention pool, SwiGLU, RMSNorm, ...)
# computes something keras_vit's layers do not, and is refused by name.
_SUPPORTED_MODULES = {
    "VisionTransformer",
    "VisionTransformerDistilled",
    "PatchEmbed",
    "Conv2d",
    "Identity",
    "Dropout",
    "DropPath",
    "Block",
    "Attention",
    "LayerScale",
    "Mlp",
    "Linear",
    "LayerNorm",
    "GELU",
    "Sequential",
    "ModuleList",
}

# The architecture arguments `from_timm` reads, with timm's defaults: timm's `VisionTransformer` arguments, and
# two of keras_vit's: `distilled` (timm's `VisionTransformerDistilled` class) and `layer_norm_eps` (the
# epsilon of timm's `norm_layer`, 1e-6 in timm's ViTs and DeiTs).
ARCHITECTURE_DEFAULTS = {
    "img_size": 224,
    "patch_size": 16,
    "in_chans": 3,
    "num_classes": 1000,
    "global_pool": "token",
    "embed_dim": 768,
    "depth": 12,
    "num_heads": 12,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "init_values": None,
    "class_token": True,
    "fc_norm": None,
    "no_embed_class": False,
    "distilled": False,
    "layer_norm_eps": 1e-6,
}
# timm arguments keras_vit's layers compute at timm's default value only: (that value, what another one adds).
# Checked in this order: the first one set otherwise is named.
_FIXED = {
    "reg_tokens": (0, "register tokens"),
    "pos_embed": ("learn", "no learned position embedding"),
    "pre_norm": (False, "a pre-norm (CLIP)"),
    "final_norm": (True, "no final norm"),
    "qk_norm": (False, "QK-norm (blocks.*.attn.q_norm, k_norm)"),
    "scale_attn_norm": (False, "a norm inside the attention (blocks.*.attn.norm)"),
    "scale_mlp_norm": (False, "a norm inside the MLP (blocks.*.mlp.norm)"),
    "proj_bias": (True, "projections without biases"),
    "pool_include_prefix": (False, "mean pooling over the class token too"),
    "dynamic_img_size": (False, "dynamic image sizes"),
    "dynamic_img_pad": (False, "dynamic image padding"),
    "embed_layer": (None, "another patch embedding"),
    "embed_norm_layer": (None, "a norm in the patch embedding"),
    "norm_layer": (None, "another norm than LayerNorm (give a LayerNorm's epsilon as layer_norm_eps)"),
    "act_layer": (None, "another activation than exact GELU"),
    "block_fn": (None, "another block"),
    "mlp_layer": (None, "another MLP"),
    "attn_layer": (None, "another attention"),
}
# Training settings: accepted in an architecture and not carried over.
_TRAINING_ARGUMENTS = {
    "drop_rate",
    "pos_drop_rate",
    "patch_drop_rate",
    "proj_drop_rate",
    "attn_drop_rate",
    "drop_path_rate",
    "weight_init",
    "fix_init",
}


def from_timm(
    source, image_size=None, mean=None, std=None, num_classes=None, model_name=None, architecture=None
):
    """Converts a timm Vision Transformer into a keras_vit `ViT` with the same function.

    Supported: timm's `VisionTransformer` with a class token and a
    `"token"` head, or mean pooling (`global_pool="avg"`, with or without a
    class token, with or without `fc_norm`), with or without `qkv_bias`,
    with LayerScale (`init_values`, folded into the weights), any patch size
    and resolution (`vit_*_patch16_224/384`, `vit_*_patch32_*`, ...); and
    DeiT (`deit_*`, the same class) and distilled DeiT
    (`VisionTransformerDistilled`, whose two heads' mean becomes one head
    over both tokens). Refused, by name: register tokens, `no_embed_class`
    with a class token, a pre-norm (CLIP), QK-norm, attention-pool / max
    heads, SwiGLU or other MLPs, RMSNorm or other norms, non-exact GELU,
    any other block type. Dropout and stochastic-depth rates are training
    settings and are not carried over.

    Args:
        source: a timm model (`timm.create_model(...)`); a timm model
            name, created with `pretrained=True` (needs the network or
            timm's cache); or a state dict (name -> tensor or array, e.g.
            `safetensors.numpy.load_file("model.safetensors")`), with its
            `architecture` (no timm needed) or its timm `model_name`.
        image_size: optional int or `(height, width)` to run at; defaults
            to the source's. Another size resamples the position embedding
            (`resize_vit`).
        mean, std: optional per-channel input statistics in 0..1 units;
            default: the model's `pretrained_cfg` mean and std. A state dict
            with `architecture` has none: pass them.
        num_classes: the class count of a new head, for a model made with
            `num_classes=0` (no classifier).
        model_name: the timm architecture of a state dict `source`, e.g.
            `"vit_base_patch16_224"`: the dict is loaded strictly into
            `timm.create_model(model_name)` (needs timm and PyTorch), whose
            default `pretrained_cfg` gives the mean and std.
        architecture: the architecture of a state dict `source`, as a dict
            of timm `VisionTransformer` arguments (`ARCHITECTURE_DEFAULTS`
            lists those read, with timm's defaults; e.g. `dict(img_size=224,
            patch_size=16, embed_dim=384, depth=12, num_heads=6)` for
            `vit_small_patch16_224`), plus `distilled=True` for a distilled
            DeiT and `layer_norm_eps` for a LayerNorm epsilon other than
            1e-6. Neither timm nor PyTorch is imported.

    Returns:
        A keras_vit `ViT` that takes 0..255 pixels, channels last, and
        normalizes them inside.

    Raises:
        ValueError: an unsupported model, module or setting (named), a
            state dict that does not fit its architecture (the names
            missing or left over), or missing input statistics.
    """
    if isinstance(source, dict) and architecture is not None:
        if model_name is not None:
            raise ValueError("Pass one of `model_name` and `architecture` for a state dict, not both.")
        arrays = {name: _as_array(value) for name, value in source.items()}
        mean, std = pixel_statistics(mean, std, None, None, "A timm state dict")
        return _convert(architecture, arrays, mean, std, image_size, num_classes)
    if architecture is not None:
        raise ValueError("`architecture` is for a state dict source only.")

    import timm  # lazily: the converters' libraries are an optional extra
    import torch

    if isinstance(source, str):
        source = timm.create_model(source, pretrained=True)
    elif isinstance(source, dict):
        source = _model_from_state_dict(source, model_name, timm, torch)
    elif model_name is not None:
        raise ValueError("`model_name` is for a state dict source only.")
    architecture = timm_architecture(source)
    config = getattr(source, "pretrained_cfg", None) or {}
    mean, std = pixel_statistics(
        mean, std, config.get("mean"), config.get("std"), f"The timm model {type(source).__name__}"
    )
    arrays = {name: _as_array(value) for name, value in source.state_dict().items()}
    return _convert(architecture, arrays, mean, std, image_size, num_classes)


def timm_architecture(model):
    """The architecture of a timm model, as `from_timm(state_dict, architecture=...)` takes it.

    Also checks what the architecture arguments cannot say: every module is
    of a supported type, the patch embedding is a square, non-overlapping
    convolution, every LayerNorm is affine with one shared epsilon, and the
    MLPs use exact GELU.

    Args:
        model: a timm `VisionTransformer` or `VisionTransformerDistilled`.

    Returns:
        A dict of timm `VisionTransformer` arguments (and `distilled`,
        `layer_norm_eps`).

    Raises:
        ValueError: an unsupported model class, module or layer (named).
    """
    import torch  # a timm model is at hand: PyTorch is installed

    identity = torch.nn.Identity
    kind = type(model).__name__
    if kind not in ("VisionTransformer", "VisionTransformerDistilled"):
        raise ValueError(f"from_timm converts timm VisionTransformer models; got a {kind}.")
    for name, module in model.named_modules():
        if type(module).__name__ not in _SUPPORTED_MODULES:
            raise ValueError(f"Unsupported timm module `{name}` ({type(module).__name__}).")

    def refuse_if(condition, what):
        if condition:
            raise ValueError(f"Unsupported timm setting: {what}.")

    embed = model.patch_embed
    conv = embed.proj
    p = conv.kernel_size[0]
    refuse_if(
        conv.kernel_size != (p, p)
        or conv.stride != (p, p)
        or conv.padding != (0, 0)
        or conv.dilation != (1, 1),
        f"a patch embedding that is not a square, non-overlapping {conv.kernel_size} convolution",
    )
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    refuse_if(
        any(not m.elementwise_affine or m.bias is None for m in norms), "a LayerNorm without weight/bias"
    )
    epsilons = sorted({float(m.eps) for m in norms})
    refuse_if(len(epsilons) != 1, f"LayerNorms with different epsilons {epsilons}")
    for m in model.modules():
        if isinstance(m, torch.nn.GELU):
            refuse_if(m.approximate != "none", f"GELU(approximate={m.approximate!r})")
    for i, block in enumerate(model.blocks):
        refuse_if(not isinstance(block.mlp.act, torch.nn.GELU), f"blocks.{i}.mlp.act ({type(block.mlp.act)})")
        refuse_if(not isinstance(block.mlp.fc1, torch.nn.Linear), f"blocks.{i}.mlp.fc1 (not a Linear)")
    refuse_if(not getattr(embed, "flatten", True), "a patch embedding without flatten")
    refuse_if(not isinstance(model.head, (torch.nn.Linear, identity)), f"head {type(model.head).__name__}")

    blocks = list(model.blocks)
    first = blocks[0]
    width = int(model.embed_dim)
    reg_token = getattr(model, "reg_token", None)
    return {
        "img_size": tuple(int(v) for v in embed.img_size),
        "patch_size": p,
        "in_chans": int(conv.in_channels),
        "num_classes": int(model.head.out_features) if isinstance(model.head, torch.nn.Linear) else 0,
        "global_pool": model.global_pool,
        "embed_dim": width,
        "depth": len(blocks),
        "num_heads": int(first.attn.num_heads),
        "mlp_ratio": _mlp_ratio(first.mlp.fc1.out_features, width),
        "qkv_bias": first.attn.qkv.bias is not None,
        # LayerScale's value is in the state dict (`ls1.gamma`): only whether it is there matters.
        "init_values": None if isinstance(first.ls1, identity) else getattr(first.ls1, "init_values", 1.0),
        "class_token": model.cls_token is not None,
        "fc_norm": not isinstance(model.fc_norm, identity),
        "no_embed_class": bool(getattr(model, "no_embed_class", False)),
        "distilled": kind == "VisionTransformerDistilled",
        "layer_norm_eps": epsilons[0] if epsilons else ARCHITECTURE_DEFAULTS["layer_norm_eps"],
        "reg_tokens": 0 if reg_token is None else int(reg_token.shape[1]),
        "pos_embed": "learn" if model.pos_embed is not None else "none",
        "pre_norm": not isinstance(model.norm_pre, identity),
        "final_norm": not (isinstance(model.norm, identity) and isinstance(model.fc_norm, identity)),
        "qk_norm": any(
            not isinstance(getattr(b.attn, part, identity()), identity)
            for b in blocks
            for part in ("q_norm", "k_norm")
        ),
        "scale_attn_norm": any(not isinstance(getattr(b.attn, "norm", identity()), identity) for b in blocks),
        "scale_mlp_norm": any(not isinstance(b.mlp.norm, identity) for b in blocks),
        "proj_bias": first.attn.proj.bias is not None,
        "pool_include_prefix": bool(getattr(model, "pool_include_prefix", False)),
        "dynamic_img_size": bool(getattr(model, "dynamic_img_size", False)),
        "embed_norm_layer": None if isinstance(embed.norm, identity) else type(embed.norm).__name__,
    }


def _convert(architecture, arrays, mean, std, image_size, num_classes):
    """The keras_vit `ViT` of a timm architecture and its state dict (numpy arrays)."""
    spec, names = _architecture_spec(architecture)
    missing, unexpected = sorted(names - set(arrays)), sorted(set(arrays) - names)
    if missing or unexpected:
        raise ValueError(
            f"The state dict does not fit the architecture: missing {missing}, unexpected {unexpected}."
        )
    return build_converted_vit(spec, arrays, mean, std, image_size=image_size, num_classes=num_classes)


def _architecture_spec(architecture):
    """The `SourceViT` of a timm architecture and the set of state-dict names it has.

    Raises:
        ValueError: an argument keras_vit does not know, or a setting its
            layers do not compute (named).
    """
    unknown = sorted(set(architecture) - set(ARCHITECTURE_DEFAULTS) - set(_FIXED) - _TRAINING_ARGUMENTS)
    if unknown:
        raise ValueError(f"Unknown timm VisionTransformer arguments in the architecture: {unknown}.")

    def refuse_if(condition, what):
        if condition:
            raise ValueError(f"Unsupported timm setting: {what}.")

    for name, (default, what) in _FIXED.items():
        value = architecture.get(name, default)
        refuse_if(value != default, f"{name}={value!r}: {what}")
    arch = {**ARCHITECTURE_DEFAULTS, **architecture}
    pool, has_class, distilled = arch["global_pool"], bool(arch["class_token"]), bool(arch["distilled"])
    refuse_if(pool not in ("token", "avg"), f"global_pool={pool!r}")
    refuse_if(pool == "token" and not has_class, "global_pool='token' without a class token")
    refuse_if(distilled and pool != "token", "a distilled model with global_pool='avg'")
    refuse_if(arch["no_embed_class"] and has_class, "no_embed_class=True with a class token")
    use_fc_norm = pool == "avg" if arch["fc_norm"] is None else bool(arch["fc_norm"])
    refuse_if(use_fc_norm and pool == "token", "fc_norm with a class-token head")
    patch = arch["patch_size"]
    patch = (patch, patch) if isinstance(patch, int) else tuple(patch)
    refuse_if(patch[0] != patch[1], f"patch_size={patch}: non-square patches")
    size = arch["img_size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    width, depth, heads = int(arch["embed_dim"]), int(arch["depth"]), int(arch["num_heads"])
    refuse_if(width % heads, f"embed_dim={width} not divisible by num_heads={heads}")
    mlp_dim = int(width * arch["mlp_ratio"])  # as timm's Block sizes its MLP
    classes = int(arch["num_classes"])
    spec = SourceViT(
        image_size=tuple(int(v) for v in size),
        patch_size=int(patch[0]),
        width=width,
        depth=depth,
        num_heads=heads,
        mlp_dim=mlp_dim,
        num_classes=classes or None,
        channels=int(arch["in_chans"]),
        class_token=has_class,
        distillation_token=distilled,
        pooling="token" if pool == "token" else "gap",
        head_norm="pooled" if use_fc_norm else "tokens",
        layer_norm_epsilon=float(arch["layer_norm_eps"]),
    )

    names = {"pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    names |= {"cls_token"} if has_class else set()
    names |= {"dist_token"} if distilled else set()
    parts = ["norm1", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
    for i in range(depth):
        names |= {f"blocks.{i}.{part}.{kind}" for part in parts for kind in ("weight", "bias")}
        names |= {f"blocks.{i}.attn.qkv.weight"}
        names |= {f"blocks.{i}.attn.qkv.bias"} if arch["qkv_bias"] else set()
        names |= {f"blocks.{i}.ls1.gamma", f"blocks.{i}.ls2.gamma"} if arch["init_values"] else set()
    norm = "fc_norm" if use_fc_norm else "norm"
    names |= {f"{norm}.weight", f"{norm}.bias"}
    heads_named = ("head", "head_dist") if distilled else ("head",)
    names |= {f"{head}.{kind}" for head in heads_named for kind in ("weight", "bias")} if classes else set()
    return spec, names


def _mlp_ratio(hidden, width):
    """The `mlp_ratio` timm's `int(width * mlp_ratio)` turns into `hidden` (`hidden / width` can fall short)."""
    ratio = hidden / width
    while int(width * ratio) < hidden:
        ratio = math.nextafter(ratio, math.inf)
    return ratio


def _as_array(value):
    """A float32 numpy array of a state-dict value (a torch tensor or an array)."""
    if hasattr(value, "detach"):  # a torch tensor, perhaps on a GPU or in bfloat16
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, dtype="float32")


def _model_from_state_dict(state_dict, model_name, timm, torch):
    """`timm.create_model(model_name)` with `state_dict` loaded strictly (every name used, none missing)."""
    if model_name is None:
        raise ValueError(
            "A timm state dict does not say its architecture: pass `architecture` (no timm needed) or "
            "`model_name`."
        )
    head = state_dict.get("head.weight")
    model = timm.create_model(model_name, pretrained=False, num_classes=0 if head is None else len(head))
    tensors = {name: torch.as_tensor(value) for name, value in state_dict.items()}
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:  # torch names the missing / unexpected keys and mismatched shapes
        raise ValueError(f"The state dict does not fit timm's {model_name!r}: {error}") from error
    return model.eval()
