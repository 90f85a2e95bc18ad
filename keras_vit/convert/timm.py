"""`from_timm`: a timm `VisionTransformer` (ViT, DeiT, DeiT distilled) -> a keras_vit `ViT`."""

from __future__ import annotations

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


def from_timm(source, image_size=None, mean=None, std=None, num_classes=None, model_name=None):
    """Converts a timm Vision Transformer into a keras_vit `ViT` with the same function.

    Supported: timm's `VisionTransformer` with a class token and a
    `"token"` head, or mean pooling (`global_pool="avg"`, with or without a
    class token, with or without `fc_norm`), with or without `qkv_bias`,
    with LayerScale (`init_values`, folded into the weights), any patch size
    and resolution (`vit_*_patch16_224/384`, `vit_*_patch32_*`, ...); and
    DeiT (`deit_*`, the same class) and distilled DeiT
    (`VisionTransformerDistilled`, whose two heads' mean becomes one head
    over both tokens). Refused, by name: register tokens, `no_embed_class`,
    a pre-norm (CLIP), QK-norm, attention-pool / max heads, SwiGLU or other
    MLPs, RMSNorm or other norms, non-exact GELU, any other block type.
    Dropout and stochastic-depth rates are training settings and are not
    carried over.

    Args:
        source: a timm model (`timm.create_model(...)`); a timm model
            name, created with `pretrained=True` (needs the network or
            timm's cache); or a state dict (name -> tensor or array) of the
            model `model_name` names, loaded strictly into
            `timm.create_model(model_name)` (a state dict does not say the
            number of heads). For a checkpoint file, use
            `timm.create_model(name, checkpoint_path=path)`.
        image_size: optional int or `(height, width)` to run at; defaults
            to the source's. Another size resamples the position embedding
            (`resize_vit`).
        mean, std: optional per-channel input statistics in 0..1 units;
            default: the model's `pretrained_cfg` mean and std.
        num_classes: the class count of a new head, for a model made with
            `num_classes=0` (no classifier).
        model_name: the timm architecture of a state dict `source`, e.g.
            `"vit_base_patch16_224"`; its default `pretrained_cfg` gives the
            mean and std.

    Returns:
        A keras_vit `ViT` that takes 0..255 pixels, channels last, and
        normalizes them inside.

    Raises:
        ValueError: an unsupported model, module or setting (named), or
            missing input statistics.
    """
    import timm  # lazily: the converters' libraries are an optional extra
    import torch

    if isinstance(source, str):
        source = timm.create_model(source, pretrained=True)
    elif isinstance(source, dict):
        source = _model_from_state_dict(source, model_name, timm, torch)
    elif model_name is not None:
        raise ValueError("`model_name` is for a state dict source only.")
    spec = _timm_spec(source, torch)
    config = getattr(source, "pretrained_cfg", None) or {}
    mean, std = pixel_statistics(
        mean, std, config.get("mean"), config.get("std"), f"The timm model {type(source).__name__}"
    )
    arrays = {name: value.detach().cpu().float().numpy() for name, value in source.state_dict().items()}
    return build_converted_vit(spec, arrays, mean, std, image_size=image_size, num_classes=num_classes)


