"""Training on several devices with Keras' own distribution API (`keras.distribution`, the JAX backend).

distribution(kind, mesh_shape)   None, `DataParallel` over every device, or `ModelParallel` on a 2-D mesh
vit_layout_map(mesh)             where a ViT's attention and MLP kernels are split over the mesh's `model` axis
parse_mesh("2x4")                (data, model) axis sizes
mirrored_strategy()              TensorFlow's data parallel: `tf.distribute.MirroredStrategy` over local devices
check_model_fits_mesh(...)       a ViT's heads and MLP units divide over the model axis (`distribution(model=)`)

`keras.distribution.set_distribution(distribution(...))` before the model is
built: the variables are created with their layouts, `fit` splits each global
batch over the `batch` axis, and `model.save` writes an ordinary single-device
`.keras` file. A job of several processes (hosts): `keras_vit.training.processes`.

Keras is imported by the functions that use it, so that the flags' vocabulary
(`DISTRIBUTE_KINDS`, `parse_mesh`) imports without it.
"""

from __future__ import annotations

DISTRIBUTE_KINDS = ("none", "data", "model")

# Megatron-style splits over the `model` axis: query/key/value and the MLP's first kernel by their output (heads,
# hidden units), the attention output and the MLP's second kernel by their input, so each block needs one
# all-reduce after the attention and one after the MLP. Keys are regexes that must match all of `variable.path`
# (`re.fullmatch`), e.g. `block_0/attention/query/kernel`.
_VIT_LAYOUTS = {
    r".*/attention/(query|key|value)/kernel": (None, "model", None),  # (width, heads, head size)
    r".*/attention/(query|key|value)/bias": ("model", None),  # (heads, head size)
    r".*/attention/attention_output/kernel": ("model", None, None),  # (heads, head size, width)
    r".*/mlp_hidden/kernel": (None, "model"),  # (width, hidden)
    r".*/mlp_hidden/bias": ("model",),
    r".*/mlp_output/kernel": ("model", None),  # (hidden, width)
}


def parse_mesh(text):
    """`"DxM"` -> `(D, M)`: the mesh's data-parallel and model-parallel axis sizes.

    Raises:
        ValueError: not two positive integers joined by `x`.
    """
    parts = str(text).lower().split("x")
    try:
        sizes = tuple(int(part) for part in parts)
    except ValueError:
        sizes = ()
    if len(sizes) != 2 or min(sizes) < 1:
        raise ValueError(f"a mesh is DATAxMODEL, e.g. 2x2, got {text!r}")
    return sizes


def vit_layout_map(mesh):
    """The `keras.distribution.LayoutMap` that splits a ViT's attention heads and MLP units over `model`.

    Args:
        mesh: a `keras.distribution.DeviceMesh` with axes `("batch", "model")`.

    Returns:
        The layout map; variables it does not name (norms, embeddings, the
        head) are replicated.
    """
    import keras

    layout_map = keras.distribution.LayoutMap(mesh)
    for pattern, axes in _VIT_LAYOUTS.items():
        layout_map[pattern] = axes
    return layout_map


