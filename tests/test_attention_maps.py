"""Tests for keras_vit.attention_maps: weights, rollout, maps (drawn by keras_vit.plots)."""

import os

import keras
import numpy as np
import pytest
from keras import ops
from PIL import Image

from keras_vit import attention_maps, build_vit, plots


def randomized_vit(pooling, seed=0, **kwargs):
    """A vit_micro (with `build_vit` arguments `kwargs`) whose head, prefix tokens and position embedding are random.

    The head starts at zero (all logits equal): randomising it makes the
    logit comparisons meaningful.
    """
    model = build_vit("vit_micro", pooling=pooling, **kwargs)
    rng = np.random.default_rng(seed)
    random = ("class_token", "distillation_token", "registers", "position_embedding")
    for w in model.weights:
        if w.path.startswith("head/") or any(name in w.path for name in random):
            w.assign(rng.normal(0.0, 0.5, w.shape).astype("float32"))
    return model


@pytest.fixture(scope="module", params=["token", "gap", "seqpool"])
def model(request):
    return randomized_vit(request.param)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype("float32")


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------
# Weights and the forward pass.


def test_manual_forward_reproduces_model_logits(model, images):
    logits, weights = attention_maps.forward_with_attention(model, images, batch_size=2)  # two passes
    expected = ops.convert_to_numpy(model(images, training=False))
    assert logits.shape == expected.shape == (3, 10)
    assert np.abs(expected).max() > 1e-3  # the randomised head gives non-trivial logits
    assert np.abs(logits - expected).max() < 1e-5
    assert np.abs(logits - model.predict(images, verbose=0)).max() < 1e-5


def test_weights_shape_and_rows(model, images):
    weights = attention_maps.attention_weights(model, images)
    seq = 16 + int(model.get_layer("pool").mode == "token")  # 4x4 patches (+ CLS)
    assert weights.shape == (2, 3, 2, seq, seq)  # (depth, batch, heads, seq, seq)
    assert weights.dtype == np.float32
    assert weights.min() >= 0.0
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)


def test_weights_match_multi_head_attention(model, images):
    """Block 0's weights equal both MultiHeadAttention's own and a numpy recomputation."""
    weights = attention_maps.attention_weights(model, images)
    tokens = model.get_layer("patch_encoder")(
        model.get_layer("patches")(model.get_layer("normalize")(images))
    )
    block = model.get_layer("block_0")
    x = block.attention_norm(tokens)
    _, mha_scores = block.attention(x, x, return_attention_scores=True, training=False)
    np.testing.assert_allclose(weights[0], ops.convert_to_numpy(mha_scores), atol=1e-6)

    x = ops.convert_to_numpy(x).astype("float64")
    mha = block.attention
    q = np.einsum("bsd,dhk->bshk", x, ops.convert_to_numpy(mha.query_dense.kernel)) + ops.convert_to_numpy(
        mha.query_dense.bias
    )
    k = np.einsum("bsd,dhk->bshk", x, ops.convert_to_numpy(mha.key_dense.kernel)) + ops.convert_to_numpy(
        mha.key_dense.bias
    )
    reference = softmax(np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(q.shape[-1]))
    np.testing.assert_allclose(weights[0], reference, atol=1e-5)
    assert reference.std() > 1e-4  # not uniform attention, so the check has teeth


def test_rejects_bad_inputs(model):
    with pytest.raises(ValueError, match="shape"):
        attention_maps.attention_weights(model, np.zeros((2, 16, 16, 3), "float32"))
    plain = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(ValueError, match="'sequential.*' is not a ViT's chain of layers"):
        attention_maps.attention_weights(plain, np.zeros((1, 32, 32, 3), "float32"))


# --------------------------------------------------------------------------
# Rollout against a plain numpy reference.


