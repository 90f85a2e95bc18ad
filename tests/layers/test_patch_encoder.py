"""keras_vit.layers.patch_encoder: class token, registers, positions (learned, sincos, resized)."""

import re

import keras
import numpy as np
import pytest

from keras_vit.layers import PatchEncoder, sincos_position_embedding

from .layer_checks import assert_round_trip, cases_for, check_case


@pytest.mark.parametrize("case", cases_for(PatchEncoder), ids=str)
def test_shared_layer_checks(case, tmp_path):
    check_case(case, tmp_path)


@pytest.mark.parametrize("position", ["learned", "sincos"])
@pytest.mark.parametrize("class_token", [True, False])
def test_patch_encoder(position, class_token):
    patches = np.random.default_rng(1).normal(size=(2, 6, 12)).astype("float32")
    layer = PatchEncoder(6, 16, grid_size=(2, 3), class_token=class_token, position_embedding=position)
    out = keras.ops.convert_to_numpy(layer(patches))
    assert out.shape == (2, 6 + class_token, 16)
    position_table = keras.ops.convert_to_numpy(layer.position)[0]
    if class_token:  # token 0 is the same learned vector for every image
        cls = keras.ops.convert_to_numpy(layer.cls)[0, 0]
        np.testing.assert_allclose(out[:, 0], np.broadcast_to(cls + position_table[0], (2, 16)), atol=1e-6)
    trainable = {w.name for w in layer.trainable_weights}
    assert ("position_embedding" in trainable) == (position == "learned")
    assert_round_trip(layer, patches)


@pytest.mark.parametrize("class_token", [True, False])
def test_patch_encoder_registers(class_token):
    """Registers sit after the class token, the same learned vectors for every image, without positions."""
    patches = np.random.default_rng(2).normal(size=(3, 6, 12)).astype("float32")
    layer = PatchEncoder(6, 16, grid_size=(2, 3), class_token=class_token, num_registers=2)
    out = keras.ops.convert_to_numpy(layer(patches))
    head = int(class_token)
    assert (
        out.shape == (3, head + 2 + 6, 16)
        and layer.num_tokens == head + 8
        and layer.num_prefix_tokens == head + 2
    )
    assert layer.position.shape == (1, 6 + head, 16)  # positions for the class token and the patches only
    registers = keras.ops.convert_to_numpy(layer.registers)[0]
    np.testing.assert_allclose(out[:, head : head + 2], np.broadcast_to(registers, (3, 2, 16)), atol=1e-6)
    # The patch tokens are what a register-free encoder with the same weights gives.
    plain = PatchEncoder(6, 16, grid_size=(2, 3), class_token=class_token)
    plain(patches)
    plain.set_weights([w for w in layer.get_weights() if w.shape != registers[None].shape])
    np.testing.assert_allclose(
        out[:, head + 2 :], keras.ops.convert_to_numpy(plain(patches))[:, head:], atol=1e-6
    )
    assert layer.get_config()["num_registers"] == 2
    assert_round_trip(layer, patches)
    with pytest.raises(ValueError, match="num_registers"):
        PatchEncoder(6, 16, grid_size=(2, 3), num_registers=-1)


def test_patch_encoder_patch_norm():
    """patch_norm layer-normalizes each patch vector before the projection: scaling one changes nothing."""
    patches = np.random.default_rng(5).normal(size=(2, 6, 12)).astype("float32")
    layer = PatchEncoder(6, 16, grid_size=(2, 3), patch_norm=True)
    out = keras.ops.convert_to_numpy(layer(patches))
    assert layer.get_config()["patch_norm"] is True
    assert {w.path.split("/", 1)[1] for w in layer.weights} >= {"patch_norm/gamma", "patch_norm/beta"}
    scaled = patches * np.array([3.0, 0.5, 7.0, 1.0, 2.0, 9.0], "float32")[None, :, None] + 4.0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(scaled)), out, atol=1e-4)
    assert not np.allclose(
        keras.ops.convert_to_numpy(PatchEncoder(6, 16, grid_size=(2, 3))(scaled))[:, 1:],
        out[:, 1:],
        atol=1e-2,
    )
    assert_round_trip(layer, patches)


