"""Checkpoints named by a string, as the command lines take them, converted with what is needed to check them.

    timm:NAME          a timm model, created with its pretrained weights (timm, PyTorch, the network or timm's cache)
    hf:NAME            a Hugging Face Hub ViT, its safetensors, config and image-processor config downloaded
    keras_hub:PRESET   a keras-hub image classifier or backbone preset (a name: the network or its cache; or a folder)
    PATH               a Hugging Face `.safetensors` file, or a folder holding `model.safetensors` (or the shards of
                       its `model.safetensors.index.json`) and its config

`load_source` returns the converted `ViT`, the source's own forward pass where it can run here (for the proof
that both compute the same logits) and the class names the source carries. `loading_error` is the one line the
command lines print when a source cannot be loaded.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from keras_vit.cli_utils import first_line
from keras_vit.convert._mapping import MissingStatisticsError as MissingStatisticsError  # for the callers
from keras_vit.convert.keras_hub import converter_statistics, from_keras_hub
from keras_vit.convert.timm import from_timm, timm_architecture
from keras_vit.convert.transformers import (
    _read_json,
    config_image_size,
    download_from_hub,
    from_transformers,
    weight_names,
)
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
            `(batch, height, width, 3)` at the model's size, preprocessed as
            the source preprocesses them (or, with statistics given over
            the source's, as the model normalizes them); None where the
            source cannot run here.
        no_reference: why `reference` is None (else None).
        class_names: the source's class names in logit order, or None.
        names_from: where `class_names` come from, in a few words.
        new_head: whether the model's head was made here (zero weights):
            the source has no classifier.
    """

    model: object
    reference: Optional[Callable[[np.ndarray], np.ndarray]] = None
    no_reference: Optional[str] = None
    class_names: Optional[tuple] = None
    names_from: Optional[str] = None
    new_head: bool = False