def reference_rollout(weights, discard_ratio, head_fusion):
    """Loop-by-loop rollout, written independently of the library's version."""
    depth, batch, _, seq, _ = weights.shape
    out = np.zeros((batch, seq, seq))
    for b in range(batch):
        result = np.eye(seq)
        for layer in range(depth):
            heads = weights[layer, b]
            a = {"mean": heads.mean(0), "max": heads.max(0), "min": heads.min(0)}[head_fusion].copy()
            drop = int(seq * seq * discard_ratio)
            if drop:
                threshold = np.sort(a.ravel())[drop - 1]
                a[a <= threshold] = 0.0  # no ties among random floats
            a = a + np.eye(seq)
            for i in range(seq):
                a[i] /= a[i].sum()
            result = a @ result
        out[b] = result
    return out


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.5, 0.9])
def test_rollout_matches_reference(head_fusion, discard_ratio):
    rng = np.random.default_rng(3)
    weights = rng.dirichlet(np.ones(7), size=(3, 2, 4, 7))  # (depth, batch, heads, seq, seq), rows sum to 1
    rollout = attention_maps.attention_rollout(weights, discard_ratio, head_fusion)
    assert rollout.shape == (2, 7, 7)
    np.testing.assert_allclose(rollout, reference_rollout(weights, discard_ratio, head_fusion), atol=1e-6)
    np.testing.assert_allclose(rollout.sum(-1), 1.0, atol=1e-5)


def test_rollout_one_layer_is_half_attention_half_identity():
    rng = np.random.default_rng(4)
    weights = rng.dirichlet(np.ones(5), size=(1, 1, 1, 5))
    expected = 0.5 * weights[0, :, 0] + 0.5 * np.eye(5)
    np.testing.assert_allclose(attention_maps.attention_rollout(weights), expected, atol=1e-6)
    with pytest.raises(ValueError, match="discard_ratio"):
        attention_maps.attention_rollout(weights, discard_ratio=1.0)
    with pytest.raises(ValueError, match="head_fusion"):
        attention_maps.attention_rollout(weights, head_fusion="median")
    with pytest.raises(ValueError, match="shape"):
        attention_maps.attention_rollout(weights[0])


# --------------------------------------------------------------------------
# Maps.