def distribution(kind, mesh_shape=None, devices=None, model=None):
    """The `keras.distribution` of `--distribute KIND`.

    Example:

    ```python
    keras.distribution.set_distribution(distribution("model", (4, 2), model="vit_tiny"))
    model = keras_vit.build_vit("vit_tiny")  # built after: its variables get their layouts
    ```

    Args:
        kind: `"none"` (None: one device), `"data"` (every device holds the
            whole model and a share of each batch) or `"model"` (a 2-D mesh:
            the batch split over its first axis, attention heads and MLP units
            over its second).
        mesh_shape: `(data, model)` axis sizes for `"model"`; default: 2 on
            the model axis, the other devices on the data axis.
        devices: the devices to use (default: every device
            `keras.distribution.list_devices()` sees).
        model: optional, the ViT that will be built under the distribution,
            as `check_model_fits_mesh` takes it (a preset name, a dict of
            `build_vit` arguments, or a ViT). For `"model"`, it is checked
            against the mesh here: without it, a model axis that does not
            divide the heads or the MLP width fails only when the model is
            built, with JAX's `IndivisibleError`.

    Returns:
        A `keras.distribution.Distribution`, or None for `"none"`.

    Raises:
        ValueError: another backend than JAX, a mesh that does not use the
            devices there are, an unknown kind, or (for `"model"`) a `model`
            whose heads or MLP width the model axis does not divide.
    """
    if kind == "none":
        return None
    import keras

    from keras_vit.training.processes import process_share

    if kind not in DISTRIBUTE_KINDS:
        raise ValueError(f"unknown distribution {kind!r}; choose one of {', '.join(DISTRIBUTE_KINDS)}")
    if keras.backend.backend() != "jax":
        raise ValueError(
            f"--distribute {kind} runs on Keras' distribution API, which this package uses on the JAX backend "
            f"only (KERAS_BACKEND=jax); this process runs {keras.backend.backend()}"
        )
    devices = list(devices or keras.distribution.list_devices())
    # Several processes: each feeds its own share of every batch (`TrainingBatches(process_index=...)`), so
    # Keras must not shard the data again (its sharding takes tf.data pipelines only).
    own_shares = {"auto_shard_dataset": False} if process_share()[1] > 1 else {}
    if kind == "data":
        return keras.distribution.DataParallel(devices=devices, **own_shares)
    data, split = mesh_shape or (max(len(devices) // 2, 1), min(2, len(devices)))
    if data * split != len(devices):
        raise ValueError(f"a {data}x{split} mesh needs {data * split} devices; there are {len(devices)}")
    processes = process_share()[1]
    if processes > 1 and (len(devices) // processes) % split:
        # The mesh's rows are processes: a model axis inside each keeps every weight readable where it is saved.
        raise ValueError(
            f"with {processes} processes the model axis ({split} devices) must divide each process's "
            f"{len(devices) // processes} devices"
        )
    if model is not None:
        # Here, not at build time, where JAX's IndivisibleError names neither the argument nor the mesh.
        check_model_fits_mesh(model, (data, split))
    mesh = keras.distribution.DeviceMesh((data, split), ["batch", "model"], devices)
    return keras.distribution.ModelParallel(
        layout_map=vit_layout_map(mesh), batch_dim_name="batch", **own_shares
    )


def mirrored_strategy():
    """`--distribute data` under TensorFlow: a `tf.distribute.MirroredStrategy` over this machine's GPUs, or, without
    any, its logical CPU devices (`tf.config.set_logical_device_configuration`).

    Build, compile and fit the model inside `strategy.scope()`. Each device
    gets an equal share of every batch; the trainer's loss is scaled to the
    share (`ViTTrainer.compute_loss`), so the summed gradients are the global
    batch's. Each device draws its own augmentation for its share
    (`keras_vit.training.augment.ShareSeedGenerator`).

    Raises:
        ValueError: fewer than two devices.
    """
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        raise ValueError(
            f"--distribute data under TensorFlow mirrors the model over several devices; this process sees "
            f"{len(devices)} (JAX, KERAS_BACKEND=jax, splits a CPU's cores no better)"
        )
    return tf.distribute.MirroredStrategy([device.name for device in devices])


def check_model_fits_mesh(model, mesh_shape):
    """Raises ValueError where the `model` axis does not divide a ViT's heads and MLP units.

    `distribution("model", ..., model=...)` runs this check; call it yourself
    for a distribution made without `model`, before building the ViT under it.

    Args:
        model: the ViT: a preset name (`"vit_tiny"`), a dict of `build_vit`
            arguments (`vit_arguments(model)`, or e.g.
            `{"preset": "vit_cifar10", "num_heads": 12}`: the preset's
            values, then the `ViT` defaults, fill what it leaves out), or a
            built ViT.
        mesh_shape: `(data, model)` axis sizes.

    Raises:
        ValueError: the model axis does not divide `num_heads` or `mlp_dim`,
            or an unknown preset.
    """
    sizes = _heads_and_mlp(model)
    split = mesh_shape[1]
    for name in ("num_heads", "mlp_dim"):
        if sizes[name] % split:
            raise ValueError(f"the model axis ({split} devices) must divide {name} ({sizes[name]})")


def _heads_and_mlp(model):
    """`{"num_heads": ..., "mlp_dim": ...}` of `check_model_fits_mesh`'s `model`."""
    if isinstance(model, str):
        model = {"preset": model}
    if isinstance(model, dict):
        model = dict(model)
        if "num_heads" in model and "mlp_dim" in model:  # given in full (the command's case): no Keras import
            return {name: model[name] for name in ("num_heads", "mlp_dim")}
        from keras_vit.models.presets import get_preset
        from keras_vit.models.vit import VIT_ARGUMENTS

        preset = model.pop("preset", None)
        arguments = {**VIT_ARGUMENTS, **(get_preset(preset) if preset is not None else {}), **model}
        return {name: arguments[name] for name in ("num_heads", "mlp_dim")}
    from keras_vit.models.vit import vit_arguments

    return _heads_and_mlp(vit_arguments(model))