def load_source(spec, image_size=None, mean=None, std=None, num_classes=None, backbone_classes=None):
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
            without a classifier; a classifier must have this count (its
            head is kept).
        backbone_classes: where `num_classes` is None, the class count of
            the new, zero head a source without a classifier gets (a
            classifier keeps its own); None: such a source is refused.
            Fine-tuning gives one and replaces that head with the data's.

    Returns:
        A `ConvertedSource`.

    Raises:
        ValueError: a spec of no known kind, or a source the converters
            refuse (named); `MissingStatisticsError` where neither the source
            nor the caller gives the input mean and std.
        OSError: a path that cannot be read, or a download that failed.
        ImportError: the source's library is not installed (`pip install
            keras-vit[convert]`).
        Exception: another error of the source's library (`loading_error`
            words any of them in one line).
    """
    text = os.fspath(spec)
    check_path_exists(text)
    if not names_a_source(text):
        raise ValueError(f"{text!r} is not a checkpoint keras_vit converts: give {SOURCE_KINDS}")
    options = dict(
        image_size=image_size, mean=mean, std=std, num_classes=num_classes, backbone_classes=backbone_classes
    )
    if text.startswith("timm:"):
        return _from_timm(text.removeprefix("timm:"), options)
    if text.startswith("keras_hub:"):
        return _from_keras_hub(text.removeprefix("keras_hub:"), options)
    if text.startswith("hf:"):
        return _from_hugging_face_folder(download_from_hub(text.removeprefix("hf:")), options)
    return _from_hugging_face_folder(text, options)


def loading_error(spec, error):
    """The one line that says why the checkpoint `spec` could not be loaded (`load_source`, a `.keras` file):
    the rule every command line that takes a checkpoint follows.

    A missing library says how to install it; a bad file, a refused source
    or a failed download (`OSError`, `ValueError`) is its own message; any
    other error comes from the source's library (timm's unknown model, a
    truncated safetensors file) and is named with its type.
    """
    if isinstance(error, ImportError):
        return f"{first_line(error)}: pip install keras-vit[convert]"
    if isinstance(error, (OSError, ValueError)):
        return first_line(error)
    return f"cannot load {spec}: {first_line(error, with_type=True)}"


def check_path_exists(spec):
    """Raises `OSError` for a local path (no `timm:`, `hf:` or `keras_hub:` prefix) that does not exist, before
    its name is judged."""
    text = os.fspath(spec)
    if not text.startswith(_PREFIXES) and not os.path.exists(text):
        raise OSError(f"no such file or folder: {text}")


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


def _converter_options(options, has_classifier):
    """The converters' keyword arguments: a source without a classifier gets `num_classes`, else
    `backbone_classes`."""
    converter = {key: options[key] for key in ("image_size", "mean", "std", "num_classes")}
    if not has_classifier and converter["num_classes"] is None:
        converter["num_classes"] = options["backbone_classes"]
    return converter


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
    has_classifier = getattr(source, "num_classes", 0) != 0
    model = from_timm(source, **_converter_options(options, has_classifier))
    result = ConvertedSource(model, new_head=not has_classifier)
    if _resized(options, timm_architecture(source)["img_size"]):
        result.no_reference = _RESIZED
    elif not has_classifier:
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

    if not _keras_hub_classifier(preset):  # a backbone preset
        result = ConvertedSource(None, no_reference=_NEW_HEAD, new_head=True)
        converter = _converter_options(options, has_classifier=False)
        if converter["num_classes"] is None:
            raise ValueError(
                f"keras_hub:{preset} is a backbone preset (no trained classifier in it): give the class count "
                "of a new head (--num-classes N)"
            )
        backbone = keras_hub.models.Backbone.from_preset(preset, dtype="float32")
        if (
            converter["mean"] is None
            and converter["std"] is None
            and _keras_hub_file(preset, "image_converter.json")
        ):
            # The preset's own input statistics, as a classifier of it would have them.
            image_converter = keras_hub.layers.ImageConverter.from_preset(preset)
            converter["mean"], converter["std"] = converter_statistics(image_converter)
        result.model = from_keras_hub(backbone, **converter)
        return result
    classifier = keras_hub.models.ImageClassifier.from_preset(preset, dtype="float32")
    # --num-classes of the classifier's own count keeps its head; another count is refused (as for Hugging Face).
    model = from_keras_hub(classifier, **_converter_options(options, has_classifier=True))
    result = ConvertedSource(model)
    if _resized(options, classifier.backbone.image_shape[:2]):
        result.no_reference = _RESIZED
    else:
        # Called as a model, the classifier skips its preprocessor: it gets the pixels normalized as ours are.
        result.reference = lambda pixels: keras.ops.convert_to_numpy(
            classifier(_normalized(pixels, model), training=False)
        )
    return result


def _keras_hub_file(preset, name):
    """Whether the keras-hub preset holds the file `name` (a preset name's file is downloaded to find out)."""
    if Path(str(preset)).expanduser().is_dir():  # a local preset folder
        return (Path(str(preset)).expanduser() / name).is_file()
    try:  # keras-hub's own test for a named preset or handle, which its loaders use (not public API)
        from keras_hub.src.utils.preset_utils import check_file_exists
    except ImportError:
        raise ValueError(
            f"keras_hub:{preset}: this keras-hub has no preset_utils.check_file_exists to tell a classifier from a "
            "backbone; download the preset to a folder (keras_hub.models.Backbone.from_preset(...).save_to_preset) "
            "and give that folder"
        ) from None
    try:
        return check_file_exists(preset, name)
    except ValueError as error:
        if "Unknown preset identifier" in str(error):  # keras-hub's message lists every kind over 8 lines
            raise ValueError(
                f"keras_hub:{preset} is no keras-hub preset: give a built-in preset name, a kaggle:// or hf:// "
                "handle, or a local preset folder"
            ) from None
        raise


def _keras_hub_classifier(preset):
    """Whether the keras-hub preset is a trained classifier (its task config and weights), not a backbone."""
    return _keras_hub_file(preset, "task.json") and _keras_hub_file(preset, "task.weights.h5")


def _from_hugging_face_folder(path, options):
    has_classifier = any(name.removeprefix("vit.") == "classifier.weight" for name in weight_names(path))
    model = from_transformers(path, **_converter_options(options, has_classifier))
    folder = path if os.path.isdir(path) else os.path.dirname(path) or "."
    config = _read_json(os.path.join(folder, "config.json")) or {}
    result = ConvertedSource(model, new_head=not has_classifier)
    names = config.get("id2label") or {}
    generic = all(str(label) == f"LABEL_{index}" for index, label in names.items())
    if has_classifier and len(names) == int(model.output_shape[-1]) and not generic:
        result.class_names = unique_class_names(names[key] for key in sorted(names, key=int))
        result.names_from = "the config's id2label"
    if _resized(options, config_image_size(config)):
        result.no_reference = _RESIZED
    elif not has_classifier:
        result.no_reference = _NEW_HEAD
    elif not os.path.isdir(path) and os.path.basename(path) != "model.safetensors":
        result.no_reference = "transformers loads a folder's model.safetensors, not this file"
    else:
        # The source's own image processor where the model took its statistics (not --mean / --std).
        own = options["mean"] is None and os.path.exists(os.path.join(folder, "preprocessor_config.json"))
        result.reference = _transformers_reference(folder, model, own_preprocessing=own)
        if result.reference is None:
            result.no_reference = "PyTorch and transformers are not both installed here"
    return result


def _transformers_reference(folder, model, own_preprocessing):
    """The Hugging Face model's own forward pass, loaded on its first call; None without PyTorch.

    With `own_preprocessing`, the pixels go through the folder's own image
    processor (`preprocessor_config.json`, not resized), so the check covers
    the model's statistics too; else they are normalized as the model does.
    """
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
            # The PIL processor: the default one needs torchvision, and says so on every load without it.
            processor_class = (
                getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
            )
            loaded.append(processor_class.from_pretrained(folder) if own_preprocessing else None)
        source, processor = loaded
        if processor is None:
            inputs = _normalized_nchw(pixels, model)
        else:
            batch = list(np.asarray(pixels, "float32"))
            inputs = processor(batch, do_resize=False, return_tensors="np")["pixel_values"].astype("float32")
        with torch.no_grad():
            return source(pixel_values=torch.from_numpy(np.ascontiguousarray(inputs))).logits.numpy()

    return reference
