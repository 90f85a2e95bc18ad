"""`from_keras_hub`: a keras-hub `ViTBackbone` or `ViTImageClassifier` -> a keras_vit `ViT`."""

from __future__ import annotations

import keras
import numpy as np

from keras_vit.convert._mapping import SourceViT, build_converted_vit, pixel_statistics


def from_keras_hub(source, image_size=None, mean=None, std=None, num_classes=None):
    """Converts a keras-hub ViT into a keras_vit `ViT` with the same function.

    Supported: `keras_hub.models.ViTBackbone` (pass `num_classes` for a new,
    zero head) and `keras_hub.models.ViTImageClassifier` with a class-token
    head (`pooling="token"`) or, for a backbone without a class token, a
    mean-pooled one; with or without the attention, MLP and patch biases.
    Refused, by name: the classifier's `intermediate_dim` (a tanh
    pre-logits layer), an output `activation`, and `pooling="gap"` over a
    class token (keras-hub averages it with the patches).

    Args:
        source: a `ViTBackbone` or a `ViTImageClassifier`.
        image_size: optional int or `(height, width)` to run at; default:
            the backbone's. Another size resamples the position embedding.
        mean, std: optional per-channel input statistics in 0..1 units;
            default: the classifier's image converter's (its `scale` and
            `offset`), required for a bare backbone.
        num_classes: the class count of a new head, for a backbone.

    Returns:
        A keras_vit `ViT` that takes 0..255 pixels, channels last.

    Raises:
        ValueError: an unsupported source or setting (named), or missing
            input statistics.
    """
    import keras_hub  # lazily: an optional extra

    classifier = None
    if isinstance(source, keras_hub.models.ViTImageClassifier):
        classifier, backbone = source, source.backbone
    elif isinstance(source, keras_hub.models.ViTBackbone):
        backbone = source
    else:
        raise ValueError(f"from_keras_hub converts a ViTBackbone or ViTImageClassifier; got {type(source)}.")
    converter = getattr(getattr(classifier, "preprocessor", None), "image_converter", None)
    source_mean, source_std = converter_statistics(converter)
    mean, std = pixel_statistics(mean, std, source_mean, source_std, f"The keras-hub {type(source).__name__}")
    arrays, used = _timm_arrays(backbone)
    pooling = "token"
    if classifier is not None:
        for field, value in (("intermediate_dim", None), ("activation", None)):
            if getattr(classifier, field) != value:
                raise ValueError(f"Unsupported keras-hub classifier: {field}={getattr(classifier, field)!r}.")
        pooling = classifier.pooling
        if pooling not in ("token", "gap") or (pooling == "gap" and backbone.use_class_token):
            raise ValueError(
                f"Unsupported keras-hub classifier: pooling={pooling!r} with "
                f"use_class_token={backbone.use_class_token}."
            )
        head = classifier.output_dense
        arrays["head.weight"] = keras.ops.convert_to_numpy(head.kernel).T
        arrays["head.bias"] = keras.ops.convert_to_numpy(head.bias)
        used.update(id(v) for v in head.weights)
    unused = [
        v.path for v in (classifier if classifier is not None else backbone).weights if id(v) not in used
    ]
    if unused:
        raise ValueError(f"The converter would drop these keras-hub weights: {unused}.")
    height, width = (backbone.image_shape[0], backbone.image_shape[1])
    if backbone.data_format != "channels_last":
        raise ValueError(f"Unsupported keras-hub backbone: data_format={backbone.data_format!r}.")
    patch = backbone.patch_size
    if patch[0] != patch[1]:
        raise ValueError(f"Unsupported keras-hub backbone: non-square patch_size={patch}.")
    spec = SourceViT(
        image_size=(height, width),
        patch_size=int(patch[0]),
        width=int(backbone.hidden_dim),
        depth=int(backbone.num_layers),
        num_heads=int(backbone.num_heads),
        mlp_dim=int(backbone.mlp_dim),
        num_classes=int(classifier.num_classes) if classifier is not None else None,
        channels=int(backbone.image_shape[2]),
        class_token=bool(backbone.use_class_token),
        pooling=pooling,
        layer_norm_epsilon=float(backbone.layer_norm_epsilon),
    )
    return build_converted_vit(spec, arrays, mean, std, image_size=image_size, num_classes=num_classes)


def converter_statistics(converter):
    """A keras-hub image converter's `(mean, std)` in 0..1 units, or `(None, None)` (no converter or scale).

    keras-hub's converter computes `pixels * scale + offset` on 0..255
    pixels, so `std = 1 / (255 * scale)` and `mean = -offset / (255 * scale)`.
    """
    if converter is None or getattr(converter, "scale", None) is None:
        return None, None
    scale = np.ravel(np.asarray(converter.scale, "float64")) * np.ones(3)
    offset = np.ravel(np.asarray(converter.offset if converter.offset is not None else 0.0, "float64"))
    offset = offset * np.ones(3)
    return tuple(-offset / (255.0 * scale)), tuple(1.0 / (255.0 * scale))


def _timm_arrays(backbone):
    """`(timm-named arrays, ids of the variables read)` of a keras-hub ViTBackbone."""
    used = set()

    def read(variable):
        used.add(id(variable))
        return np.asarray(keras.ops.convert_to_numpy(variable))

    arrays = {}
    embedding = backbone.get_layer("vit_patching_and_embedding")
    d = int(backbone.hidden_dim)
    conv = embedding.patch_embedding
    arrays["patch_embed.proj.weight"] = read(conv.kernel).transpose(
        3, 2, 0, 1
    )  # (p, p, c, d) -> (d, c, p, p)
    if conv.use_bias:
        arrays["patch_embed.proj.bias"] = read(conv.bias)
    if backbone.use_class_token:
        arrays["cls_token"] = read(embedding.class_token).reshape(1, 1, d)
    arrays["pos_embed"] = read(embedding.position_embedding.embeddings)[None]
    encoder = backbone.get_layer("vit_encoder")
    for i, block in enumerate(encoder.encoder_layers):
        prefix = f"blocks.{i}."
        for source, target in ((block.layer_norm_1, "norm1"), (block.layer_norm_2, "norm2")):
            arrays[prefix + target + ".weight"] = read(source.gamma)
            arrays[prefix + target + ".bias"] = read(source.beta)
        mha = block.mha
        dense = (mha.query_dense, mha.key_dense, mha.value_dense)
        # EinsumDense (dim, heads, head_dim) -> torch Linear rows (heads * head_dim, dim).
        arrays[prefix + "attn.qkv.weight"] = np.concatenate([read(p.kernel).reshape(d, d).T for p in dense])
        if block.use_mha_bias:
            arrays[prefix + "attn.qkv.bias"] = np.concatenate([read(p.bias).reshape(d) for p in dense])
            arrays[prefix + "attn.proj.bias"] = read(mha.output_dense.bias)
        arrays[prefix + "attn.proj.weight"] = read(mha.output_dense.kernel).reshape(d, d).T
        for source, target in ((block.mlp.dense_1, "mlp.fc1"), (block.mlp.dense_2, "mlp.fc2")):
            arrays[prefix + target + ".weight"] = read(source.kernel).T
            if source.use_bias:
                arrays[prefix + target + ".bias"] = read(source.bias)
    arrays["norm.weight"] = read(encoder.layer_norm.gamma)
    arrays["norm.bias"] = read(encoder.layer_norm.beta)
    return arrays, used