def test_patch_encoder_class_token_with_a_dynamic_batch():
    """One class token per image whatever the batch size, in a model whose batch dimension is None."""
    inputs = keras.Input((6, 12))
    layer = PatchEncoder(6, 16, grid_size=(2, 3))
    model = keras.Model(inputs, layer(inputs))
    assert model.output_shape == (None, 7, 16)
    cls = keras.ops.convert_to_numpy(layer.cls)[0, 0] + keras.ops.convert_to_numpy(layer.position)[0, 0]
    for batch in (1, 5):
        patches = np.random.default_rng(batch).normal(size=(batch, 6, 12)).astype("float32")
        out = np.asarray(model.predict(patches, batch_size=batch, verbose=0))
        assert out.shape == (batch, 7, 16)
        np.testing.assert_allclose(out[:, 0], np.broadcast_to(cls, (batch, 16)), atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite conversion needs the TF backend")
def test_patch_encoder_converts_to_int8_tflite_without_float_ops(tmp_path):
    """The class token is copied per image by BROADCAST_TO (int8 kernel), not ZEROS_LIKE + ADD (float only).

    Converted alone with full-integer quantization, the layer has no op left
    in float32, and the file keeps a dynamic batch.
    """
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    inputs = keras.Input((6, 12))
    model = keras.Model(inputs, PatchEncoder(6, 16, grid_size=(2, 3), name="patch_encoder")(inputs))
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, 6, 12), tf.float32)],
    )
    archive.write_out(str(tmp_path / "sm"), verbose=False)
    calibration = np.random.default_rng(0).normal(size=(8, 6, 12)).astype("float32")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]  # fails on a float-only op
    interpreter = Interpreter(
        model_content=converter.convert(),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    tensors = {t["index"]: np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    names = {op["op_name"] for op in ops}
    assert "BROADCAST_TO" in names and "ZEROS_LIKE" not in names, names
    float_ops = {
        op["op_name"]
        for op in ops
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
        and any(tensors.get(i) == np.float32 for i in [*op["inputs"], *op["outputs"]])
    }
    assert not float_ops, float_ops
    patches = calibration[:3]
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, [3, 6, 12], strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, patches)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert out.shape == (3, 7, 16)
    np.testing.assert_allclose(out, np.asarray(model(patches)), atol=0.1)  # int8 steps of ~0.02


def test_patch_encoder_checks_sizes():
    with pytest.raises(ValueError, match="not a square"):
        PatchEncoder(6, 16)
    with pytest.raises(ValueError, match="built for 4 patches but got 6"):
        PatchEncoder(4, 16)(np.zeros((1, 6, 12), "float32"))


def test_position_embedding_resampling():
    layer = PatchEncoder(16, 8)
    layer(np.zeros((1, 16, 12), "float32"))
    same = layer.resampled_position_embedding((4, 4))
    np.testing.assert_allclose(same, keras.ops.convert_to_numpy(layer.position), atol=1e-6)
    bigger = layer.resampled_position_embedding((6, 8))
    assert bigger.shape == (1, 1 + 48, 8)
    np.testing.assert_allclose(bigger[0, 0], same[0, 0])  # class token kept
    # A constant embedding stays constant under resampling.
    layer.position.assign(np.ones((1, 17, 8), "float32"))
    np.testing.assert_allclose(layer.resampled_position_embedding((6, 8)), 1.0, atol=1e-5)


def test_sincos_table():
    table = sincos_position_embedding((4, 4), 16)
    assert table.shape == (16, 16)
    assert np.allclose(np.linalg.norm(table, axis=1), np.sqrt(8))  # 8 (sin, cos) pairs
    with pytest.raises(ValueError):
        sincos_position_embedding((4, 4), 10)


def sincos_reference(rows, cols, dim, temperature=10000.0):
    """The 2-D sine-cosine table from its formula, one token at a time: token `r * cols + c` is
    `[sin(c w), cos(c w), sin(r w), cos(r w)]` with `w_j = temperature ** (-j / (dim / 4))`."""
    quarter = dim // 4
    table = np.zeros((rows * cols, dim))
    for r in range(rows):
        for c in range(cols):
            for j in range(quarter):
                w = temperature ** (-j / quarter)
                token = table[r * cols + c]
                token[j], token[quarter + j] = np.sin(c * w), np.cos(c * w)
                token[2 * quarter + j], token[3 * quarter + j] = np.sin(r * w), np.cos(r * w)
    return table


@pytest.mark.parametrize(("grid", "dim", "temperature"), [((3, 5), 16, 10000.0), ((4, 2), 8, 100.0)])
def test_sincos_table_is_its_formula(grid, dim, temperature):
    """Columns (x) in the first half, rows (y) in the second, row-major tokens: on a non-square grid
    a swap of x and y, or of the token order, changes the table."""
    table = sincos_position_embedding(grid, dim, temperature=temperature)
    assert table.dtype == np.float32
    np.testing.assert_allclose(table, sincos_reference(*grid, dim, temperature), atol=1e-6)


def test_sincos_layer_uses_the_table_and_resamples_by_recomputing():
    layer = PatchEncoder(15, 16, grid_size=(3, 5), position_embedding="sincos")
    layer(np.zeros((1, 15, 12), "float32"))
    position = keras.ops.convert_to_numpy(layer.position)[0]
    np.testing.assert_allclose(position[0], 0.0)  # the class token's vector
    np.testing.assert_allclose(position[1:], sincos_reference(3, 5, 16), atol=1e-6)
    resampled = layer.resampled_position_embedding((2, 7))[0]
    np.testing.assert_allclose(resampled[0], 0.0)
    np.testing.assert_allclose(resampled[1:], sincos_reference(2, 7, 16), atol=1e-6)


def _cubic(x, a=-0.5):
    """Keys' cubic convolution kernel (a = -0.5: TensorFlow's, JAX's and PyTorch's antialiased bicubic)."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def bicubic_matrix(n, size):
    """`(size, n)` weights of timm's position-embedding resize along one axis (`F.interpolate(mode="bicubic",
    antialias=True)`): the cubic kernel at pixel centres, widened by the scale when shrinking, renormalized over
    the samples inside the grid."""
    scale = max(n / size, 1.0)
    centres = (np.arange(size) + 0.5) * n / size - 0.5
    weights = _cubic((np.arange(n)[None, :] - centres[:, None]) / scale)
    return weights / weights.sum(axis=1, keepdims=True)


def bicubic_reference(grid, size):
    """`grid` `(rows, cols, dim)` resized to `size`, separably, rows then columns; `(rows * cols, dim)`."""
    rows, cols = grid.shape[:2]
    resized = np.einsum("ir,jc,rcd->ijd", bicubic_matrix(rows, size[0]), bicubic_matrix(cols, size[1]), grid)
    return resized.reshape(size[0] * size[1], -1)


@pytest.mark.parametrize(("class_token", "num_registers"), [(True, 0), (False, 0), (True, 2), (False, 2)])
@pytest.mark.parametrize("size", [(6, 7), (5, 10), (3, 8)])
def test_resampled_position_embedding_is_timms_bicubic_on_a_non_square_grid(class_token, num_registers, size):
    """A 3x5 learned table with a known pattern, resized to a new grid: the patch vectors are timm's antialiased
    bicubic resize of the table laid out row-major (a transposed grid, a reversed token order or a bilinear
    resize fails), the class token's vector is kept, and registers (no positions) do not shift anything."""
    rows, cols, dim = 3, 5, 4
    layer = PatchEncoder(
        rows * cols, dim, grid_size=(rows, cols), class_token=class_token, num_registers=num_registers
    )
    layer(np.zeros((1, rows * cols, 6), "float32"))
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    grid = np.stack([r, c, 10 * r + c, np.random.default_rng(0).normal(size=(rows, cols))], -1)
    head = np.full((int(class_token), dim), -7.0)
    layer.position.assign(np.concatenate([head, grid.reshape(-1, dim)])[None].astype("float32"))

    resampled = layer.resampled_position_embedding(size)
    assert resampled.shape == (1, int(class_token) + size[0] * size[1], dim)
    assert resampled.dtype == np.float32
    patches = resampled[0, int(class_token) :]
    np.testing.assert_allclose(resampled[0, : int(class_token)], head)
    np.testing.assert_allclose(patches, bicubic_reference(grid, size), atol=1e-5)
    # At its own grid the table comes back as it is.
    np.testing.assert_allclose(
        layer.resampled_position_embedding((rows, cols)), keras.ops.convert_to_numpy(layer.position)
    )


def test_the_resize_reference_is_timms():
    """The NumPy reference above is PyTorch's `interpolate(mode="bicubic", antialias=True)`, the call of timm's
    `resample_abs_pos_embed`, both growing and shrinking a grid."""
    torch = pytest.importorskip("torch")
    grid = np.random.default_rng(1).normal(size=(6, 5, 3))
    for size in [(9, 7), (2, 3), (4, 8)]:
        theirs = torch.nn.functional.interpolate(
            torch.from_numpy(grid).permute(2, 0, 1)[None], size=size, mode="bicubic", antialias=True
        )
        theirs = theirs[0].permute(1, 2, 0).reshape(-1, 3).numpy()
        np.testing.assert_allclose(bicubic_reference(grid, size), theirs, atol=1e-6)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: PatchEncoder(4, 8, num_registers=-1), "num_registers must be >= 0, got -1."),
        (lambda: PatchEncoder(6, 8), "num_patches=6 is not a square: pass grid_size=(rows, cols)."),
        (lambda: PatchEncoder(6, 8, grid_size=(2, 4)), "grid_size=(2, 4) does not hold num_patches=6."),
        (
            lambda: PatchEncoder(4, 8, position_embedding="rope"),
            "position_embedding must be 'learned' or 'sincos', got 'rope'.",
        ),
        (
            lambda: PatchEncoder(4, 8).build((None, 6, 8)),
            "PatchEncoder was built for 4 patches but got 6 (input shape (None, 6, 8)).",
        ),
        (
            lambda: PatchEncoder(4, 8).build((None, 6, None)),
            "PatchEncoder was built for 4 patches but got 6 (input shape (None, 6, None)).",
        ),
        (
            lambda: PatchEncoder(6, 8, grid_size=(2, 3, 1)),
            "`grid_size` must be a positive int or a pair of them, got (2, 3, 1).",
        ),
        (
            lambda: PatchEncoder(4, 8).resampled_position_embedding((2, 0)),
            "`grid_size` must be a positive int or a pair of them, got (2, 0).",
        ),
        (
            lambda: PatchEncoder(4, 8, class_token=False, distillation_token=True),
            "distillation_token=True needs class_token=True.",
        ),
        (
            lambda: sincos_position_embedding((2, 2), 6),
            "sine-cosine position embedding needs a width divisible by 4, got 6.",
        ),
    ],
)
def test_patch_encoder_errors_say_what_is_wrong_in_one_line(make, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make()


def test_shrinking_the_position_grid_averages_with_the_antialiasing_filter():
    """4x4 -> 2x2: each new position is a filtered mean of the old ones around it, not two samples of them."""
    layer = PatchEncoder(16, 4, class_token=False)
    layer(np.zeros((1, 16, 6), "float32"))
    assert layer.get_config()["patch_norm"] is False and not hasattr(layer, "patch_norm_layer")
    stripes = np.array([0.0, 8.0, 1.0, 5.0])  # along the columns; rows constant
    table = np.broadcast_to(stripes[None, :, None], (4, 4, 4)).reshape(1, 16, 4)
    layer.position.assign(table.astype("float32"))
    shrunk = layer.resampled_position_embedding((2, 2))[0].reshape(2, 2, 4)
    np.testing.assert_allclose(shrunk[0, :, 0], bicubic_matrix(4, 2) @ stripes, atol=1e-5)
    np.testing.assert_allclose(shrunk[0], shrunk[1], atol=1e-5)  # constant along the rows
    with pytest.raises(ValueError, match="grid_size"):
        layer.resampled_position_embedding((2, 3, 4))


def numpy_tokens(layer, patches):
    """`PatchEncoder`'s output from its weights in NumPy: `[class, distillation, registers, patches]`,
    the class and distillation tokens and the projected patches plus their position vectors."""
    weight = {w.path.split("/", 1)[1]: keras.ops.convert_to_numpy(w) for w in layer.weights}
    projected = patches @ weight["projection/kernel"] + weight["projection/bias"]
    batch, _, dim = projected.shape
    names = ["class_token", "distillation_token"][: layer.num_positioned_prefix_tokens]
    head = [np.broadcast_to(weight[name], (batch, 1, dim)) for name in names]
    positioned = np.concatenate([*head, projected], axis=1) + weight["position_embedding"]
    registers = np.broadcast_to(
        weight.get("registers", np.zeros((1, 0, dim))), (batch, layer.num_registers, dim)
    )
    return np.concatenate([positioned[:, : len(head)], registers, positioned[:, len(head) :]], axis=1)


def test_distillation_token_sits_after_the_class_token_with_its_own_position():
    """DeiT's layout: [class, distillation, registers, patches]; the distillation token is a learned vector of
    its own (the same for every image) with the position vector at index 1, registers still have none."""
    patches = np.random.default_rng(7).normal(size=(3, 6, 12)).astype("float32")
    layer = PatchEncoder(6, 16, grid_size=(2, 3), distillation_token=True, num_registers=1)
    out = keras.ops.convert_to_numpy(layer(patches))
    assert out.shape == (3, 9, 16) == layer.compute_output_shape((3, 6, 12))
    assert (layer.num_positioned_prefix_tokens, layer.num_prefix_tokens, layer.num_tokens) == (2, 3, 9)
    assert layer.dist.shape == (1, 1, 16) and layer.position.shape == (1, 8, 16)
    cls, dist = (keras.ops.convert_to_numpy(w)[0, 0] for w in (layer.cls, layer.dist))
    position = keras.ops.convert_to_numpy(layer.position)[0]
    assert not np.allclose(cls, dist)
    np.testing.assert_allclose(out[:, 1], np.broadcast_to(dist + position[1], (3, 16)), atol=1e-6)
    np.testing.assert_allclose(out, numpy_tokens(layer, patches), atol=1e-5)
    assert layer.get_config()["distillation_token"] is True
    assert PatchEncoder(6, 16, grid_size=(2, 3)).get_config()["distillation_token"] is False
    assert_round_trip(layer, patches)


def test_distillation_token_with_sincos_positions_gets_a_zero_position_vector():
    layer = PatchEncoder(6, 8, grid_size=(2, 3), position_embedding="sincos", distillation_token=True)
    patches = np.random.default_rng(8).normal(size=(3, 6, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(patches))
    assert out.shape == (3, 8, 8) and layer.position.shape == (1, 8, 8) and not layer.position.trainable
    position = keras.ops.convert_to_numpy(layer.position)[0]
    np.testing.assert_allclose(position[:2], 0.0)
    np.testing.assert_allclose(position[2:], sincos_reference(2, 3, 8), atol=1e-6)
    np.testing.assert_allclose(out, numpy_tokens(layer, patches), atol=1e-5)


@pytest.mark.parametrize("position", ["learned", "sincos"])
def test_weights_are_named_shaped_and_initialized_as_vit_does(position):
    """Weight paths (what checkpoints and `.weights.h5` files key by), shapes, trainability, and the learned
    tokens' and positions' initial values: truncated normal, stddev 0.02 (cut at 2 stddev)."""
    layer = PatchEncoder(
        4, 256, distillation_token=True, num_registers=3, position_embedding=position, name="enc"
    )
    layer(np.zeros((2, 4, 5), "float32"))
    learned = position == "learned"
    assert {w.path: (tuple(w.shape), w.trainable) for w in layer.weights} == {
        "enc/projection/kernel": ((5, 256), True),
        "enc/projection/bias": ((256,), True),
        "enc/class_token": ((1, 1, 256), True),
        "enc/distillation_token": ((1, 1, 256), True),
        "enc/registers": ((1, 3, 256), True),
        "enc/position_embedding": ((1, 6, 256), learned),
    }
    initialized = [layer.cls, layer.dist, layer.registers] + [layer.position] * learned
    for weight in initialized:
        values = keras.ops.convert_to_numpy(weight).ravel()
        assert np.abs(values).max() <= 0.04 + 1e-6, weight.path
        assert 0.014 < values.std() < 0.022 and abs(values.mean()) < 0.006, (weight.path, values.std())
    assert len({float(keras.ops.convert_to_numpy(w).ravel()[0]) for w in initialized}) == len(initialized)


def test_sublayers_and_tokens_follow_the_layers_dtype_policy():
    """A layer made under `mixed_bfloat16` (the global policy left at float32) computes every part in
    bfloat16, the patch norm and the distillation token included, and keeps float32 variables."""
    assert keras.config.dtype_policy().name == "float32"
    layer = PatchEncoder(
        6,
        16,
        grid_size=(2, 3),
        patch_norm=True,
        distillation_token=True,
        num_registers=1,
        dtype="mixed_bfloat16",
    )
    patches = np.random.default_rng(9).normal(size=(2, 6, 12)).astype("float32")
    out = layer(patches)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    assert layer.patch_norm_layer.dtype_policy.name == "mixed_bfloat16"
    assert layer.projection.dtype_policy.name == "mixed_bfloat16"
    assert {keras.backend.standardize_dtype(w.dtype) for w in layer.weights} == {"float32"}
    normed = keras.ops.convert_to_numpy(layer.patch_norm_layer(patches))
    assert keras.backend.standardize_dtype(layer.patch_norm_layer(patches).dtype) == "bfloat16"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")),
        numpy_tokens(layer, normed.astype("float32")),
        atol=0.1,
    )
