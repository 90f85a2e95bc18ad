"""Checkpoints named by a string, as the command lines take them, converted with what is needed to check them.

    timm:NAME          a timm model, created with its pretrained weights (timm, PyTorch, the network or timm's cache)
    hf:NAME            a Hugging Face Hub ViT, its safetensors, config and image-processor config downloaded
    keras_hub:PRESET   a keras-hub image classifier preset (a name: the network or its cache; or a local folder)
    PATH               a Hugging Face `.safetensors` file, or a folder holding `model.safetensors` and its config

`load_source` returns the converted `ViT`, the source's own forward pass where it can run here (for the proof
that both compute the same logits) and the class names the source carries.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

import numpy as np

from keras_vit.convert.keras_hub import from_keras_hub
from keras_vit.convert.timm import from_timm, timm_architecture
from keras_vit.convert.transformers import _read_json, config_image_size, download_from_hub, from_transformers
from keras_vit.layers import pair

SOURCE_KINDS = "timm:NAME, hf:NAME, keras_hub:PRESET, a .safetensors file or a Hugging Face folder"
_PREFIXES = ("timm:", "hf:", "keras_hub:")
# Why a converted model is not compared with its source.
_RESIZED = "--image-size resamples the position embedding: no source at that size"
_NEW_HEAD = "a new head was made (--num-classes): the source has no logits to compare"


@dataclasses.dataclass
class ConvertedSource:
    """A checkpoint converted by `load_source`.

    Attributes:
        model: the keras_vit `ViT` (0..255 pixels in, logits out).
        reference: the source's own logits for a batch of 0..255 pixels
            `(batch, height, width, 3)` at the model's size, normalized as the
            model normalizes them; None where the source cannot run here.
        no_reference: why `reference` is None (else None).
        class_names: the source's class names in logit order, or None.
        names_from: where `class_names` come from, in a few words.
    """

    model: object
    reference: Optional[Callable[[np.ndarray], np.ndarray]] = None
    no_reference: Optional[str] = None
    class_names: Optional[tuple] = None
    names_from: Optional[str] = None


def load_source(spec, image_size=None, mean=None, std=None, num_classes=None):
    """Converts the checkpoint `spec` names (see the module docstring).

    Args:
        spec: `timm:NAME`, `hf:NAME`, `keras_hub:PRESET`, or the path of a
            `.safetensors` file or of a Hugging Face folder.
        image_size: optional int: run the model at this size (at another
            size than the source's the position embedding is resampled: no
            source to compare with then).
        mean, std: optional per-channel statistics, 0..1 units, over the
            source's own.
        num_classes: the class count of a new, zero head, for a source
            without a classifier.

    Returns:
        A `ConvertedSource`.

    Raises:
        ValueError: a spec of no known kind, or a source the converters
            refuse (named).
        OSError: a path that cannot be read.
        ImportError: the source's library is not installed (`pip install
            keras-vit[convert]`).
    """
    text = os.fspath(spec)
    if not names_a_source(text):
        raise ValueError(f"{text!r} is not a checkpoint keras_vit converts: give {SOURCE_KINDS}")
    options = dict(image_size=image_size, mean=mean, std=std, num_classes=num_classes)
    if text.startswith("timm:"):
        return _from_timm(text.removeprefix("timm:"), options)
    if text.startswith("keras_hub:"):
        return _from_keras_hub(text.removeprefix("keras_hub:"), options)
    if text.startswith("hf:"):
        return _from_hugging_face_folder(download_from_hub(text.removeprefix("hf:")), options)
    if not os.path.exists(text):
        raise OSError(f"no such file: {text}")
    return _from_hugging_face_folder(text, options)


def names_a_source(spec):
    """Whether `spec` has the form of a checkpoint `load_source` converts (not whether it exists)."""
    text = os.fspath(spec)
    folder = os.path.isdir(text) or text.endswith(("/", os.sep))
    return text.startswith(_PREFIXES) or text.endswith(".safetensors") or folder


def unique_class_names(names):
    """`names` with each name given more than once followed by its index, e.g. ImageNet's two classes called
    "crane" (the bird and the machine) become "crane (134)" and "crane (517)": a labels file names each class
    once (`keras_vit.labels.check_class_names` refuses what is still not unique)."""
    names = [str(name).strip() for name in names]
    repeated = {name for name in names if names.count(name) > 1}
    return tuple(f"{name} ({index})" if name in repeated else name for index, name in enumerate(names))


def _resized(options, source_size):
    """Whether `--image-size` asks for another size than the source's: only then is the model unlike it."""
    size = options["image_size"]
    return size is not None and pair(size, "image_size") != pair(tuple(source_size), "the source's size")


def _normalized(pixels, model):
    """`pixels` (0..255) as the model normalizes them: `(pixels - mean) / std`, channels last, float32."""
    return (
        (np.asarray(pixels, "float32") - np.asarray(model.mean, "float32")) / np.asarray(model.std, "float32")
    ).astype("float32")


def _normalized_nchw(pixels, model):
    """`_normalized`, channels first, as PyTorch models take it."""
    return np.ascontiguousarray(_normalized(pixels, model).transpose(0, 3, 1, 2))


def _from_timm(name, options):
    import timm  # lazily: an optional extra
    import torch

    source = timm.create_model(name, pretrained=True).eval()
    model = from_timm(source, **options)
    result = ConvertedSource(model)
    if _resized(options, timm_architecture(source)["img_size"]):
        result.no_reference = _RESIZED
    elif getattr(source, "num_classes", 0) == 0:
        result.no_reference = "the timm model has no classifier"
    else:

        def reference(pixels):
            with torch.no_grad():
                return source(torch.from_numpy(_normalized_nchw(pixels, model))).numpy()

        result.reference = reference
    result.class_names = _timm_imagenet_names(source)
    if result.class_names is not None:
        result.names_from = "timm's ImageNet class descriptions"
    return result


def _timm_imagenet_names(source):
    """The ImageNet class descriptions of a timm model trained on an ImageNet label set, else None."""
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset
    except ImportError:  # an older timm: no class names
        return None
    subset = infer_imagenet_subset(source)
    return None if subset is None else unique_class_names(ImageNetInfo(subset).label_descriptions())


def _from_keras_hub(preset, options):
    import keras
    import keras_hub  # lazily: an optional extra

    if options["num_classes"] is not None:  # a backbone preset, for a new head
        backbone = keras_hub.models.Backbone.from_preset(preset, dtype="float32")
        result = ConvertedSource(from_keras_hub(backbone, **options))
        result.no_reference = _NEW_HEAD
        return result
    classifier = keras_hub.models.ImageClassifier.from_preset(preset, dtype="float32")
    model = from_keras_hub(classifier, **options)
    result = ConvertedSource(model)
    if _resized(options, classifier.backbone.image_shape[:2]):
        result.no_reference = _RESIZED
    else:
        # Called as a model, the classifier skips its preprocessor: it gets the pixels normalized as ours are.
        result.reference = lambda pixels: keras.ops.convert_to_numpy(
            classifier(_normalized(pixels, model), training=False)
        )
    return result


def _from_hugging_face_folder(path, options):
    model = from_transformers(path, **options)
    folder = path if os.path.isdir(path) else os.path.dirname(path) or "."
    config = _read_json(os.path.join(folder, "config.json")) or {}
    result = ConvertedSource(model)
    # Converted without --num-classes, the weights had a head; with it, only a classifier's own count keeps the
    # head, which its config's architectures say ("architectures" is null in a config from ViTConfig alone).
    architectures = config.get("architectures") or ()
    classifier = options["num_classes"] is None or "ViTForImageClassification" in architectures
    names = config.get("id2label") or {}
    generic = all(str(label) == f"LABEL_{index}" for index, label in names.items())
    if classifier and len(names) == int(model.output_shape[-1]) and not generic:
        result.class_names = unique_class_names(names[key] for key in sorted(names, key=int))
        result.names_from = "the config's id2label"
    if _resized(options, config_image_size(config)):
        result.no_reference = _RESIZED
    elif not classifier:
        result.no_reference = _NEW_HEAD
    elif not os.path.isdir(path) and os.path.basename(path) != "model.safetensors":
        result.no_reference = "transformers loads a folder's model.safetensors, not this file"
    else:
        result.reference = _transformers_reference(folder, model)
        if result.reference is None:
            result.no_reference = "PyTorch and transformers are not both installed here"
    return result


def _transformers_reference(folder, model):
    """The Hugging Face model's own forward pass, loaded on its first call; None without PyTorch."""
    try:
        import torch
        import transformers
    except ImportError:
        return None
    loaded = []

    def reference(pixels):
        if not loaded:
            # float32 whatever the file holds, as the conversion computes (transformers 5 keeps a file's dtype).
            loaded.append(transformers.ViTForImageClassification.from_pretrained(folder).float().eval())
        with torch.no_grad():
            return loaded[0](pixel_values=torch.from_numpy(_normalized_nchw(pixels, model))).logits.numpy()

    return reference
