"""The seed layers one by one: shapes, patch order, config round-trips, dtypes."""

import keras
import numpy as np
import pytest

from keras_vit import (DropPath, LocalitySelfAttention, PatchDropout, Patches, PatchEncoder, SequencePooling,
                       TransformerBlock)
from keras_vit.layers import sincos_position_embedding


def numpy_patches(images, p):
    """Reference: loop over the grid row-major, flatten each patch (row, col, channel)."""
    b, h, w, c = images.shape
    out = []
    for r in range(h // p):
        for q in range(w // p):
            out.append(images[:, r * p:(r + 1) * p, q * p:(q + 1) * p, :].reshape(b, -1))
    return np.stack(out, axis=1)


@pytest.mark.parametrize("shape,p", [((2, 32, 32, 3), 4), ((3, 24, 40, 3), 8), ((1, 6, 9, 1), 3)])
def test_patches_match_numpy_reference(shape, p):
    images = np.random.default_rng(0).uniform(size=shape).astype("float32")
    out = keras.ops.convert_to_numpy(Patches(p)(images))
    np.testing.assert_array_equal(out, numpy_patches(images, p))
    assert out.shape == (shape[0], (shape[1] // p) * (shape[2] // p), p * p * shape[3])


def test_patches_row_major_order():
    # Each pixel holds its own (row, col): patch k must come from grid row k // cols.
    rows, cols = np.meshgrid(np.arange(8), np.arange(12), indexing="ij")
    image = np.stack([rows, cols, np.zeros_like(rows)], -1)[None].astype("float32")
    out = keras.ops.convert_to_numpy(Patches(4)(image))[0]
    for k in range(out.shape[0]):
        top_left = out[k, :3]
        assert tuple(top_left[:2]) == (4 * (k // 3), 4 * (k % 3))


def test_patches_rejects_sizes_it_cannot_cut():
    with pytest.raises(ValueError, match=r"30x32.*patch_size=4"):
        Patches(4)(np.zeros((1, 30, 32, 3), "float32"))
    with pytest.raises(ValueError):
        Patches(0)


@pytest.mark.parametrize("p", [2, 4, 3])
def test_shifted_patches_stack_four_diagonal_half_patch_shifts(p):
    """Shifted Patch Tokenization: the image, then the windows of its zero-padded copy at (0,0), (0,2s), (2s,0), (2s,2s)."""
    images = np.random.default_rng(2).uniform(1, 2, size=(2, 12, 24, 3)).astype("float32")
    s = p // 2
    padded = np.pad(images, ((0, 0), (s, s), (s, s), (0, 0)))
    stacked = np.concatenate(
        [images] + [padded[:, t:t + 12, c:c + 24] for t, c in ((0, 0), (0, 2 * s), (2 * s, 0), (2 * s, 2 * s))],
        axis=-1,
    )
    out = keras.ops.convert_to_numpy(Patches(p, shifted=True)(images))
    np.testing.assert_array_equal(out, numpy_patches(stacked, p))
    assert out.shape == Patches(p, shifted=True).compute_output_shape(images.shape)
    # The first copy's window (0, 0) is the image moved s pixels down and right, zeros shifted in.
    moved = stacked[..., 3:6]
    np.testing.assert_array_equal(moved[:, s:, s:], images[:, :-s, :-s])
    assert not moved[:, :s].any() and not moved[:, :, :s].any()
    with pytest.raises(ValueError, match="patch_size >= 2"):
        Patches(1, shifted=True)


def assert_round_trip(layer, inputs, **call_kwargs):
    """from_config(get_config()) rebuilds an equal layer; with the weights copied it computes the same."""
    expected = keras.ops.convert_to_numpy(layer(inputs, **call_kwargs))
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(inputs, **call_kwargs)  # build
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(inputs, **call_kwargs)), expected, atol=1e-6)
    # Through the registered serialization too (what .keras files use).
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is type(layer) and revived.get_config() == config


def test_patches_round_trip():
    assert_round_trip(Patches(4, name="p"), np.random.rand(2, 8, 8, 3).astype("float32"))
    assert_round_trip(Patches(4, shifted=True, name="p"), np.random.rand(2, 8, 8, 3).astype("float32"))
    # Files saved before `shifted` existed have no such key: they get plain patches.
    config = Patches(4).get_config()
    del config["shifted"]
    assert Patches.from_config(config).shifted is False


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
    assert out.shape == (3, head + 2 + 6, 16) and layer.num_tokens == head + 8 and layer.num_prefix_tokens == head + 2
    assert layer.position.shape == (1, 6 + head, 16)  # positions for the class token and the patches only
    registers = keras.ops.convert_to_numpy(layer.registers)[0]
    np.testing.assert_allclose(out[:, head:head + 2], np.broadcast_to(registers, (3, 2, 16)), atol=1e-6)
    # The patch tokens are what a register-free encoder with the same weights gives.
    plain = PatchEncoder(6, 16, grid_size=(2, 3), class_token=class_token)
    plain(patches)
    plain.set_weights([w for w in layer.get_weights() if w.shape != registers[None].shape])
    np.testing.assert_allclose(out[:, head + 2:], keras.ops.convert_to_numpy(plain(patches))[:, head:], atol=1e-6)
    assert layer.get_config()["num_registers"] == 2
    assert_round_trip(layer, patches)
    with pytest.raises(ValueError, match="num_registers"):
        PatchEncoder(6, 16, grid_size=(2, 3), num_registers=-1)


def test_patch_encoder_patch_norm():
    """patch_norm layer-normalizes each patch vector before the projection: scaling a patch changes nothing."""
    patches = np.random.default_rng(5).normal(size=(2, 6, 12)).astype("float32")
    layer = PatchEncoder(6, 16, grid_size=(2, 3), patch_norm=True)
    out = keras.ops.convert_to_numpy(layer(patches))
    assert layer.get_config()["patch_norm"] is True
    assert {w.path.split("/", 1)[1] for w in layer.weights} >= {"patch_norm/gamma", "patch_norm/beta"}
    scaled = patches * np.array([3.0, 0.5, 7.0, 1.0, 2.0, 9.0], "float32")[None, :, None] + 4.0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(scaled)), out, atol=1e-4)
    assert not np.allclose(keras.ops.convert_to_numpy(PatchEncoder(6, 16, grid_size=(2, 3))(scaled))[:, 1:],
                           out[:, 1:], atol=1e-2)
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
    archive.add_endpoint("serve", lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec((None, 6, 12), tf.float32)])
    archive.write_out(str(tmp_path / "sm"), verbose=False)
    calibration = np.random.default_rng(0).normal(size=(8, 6, 12)).astype("float32")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]  # fails on a float-only op
    interpreter = Interpreter(model_content=converter.convert(),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    names = {op["op_name"] for op in ops}
    assert "BROADCAST_TO" in names and "ZEROS_LIKE" not in names, names
    float_ops = {op["op_name"] for op in ops if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
                 and any(tensors.get(i) == np.float32 for i in [*op["inputs"], *op["outputs"]])}
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


def test_transformer_block_and_attention_scores():
    tokens = np.random.default_rng(2).normal(size=(3, 5, 16)).astype("float32")
    block = TransformerBlock(num_heads=4, projection_dim=16, mlp_dim=32)
    out = keras.ops.convert_to_numpy(block(tokens))
    assert out.shape == tokens.shape
    out2, scores = block(tokens, return_attention_scores=True)
    scores = keras.ops.convert_to_numpy(scores)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out2), out, atol=1e-6)
    assert scores.shape == (3, 4, 5, 5)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    assert_round_trip(block, tokens)