def test_attention_map_token_and_gap():
    rng = np.random.default_rng(5)
    with_cls = rng.random((2, 5, 5))
    maps = attention_maps.attention_map(with_cls, (2, 2), "token")  # one prefix token by default
    np.testing.assert_allclose(maps, with_cls[:, 0, 1:].reshape(2, 2, 2), rtol=1e-6)
    no_cls = rng.random((2, 6, 6))
    maps = attention_maps.attention_map(no_cls, (2, 3), "gap")  # no prefix token by default
    np.testing.assert_allclose(maps, no_cls.mean(axis=1).reshape(2, 2, 3), rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        attention_maps.attention_map(no_cls, (2, 3), "token")
    # Prefix tokens (class, distillation, registers) are left out of the map.
    with_prefix = rng.random((2, 7, 7))  # 3 prefix tokens, 2x2 patches
    maps = attention_maps.attention_map(with_prefix, (2, 2), "token", num_prefix_tokens=3)
    np.testing.assert_allclose(maps, with_prefix[:, 0, 3:].reshape(2, 2, 2), rtol=1e-6)
    # A gap head on a class-token model reads the patch rows, not the class token's.
    maps = attention_maps.attention_map(with_prefix, (2, 2), "gap", num_prefix_tokens=3)
    np.testing.assert_allclose(maps, with_prefix[:, 3:, 3:].mean(axis=1).reshape(2, 2, 2), rtol=1e-6)
    with pytest.raises(ValueError, match="3 prefix tokens"):
        attention_maps.attention_map(with_cls, (2, 2), "token", num_prefix_tokens=3)
    with pytest.raises(ValueError, match="at least 1"):
        attention_maps.attention_map(no_cls[:, :4, :4], (2, 2), "token", num_prefix_tokens=0)
    with pytest.raises(ValueError, match="pooling must be one of"):
        attention_maps.attention_map(with_cls, (2, 2), "cls")


@pytest.mark.parametrize("pooling", ["token", "gap", "seqpool"])
def test_model_maps_with_registers(pooling, images):
    model = build_vit("vit_micro", pooling=pooling, num_registers=2)
    weights = attention_maps.attention_weights(model, images)
    prefix = int(pooling == "token") + 2
    assert weights.shape[-1] == 16 + prefix
    rollout = attention_maps.rollout_map(model, images)
    assert rollout.shape == (3, 4, 4) and np.all(np.isfinite(rollout))
    pooling_weights = seqpool_weights(model, images)  # over the 16 patches: the registers left out
    expected = attention_maps.attention_map(
        attention_maps.attention_rollout(weights), (4, 4), pooling, prefix, pooling_weights
    )
    np.testing.assert_allclose(rollout, expected, atol=1e-6)
    assert attention_maps.cls_attention_map(model, images).shape == (3, 4, 4)


def test_maps_of_a_model_with_shifted_patches_and_locality_attention(images):
    """Lee et al.'s SL-ViT options: the maps' forward pass is still the model's, and no token attends to itself."""
    model = build_vit("vit_micro", shifted_patches=True, locality_attention=True)
    model.get_layer("head").kernel.assign(np.random.default_rng(2).normal(0, 0.5, (32, 10)).astype("float32"))
    logits, weights = attention_maps.forward_with_attention(model, images)
    assert np.abs(logits - ops.convert_to_numpy(model(images, training=False))).max() < 1e-5
    assert weights.shape == (2, 3, 2, 17, 17)
    assert np.diagonal(weights, axis1=-2, axis2=-1).max() < 1e-8
    assert np.all(np.isfinite(attention_maps.rollout_map(model, images)))


def seqpool_weights(model, images):
    """The seqpool head's weights over the patches, from the model's own graph and numpy."""
    pool = model.get_layer("pool")
    if pool.mode != "seqpool":
        return None
    features = keras.Model(model.input, pool.input)(images)  # after encoder_norm, if the model has one
    patches = ops.convert_to_numpy(features)[:, model.get_layer("patch_encoder").num_prefix_tokens :]
    score = pool.score
    scores = patches @ ops.convert_to_numpy(score.kernel) + ops.convert_to_numpy(score.bias)
    return softmax(scores[..., 0])


def test_model_maps(model, images):
    mode = model.get_layer("pool").mode
    has_cls = attention_maps.has_class_token(model)
    assert has_cls == (mode == "token")
    pooling = seqpool_weights(model, images)
    weights = attention_maps.attention_weights(model, images)
    rollout = attention_maps.rollout_map(model, images, discard_ratio=0.2)
    assert rollout.shape == (3, 4, 4)
    expected = attention_maps.attention_map(
        attention_maps.attention_rollout(weights, 0.2), (4, 4), mode, int(has_cls), pooling
    )
    np.testing.assert_allclose(rollout, expected, atol=1e-6)
    last = attention_maps.cls_attention_map(model, images)
    expected = attention_maps.attention_map(weights[-1].mean(axis=1), (4, 4), mode, int(has_cls), pooling)
    np.testing.assert_allclose(last, expected, atol=1e-6)
    first = attention_maps.cls_attention_map(model, images, layer=0, head_fusion="max")
    np.testing.assert_allclose(
        first,
        attention_maps.attention_map(weights[0].max(axis=1), (4, 4), mode, int(has_cls), pooling),
        atol=1e-6,
    )
    if pooling is not None:  # the head's weights differ per image and change the map
        assert np.abs(pooling - 1 / 16).max() > 1e-3
        plain = attention_maps.attention_map(attention_maps.attention_rollout(weights, 0.2), (4, 4), "gap")
        assert np.abs(rollout - plain).max() > 1e-4


# Models whose prefix tokens are not just a class token, or whose head does not read it.
HEAD_READS = {
    "gap_with_class_token": dict(pooling="gap", class_token=True),
    "seqpool_with_class_token": dict(pooling="seqpool", class_token=True),
    "distilled": dict(pooling="token", distillation_token=True),
    "distilled_gap_with_register": dict(
        pooling="gap", class_token=True, distillation_token=True, num_registers=1
    ),
    "token_head_norm_pooled": dict(pooling="token", head_norm="pooled"),
    "seqpool_head_norm_pooled": dict(pooling="seqpool", head_norm="pooled", num_registers=1),
}


@pytest.mark.parametrize("name", list(HEAD_READS))
def test_maps_read_the_rows_the_head_reads(name, images):
    """The maps follow the pooling mode (not whether there is a class token) and skip every prefix token."""
    options = dict(HEAD_READS[name])
    model = randomized_vit(options.pop("pooling"), seed=7, **options)
    mode = model.get_layer("pool").mode
    prefix = int(model.class_token) + int(model.distillation_token) + model.num_registers
    logits, weights = attention_maps.forward_with_attention(model, images)
    assert np.abs(logits - ops.convert_to_numpy(model(images, training=False))).max() < 1e-5
    assert weights.shape == (2, 3, 2, 16 + prefix, 16 + prefix)
    pooling = seqpool_weights(model, images)
    if mode == "seqpool":
        assert np.abs(pooling - 1 / 16).max() > 1e-3  # not the "gap" mean

    def reads(matrix):
        # By hand, from the returned weights: the rows the head reads, the prefix columns left out.
        if mode == "token":
            return matrix[:, 0, prefix:].reshape(3, 4, 4)
        if mode == "gap":
            return matrix[:, prefix:, prefix:].mean(axis=1).reshape(3, 4, 4)
        return np.einsum("bp,bpq->bq", pooling, matrix[:, prefix:, prefix:]).reshape(3, 4, 4)

    rollout = attention_maps.attention_rollout(weights)
    last = weights[-1].mean(axis=1)
    rollout_map = attention_maps.rollout_map(model, images)
    last_map = attention_maps.cls_attention_map(model, images)
    assert rollout_map.shape == last_map.shape == (3, 4, 4)
    np.testing.assert_allclose(rollout_map, reads(rollout), atol=1e-6)
    np.testing.assert_allclose(last_map, reads(last), atol=1e-6)
    if mode != "token":  # the class token's row, which such a head does not read, is another map
        assert np.abs(last_map - last[:, 0, prefix:].reshape(3, 4, 4)).max() > 1e-4


def test_maps_of_the_shipped_model(images):
    """The shipped vit_cifar10 (a legacy functional model: class token and one register) walks the same chain."""
    from keras_vit import load_pretrained

    model = load_pretrained()
    logits, weights = attention_maps.forward_with_attention(model, images[:2])
    assert np.abs(logits - model.predict(images[:2], verbose=0)).max() < 1e-4
    assert weights.shape == (9, 2, 12, 66, 66)
    np.testing.assert_allclose(
        attention_maps.rollout_map(model, images[:2]),
        attention_maps.attention_rollout(weights)[:, 0, 2:].reshape(2, 8, 8),
        atol=1e-6,
    )


def test_attention_map_row_weights():
    rng = np.random.default_rng(6)
    no_cls = rng.random((2, 6, 6))
    row_weights = softmax(rng.normal(size=(2, 6)))
    maps = attention_maps.attention_map(no_cls, (2, 3), "seqpool", row_weights=row_weights)
    expected = np.stack([row_weights[b] @ no_cls[b] for b in range(2)]).reshape(2, 2, 3)
    np.testing.assert_allclose(maps, expected, rtol=1e-5)
    uniform = attention_maps.attention_map(no_cls, (2, 3), "seqpool", row_weights=np.full((2, 6), 1 / 6))
    np.testing.assert_allclose(uniform, attention_maps.attention_map(no_cls, (2, 3), "gap"), rtol=1e-5)
    # With a class token before the patches, as a seqpool head on a class-token model sees it.
    with_cls = rng.random((2, 7, 7))
    maps = attention_maps.attention_map(
        with_cls, (2, 3), "seqpool", num_prefix_tokens=1, row_weights=row_weights
    )
    expected = np.stack([row_weights[b] @ with_cls[b, 1:, 1:] for b in range(2)]).reshape(2, 2, 3)
    np.testing.assert_allclose(maps, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="row_weights must have shape"):
        attention_maps.attention_map(no_cls, (2, 3), "seqpool", row_weights=row_weights[:, :4])
    with pytest.raises(ValueError, match="row_weights is needed for pooling='seqpool'"):
        attention_maps.attention_map(no_cls, (2, 3), "seqpool")
    with pytest.raises(ValueError, match="only for it"):
        attention_maps.attention_map(rng.random((2, 5, 5)), (2, 2), "token", row_weights=np.ones((2, 4)) / 4)


def test_plots(model, images, tmp_path):
    maps = attention_maps.rollout_map(model, images)
    path = plots.plot_attention(images, maps, tmp_path / "rollout.png", titles=["a", "b", "c"], ncols=2)
    weights = attention_maps.attention_weights(model, images)
    encoder = model.get_layer("patch_encoder")
    mode = model.get_layer("pool").mode
    if mode == "seqpool":  # one image's head weights, repeated for its heads (the heads as the batch)
        row_weights = np.repeat(seqpool_weights(model, images)[:1], weights.shape[2], axis=0)
    else:
        row_weights = None
    head_maps = attention_maps.attention_map(
        weights[-1, 0], encoder.grid_size, mode, encoder.num_prefix_tokens, row_weights
    )
    assert head_maps.shape == (weights.shape[2], *encoder.grid_size)
    heads = plots.plot_attention_heads(images[0].astype("uint8"), head_maps, tmp_path / "heads.png")
    for p in (path, heads):
        assert os.path.getsize(p) > 0
        with Image.open(p) as im:
            im.verify()
    with pytest.raises(ValueError, match="one"):
        plots.plot_attention(images, maps[:2], tmp_path / "bad.png")