def _timm_spec(model, torch):
    """The `SourceViT` of a timm model, after checking that every part of it is supported."""
    kind = type(model).__name__
    if kind not in ("VisionTransformer", "VisionTransformerDistilled"):
        raise ValueError(f"from_timm converts timm VisionTransformer models; got a {kind}.")
    for name, module in model.named_modules():
        if type(module).__name__ not in _SUPPORTED_MODULES:
            raise ValueError(f"Unsupported timm module `{name}` ({type(module).__name__}).")

    def refuse_if(condition, what):
        if condition:
            raise ValueError(f"Unsupported timm setting: {what}.")

    distilled = kind == "VisionTransformerDistilled"
    refuse_if(getattr(model, "reg_token", None) is not None, "register tokens (reg_tokens > 0)")
    refuse_if(model.pos_embed is None, "no position embedding (pos_embed='none')")
    has_class = model.cls_token is not None
    refuse_if(getattr(model, "no_embed_class", False) and has_class, "no_embed_class=True")
    refuse_if(getattr(model, "attn_pool", None) is not None, "an attention-pool head (global_pool='map')")
    refuse_if(model.global_pool not in ("token", "avg"), f"global_pool={model.global_pool!r}")
    refuse_if(distilled and model.global_pool != "token", "a distilled model with global_pool='avg'")
    refuse_if(not isinstance(model.norm_pre, torch.nn.Identity), "a pre-norm (pre_norm=True)")

    embed = model.patch_embed
    refuse_if(not isinstance(embed.norm, torch.nn.Identity), "a norm in the patch embedding")
    conv = embed.proj
    p = conv.kernel_size[0]
    refuse_if(
        conv.kernel_size != (p, p)
        or conv.stride != (p, p)
        or conv.padding != (0, 0)
        or conv.dilation != (1, 1),
        f"a patch embedding that is not a square, non-overlapping {conv.kernel_size} convolution",
    )
    refuse_if(not getattr(embed, "flatten", True), "a patch embedding without flatten")

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
        attention = block.attn
        for part in ("q_norm", "k_norm", "norm"):
            refuse_if(
                not isinstance(getattr(attention, part, torch.nn.Identity()), torch.nn.Identity),
                f"blocks.{i}.attn.{part} (QK-norm / scale-norm)",
            )
        refuse_if(not isinstance(block.mlp.norm, torch.nn.Identity), f"blocks.{i}.mlp.norm")
        refuse_if(not isinstance(block.mlp.act, torch.nn.GELU), f"blocks.{i}.mlp.act ({type(block.mlp.act)})")
        refuse_if(not isinstance(block.mlp.fc1, torch.nn.Linear), f"blocks.{i}.mlp.fc1 (not a Linear)")

    use_fc_norm = not isinstance(model.fc_norm, torch.nn.Identity)
    use_norm = not isinstance(model.norm, torch.nn.Identity)
    refuse_if(use_fc_norm == use_norm, "a model with both or neither of `norm` and `fc_norm`")
    refuse_if(use_fc_norm and model.global_pool == "token", "fc_norm with a class-token head")
    has_head = isinstance(model.head, torch.nn.Linear)
    refuse_if(not has_head and not isinstance(model.head, torch.nn.Identity), f"head {type(model.head)}")
    if distilled:
        refuse_if(
            isinstance(model.head_dist, torch.nn.Linear) != has_head, "one of `head` and `head_dist` only"
        )
    first = model.blocks[0]
    return SourceViT(
        image_size=tuple(int(v) for v in embed.img_size),
        patch_size=p,
        width=int(model.embed_dim),
        depth=len(model.blocks),
        num_heads=int(first.attn.num_heads),
        mlp_dim=int(first.mlp.fc1.out_features),
        num_classes=int(model.head.out_features) if has_head else None,
        channels=int(conv.in_channels),
        class_token=has_class,
        distillation_token=distilled,
        pooling="token" if model.global_pool == "token" else "gap",
        head_norm="pooled" if use_fc_norm else "tokens",
        layer_norm_epsilon=epsilons[0],
    )


def _model_from_state_dict(state_dict, model_name, timm, torch):
    """`timm.create_model(model_name)` with `state_dict` loaded strictly (every name used, none missing)."""
    if model_name is None:
        raise ValueError("A timm state dict does not say its architecture: pass `model_name`.")
    head = state_dict.get("head.weight")
    model = timm.create_model(model_name, pretrained=False, num_classes=0 if head is None else len(head))
    tensors = {name: torch.as_tensor(value) for name, value in state_dict.items()}
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:  # torch names the missing / unexpected keys and mismatched shapes
        raise ValueError(f"The state dict does not fit timm's {model_name!r}: {error}") from error
    return model.eval()