def test_locality_self_attention():
    """No token attends to itself, the temperature is learned, and the rest is Keras' attention (numpy reference)."""
    tokens = np.random.default_rng(6).normal(size=(2, 5, 16)).astype("float32")
    block = TransformerBlock(num_heads=2, projection_dim=16, mlp_dim=32, locality_attention=True)
    out = keras.ops.convert_to_numpy(block(tokens))
    out2, scores = block(tokens, return_attention_scores=True)  # the explicit-softmax path
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out2), out, atol=1e-5)
    scores = keras.ops.convert_to_numpy(scores)
    attention = block.attention
    assert isinstance(attention, LocalitySelfAttention)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(attention.log_temperature), -0.5 * np.log(8), rtol=1e-6)
    assert "log_temperature" in [w.path.rsplit("/", 1)[-1] for w in block.trainable_weights]
    attention.log_temperature.assign(0.3)  # the scores must follow the weight, not Keras' 1/sqrt(8)
    scores = keras.ops.convert_to_numpy(block(tokens, return_attention_scores=True)[1])
    x = keras.ops.convert_to_numpy(block.attention_norm(tokens))
    q = np.einsum("btd,dnh->btnh", x, attention.query_dense.kernel.numpy()) + attention.query_dense.bias.numpy()
    k = np.einsum("btd,dnh->btnh", x, attention.key_dense.kernel.numpy()) + attention.key_dense.bias.numpy()
    logits = np.einsum("btnh,bsnh->bnts", q, k) * np.exp(0.3)
    logits[:, :, np.arange(5), np.arange(5)] = -np.inf
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(scores, expected / expected.sum(-1, keepdims=True), atol=1e-5)
    assert np.diagonal(scores, axis1=2, axis2=3).max() < 1e-8
    assert block.get_config()["locality_attention"] is True
    assert_round_trip(block, tokens)
    config = TransformerBlock(2, 16, 32).get_config()
    del config["locality_attention"]  # files saved before the option existed
    assert TransformerBlock.from_config(config).locality_attention is False


def test_transformer_block_uses_exact_gelu_and_checks_heads():
    block = TransformerBlock(num_heads=2, projection_dim=8, mlp_dim=16)
    x = np.linspace(-3, 3, 16, dtype="float32")
    exact = keras.ops.convert_to_numpy(keras.activations.gelu(x, approximate=False))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block.mlp_hidden.activation(x)), exact, atol=1e-6)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        TransformerBlock(num_heads=3, projection_dim=8, mlp_dim=16)


def test_transformer_block_dropout_only_in_training():
    tokens = np.random.default_rng(3).normal(size=(8, 5, 16)).astype("float32")
    block = TransformerBlock(4, 16, 32, dropout=0.5, drop_path=0.5)
    a = keras.ops.convert_to_numpy(block(tokens, training=False))
    np.testing.assert_allclose(a, keras.ops.convert_to_numpy(block(tokens, training=False)))
    assert not np.allclose(a, keras.ops.convert_to_numpy(block(tokens, training=True)))


def test_drop_path():
    x = np.ones((400, 3), "float32")
    layer = DropPath(0.25, seed=1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    values = np.unique(out)
    np.testing.assert_allclose(values, [0.0, 1 / 0.75], rtol=1e-6)  # dropped or rescaled
    assert np.all(out.min(axis=1) == out.max(axis=1))  # whole samples, never parts
    assert 0.15 < np.mean(out[:, 0] == 0) < 0.35
    assert_round_trip(layer, x)
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_patch_dropout_keeps_the_prefix_and_a_random_subset_of_patches():
    # 2 prefix tokens (class token, register) and 16 patches; every token is its own id.
    batch, prefix, patches = 64, 2, 16
    ids = np.broadcast_to(np.arange(prefix + patches, dtype="float32")[None, :, None], (batch, prefix + patches, 3))
    layer = PatchDropout(0.25, num_prefix_tokens=prefix, seed=3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(ids)), ids)  # outside training: every token
    out = keras.ops.convert_to_numpy(layer(ids, training=True))
    assert out.shape == (batch, prefix + 12, 3) and layer.kept_patches(patches) == 12
    np.testing.assert_array_equal(out[:, :prefix, 0], np.broadcast_to(np.arange(prefix), (batch, prefix)))
    kept = out[:, prefix:, 0]
    assert np.all(kept >= prefix) and all(len(set(row)) == 12 for row in kept)  # patches only, no repeats
    np.testing.assert_array_equal(out[..., 0], out[..., 2])  # whole tokens move, features stay together
    assert len({tuple(sorted(row)) for row in kept}) > batch // 2  # a different subset per image
    counts = np.bincount(kept.astype(int).ravel(), minlength=prefix + patches)[prefix:]
    assert counts.min() > 0.5 * counts.mean()  # no patch position favoured (each expected 48 times)
    assert_round_trip(layer, ids)
    assert PatchDropout(0.9).kept_patches(4) == 1  # at least one patch
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError):
            PatchDropout(bad)


@pytest.mark.parametrize("mode", ["token", "gap"])
def test_sequence_pooling(mode):
    tokens = np.random.default_rng(4).normal(size=(2, 5, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(SequencePooling(mode)(tokens))
    np.testing.assert_allclose(out, tokens[:, 0] if mode == "token" else tokens[:, 1:].mean(1), atol=1e-6)
    assert_round_trip(SequencePooling(mode), tokens)
    with pytest.raises(ValueError):
        SequencePooling("token", has_class_token=False)
    # With 2 registers after the class token, "gap" averages tokens 3: only.
    pooled = keras.ops.convert_to_numpy(SequencePooling(mode, num_registers=2)(tokens))
    np.testing.assert_allclose(pooled, tokens[:, 0] if mode == "token" else tokens[:, 3:].mean(1), atol=1e-6)
    assert_round_trip(SequencePooling(mode, num_registers=2), tokens)


def test_sequence_pooling_seqpool():
    """A learned softmax over the patch tokens (class token and registers skipped) weights their sum."""
    tokens = np.random.default_rng(4).normal(size=(3, 7, 4)).astype("float32")
    layer = SequencePooling("seqpool", has_class_token=True, num_registers=2)
    out = keras.ops.convert_to_numpy(layer(tokens))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in (layer.score.kernel, layer.score.bias))
    patches = tokens[:, 3:]
    scores = (patches @ kernel + bias)[..., 0]
    weights = np.exp(scores - scores.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    assert np.abs(weights - 1 / 4).max() > 1e-2  # not a plain mean
    np.testing.assert_allclose(out, np.einsum("bp,bpd->bd", weights, patches), atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.pooling_weights(patches)), weights, atol=1e-6)
    assert [w.path.split("/", 1)[1] for w in layer.weights] == ["score/kernel", "score/bias"]  # named sublayer
    assert_round_trip(SequencePooling("seqpool", has_class_token=False), tokens)
    with pytest.raises(ValueError, match="seqpool"):
        SequencePooling("attention")


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_layers_under_mixed_precision(policy):
    images = np.random.default_rng(5).uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    layers = [Patches(4, dtype=policy), PatchEncoder(4, 16, dtype=policy),
              TransformerBlock(2, 16, 32, drop_path=0.1, dtype=policy), SequencePooling("token", dtype=policy)]
    x = images
    for layer in layers:
        x = layer(x, training=True) if isinstance(layer, TransformerBlock) else layer(x)
        assert keras.backend.standardize_dtype(x.dtype) == policy.split("_")[1], type(layer).__name__
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32"))))
    # Variables stay float32 under mixed precision.
    assert {w.dtype for layer in layers for w in layer.weights} <= {"float32"}


def test_dense_over_tokens_is_the_dense_layer_on_3d_tokens():
    from keras_vit.layers import dense_over_tokens

    tokens = np.random.default_rng(0).normal(size=(3, 5, 8)).astype("float32")
    dense = keras.layers.Dense(6, activation="gelu")
    expected = keras.ops.convert_to_numpy(dense(tokens))  # the layer on the 3-D tensor
    out = keras.ops.convert_to_numpy(dense_over_tokens(dense, keras.ops.convert_to_tensor(tokens)))
    assert out.shape == (3, 5, 6)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # In a functional graph with a dynamic batch, the static token count carries through.
    inputs = keras.Input((5, 8))
    model = keras.Model(inputs, dense_over_tokens(dense, inputs))
    assert model.output_shape == (None, 5, 6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(tokens[:2])), expected[:2], rtol=1e-5, atol=1e-6)


def test_layer_norm_is_keras_layer_normalization_bit_for_bit():
    from keras_vit.layers import LayerNorm

    rng = np.random.default_rng(0)
    tokens = (rng.normal(size=(3, 9, 16)) * 4 + 2).astype("float32")
    reference = keras.layers.LayerNormalization(epsilon=1e-6)
    reference.build(tokens.shape)
    reference.set_weights([rng.normal(size=16).astype("float32"), rng.normal(size=16).astype("float32")])
    layer = LayerNorm(epsilon=1e-6)
    layer.build(tokens.shape)
    layer.set_weights(reference.get_weights())
    ours, keras_result = keras.ops.convert_to_numpy(layer(tokens)), keras.ops.convert_to_numpy(reference(tokens))
    if keras.backend.backend() == "torch":  # Keras calls torch's fused layer_norm kernel, which rounds otherwise
        np.testing.assert_allclose(ours, keras_result, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(ours, keras_result)
    # Config round trip, and the same weights under the same names.
    copy = LayerNorm.from_config(layer.get_config())
    copy.build(tokens.shape)
    assert [w.path.split("/")[-1] for w in copy.weights] == ["gamma", "beta"]
    with pytest.raises(ValueError, match="last axis"):
        LayerNorm(axis=1).build((2, 3, 4))
    with pytest.raises(ValueError, match="center"):
        LayerNorm(center=False)


def test_layer_norm_computes_in_float32_under_mixed_precision():
    from keras_vit.layers import LayerNorm

    tokens = np.random.default_rng(0).normal(size=(2, 4, 8)).astype("float32")
    layer = LayerNorm(dtype="mixed_bfloat16")
    out = layer(tokens)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    reference = keras.layers.LayerNormalization(epsilon=1e-6, dtype="mixed_bfloat16")
    reference.build(tokens.shape)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")),
                                  keras.ops.convert_to_numpy(keras.ops.cast(reference(tokens), "float32")))
