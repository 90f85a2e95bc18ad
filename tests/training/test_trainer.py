"""Tests for keras_vit.training.trainer: ViTTrainer's step, loss, repeats, EMA, compilation."""

import importlib.util
import json

import keras
import numpy as np
import pytest
from conftest import run_python

from keras_vit import build_vit
from keras_vit.training.optimizers import make_optimizer
from keras_vit.training.recipes import AUGMENT_RECIPES
from keras_vit.training.schedules import learning_rate_schedule
from keras_vit.training.trainer import ViTTrainer, make_trainer


def colour_data(n=320, seed=0):
    """Images whose class is their colour: a model that learns gets it right."""
    colours = np.random.default_rng(123).uniform(0, 255, (10, 3))  # the same classes for every draw
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype("int32")
    images = np.clip(colours[labels][:, None, None, :] + rng.normal(0, 20, (n, 32, 32, 3)), 0, 255)
    return images.astype("uint8"), labels


def compiled_trainer(recipe, steps, learning_rate=3e-3, seed=0, **recipe_overrides):
    keras.utils.set_random_seed(seed)
    model = build_vit("vit_micro")
    trainer = make_trainer(
        model, dict(AUGMENT_RECIPES[recipe], **recipe_overrides), label_smoothing=0.1, seed=seed
    )
    trainer.compile(
        optimizer=make_optimizer("adamw", learning_rate_schedule(learning_rate, steps, steps // 10)),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model, trainer


COMPILE_COUNT = """
import logging, os
import jax, numpy as np
from keras_vit import build_vit
from keras_vit.training.recipes import training_recipe
from keras_vit.training.batches import TrainingBatches
from keras_vit.training.trainer import make_trainer
messages = []
class Collect(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logging.getLogger("jax").addHandler(Collect())
logging.getLogger("jax").setLevel(logging.DEBUG)
rng = np.random.default_rng(0)
images, labels = rng.integers(0, 255, (300, 32, 32, 3)).astype("uint8"), rng.integers(0, 10, 300)
counts = []
with jax.log_compiles(True):
    for data in ("arrays", "batches"):
        messages.clear()
        trainer = make_trainer(build_vit("vit_micro"), training_recipe("basic"), seed=0)
        trainer.compile(optimizer="adam")
        if data == "arrays":
            trainer.fit({"images": images, "labels": labels}, labels, batch_size=128, epochs=2, verbose=0)
        else:
            trainer.fit(TrainingBatches(images, labels, 128), epochs=2, verbose=0)
        counts.append(sum("Compiling" in m and "train_step" in m for m in messages))
print("train_step compilations", *counts)
"""


def test_short_fit_loss_falls_and_model_learns():
    images, labels = colour_data()
    model, trainer = compiled_trainer("basic", steps=10 * 5)
    history = trainer.fit({"images": images, "labels": labels}, labels, batch_size=64, epochs=5, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] - 0.3, losses
    test_images, test_labels = colour_data(200, seed=1)
    accuracy = np.mean(np.argmax(model.predict(test_images.astype("float32"), verbose=0), -1) == test_labels)
    assert accuracy > 0.5, accuracy  # chance is 0.1


def test_strong_recipe_trains_without_nan():
    images, labels = colour_data(128)
    model, trainer = compiled_trainer("strong", steps=4)
    history = trainer.fit({"images": images, "labels": labels}, labels, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # Evaluation and prediction see the wrapped model on plain images.
    logits = trainer.predict({"images": images[:8]}, verbose=0)
    np.testing.assert_allclose(logits, model.predict(images[:8].astype("float32"), verbose=0), atol=1e-5)


def test_gpu_recipe_trains_under_mixed_bfloat16(mixed_bfloat16):
    # The cifar10_gpu recipe is lee2021 under --mixed-precision bfloat16
    # (mixed_bfloat16); the TensorFlow backend once refused RandAugment's
    # bfloat16 x float32 products there.
    images, labels = colour_data(64)
    model, trainer = compiled_trainer("lee2021", steps=2, mix_prob=1.0)
    assert model.compute_dtype == "bfloat16"
    augmented, targets, _ = trainer.augment_batch(images[:16], labels[:16])
    assert keras.backend.standardize_dtype(augmented.dtype) == "float32"
    assert keras.backend.standardize_dtype(targets.dtype) == "float32"
    history = trainer.fit({"images": images, "labels": labels}, labels, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_loss_is_soft_target_cross_entropy():
    model = build_vit("vit_micro")
    trainer = ViTTrainer(model, label_smoothing=0.1)
    logits = np.array([[2.0, 0.0, -1.0] + [0.0] * 7], "float32")
    targets = np.eye(10, dtype="float32")[[0]]
    loss = float(trainer.compute_loss(y_pred={"logits": logits, "targets": targets}))
    smoothed = targets * 0.9 + 0.01
    expected = -np.sum(smoothed * (logits - np.log(np.sum(np.exp(logits)))))
    assert abs(loss - expected) < 1e-5


def test_repeated_augmentation_repeats_images_and_labels():
    model = build_vit("vit_micro")  # no dropout, no drop path: equal inputs give equal logits
    head = model.get_layer("head")  # zero-initialised: give it weights so that logits differ
    head.kernel.assign(np.random.default_rng(0).normal(0, 1, head.kernel.shape))
    trainer = make_trainer(model, dict(AUGMENT_RECIPES["none"], repeats=3), seed=0)
    images, labels = colour_data(7)  # 7 is not a multiple of 3: the batch keeps its size
    out = trainer({"images": images, "labels": labels}, training=True)
    rows = np.arange(7) // 3
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out["labels"]), labels[rows])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out["targets"]).argmax(1), labels[rows])
    logits = keras.ops.convert_to_numpy(out["logits"])
    assert logits.shape == (7, 10)
    np.testing.assert_allclose(logits[:3], np.repeat(logits[:1], 3, axis=0), atol=1e-5)
    assert not np.allclose(logits[0], logits[3])
    # Inference is not repeated.
    assert keras.ops.convert_to_numpy(trainer({"images": images}, training=False)).shape == (7, 10)
    assert ViTTrainer.from_config(trainer.get_config()).repeats == 3
    with pytest.raises(ValueError, match="repeats"):
        ViTTrainer(model, repeats=0)


def test_lee2021_recipe_with_repeats_fits_and_training_accuracy_uses_repeated_labels(monkeypatch):
    """The full lee2021 recipe (RandAugment, erasing, MixUp/CutMix) with repeats 3: the epoch's training accuracy
    is that of the logits of each step's augmented, mixed rows against the batch's labels repeated 0,0,0,1,1,1,...
    (not the unrepeated labels, nor the mixed targets). Run eagerly so that each step's logits can be recorded."""
    images, labels = colour_data(192)
    model, trainer = compiled_trainer("lee2021", steps=6, repeats=3)
    assert trainer.repeats == 3 and trainer.augmentation[-1].area == (0.02, 0.4)
    assert trainer.mixing is not None and trainer.mixing.enabled
    steps = []
    compute_metrics = trainer.compute_metrics

    def recording(x, y, y_pred, sample_weight=None):
        steps.append(
            {
                "labels": keras.ops.convert_to_numpy(x["labels"]),
                "logits": keras.ops.convert_to_numpy(y_pred["logits"]),
                "targets": keras.ops.convert_to_numpy(y_pred["targets"]),
            }
        )
        return compute_metrics(x, y, y_pred, sample_weight)

    monkeypatch.setattr(trainer, "compute_metrics", recording)
    trainer.run_eagerly = True
    history = trainer.fit({"images": images, "labels": labels}, labels, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert len(steps) == 6 and all(len(step["logits"]) == 32 for step in steps)
    batch_labels = np.concatenate([step["labels"] for step in steps])
    # fit shuffles: every image's label once in the epoch, in some order
    np.testing.assert_array_equal(np.sort(batch_labels), np.sort(labels))
    predicted = np.concatenate([step["logits"].argmax(-1) for step in steps])
    repeated = np.concatenate([step["labels"][np.arange(32) // 3] for step in steps])
    expected = np.mean(predicted == repeated)
    assert history.history["accuracy"][0] == pytest.approx(expected, abs=1e-6)
    # The wrong pairings score otherwise here, so the check above tells them apart.
    assert np.mean(predicted == batch_labels) != pytest.approx(expected, abs=1e-6)
    mixed = np.concatenate([step["targets"].argmax(-1) for step in steps])
    assert np.mean(predicted == mixed) != pytest.approx(expected, abs=1e-6)


def test_training_accuracy_pairs_each_repeated_row_with_its_own_label():
    """With repeats 3 and no augmentation at a learning rate of 0, the labels are the model's own predictions:
    every repeated row is right only if the metric compares it with its own image's repeated label."""
    images, _ = colour_data(96)
    keras.utils.set_random_seed(0)
    model = build_vit("vit_micro")
    rng = np.random.default_rng(0)
    for variable in model.trainable_variables:
        variable.assign(rng.normal(0, 0.3, variable.shape).astype("float32"))
    labels = model.predict(images.astype("float32"), verbose=0).argmax(-1).astype("int32")
    assert len(np.unique(labels)) >= 2  # predictions differ between images: a wrong pairing shows
    trainer = make_trainer(model, dict(AUGMENT_RECIPES["none"], repeats=3))
    trainer.compile(
        optimizer=keras.optimizers.SGD(0.0),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    history = trainer.fit({"images": images, "labels": labels}, labels, batch_size=32, epochs=1, verbose=0)
    assert history.history["accuracy"][0] == pytest.approx(1.0)
    # What a metric pairing rows 0,0,0,1,1,1,... with the unrepeated labels 0,1,2,... would score: well under 1.
    assert np.mean(labels[np.arange(96) // 3] == labels) < 0.8


def test_ema_weights_replace_the_trained_ones_at_the_end():
    images, labels = colour_data(128)
    keras.utils.set_random_seed(0)
    model = build_vit("vit_micro")
    trainer = make_trainer(model, AUGMENT_RECIPES["none"])
    optimizer = make_optimizer("adamw", 1e-3, ema_momentum=0.5)
    assert optimizer.use_ema and optimizer.ema_momentum == 0.5
    trainer.compile(optimizer=optimizer)
    trainer.fit({"images": images, "labels": labels}, labels, batch_size=32, epochs=1, verbose=0)
    averages = [keras.ops.convert_to_numpy(v) for v in optimizer._model_variables_moving_average]
    for variable, average in zip(trainer.trainable_variables, averages):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), average, atol=1e-6)
    with pytest.raises(ValueError, match="ema_momentum"):
        make_optimizer("adamw", 1e-3, ema_momentum=1.0)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
def test_fit_on_training_batches_compiles_the_train_step_once():
    """Under JAX, fit(x, y, batch_size=128) on 300 images compiles twice (the last batch has 44); not ours."""
    result = run_python(COMPILE_COUNT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "train_step compilations 2 1"


EVERY_RECIPE_SCRIPT = """
import json, sys
import keras
import numpy as np
from keras_vit import build_vit
from keras_vit.training import augment
from keras_vit.training.recipes import AUGMENT_RECIPES
from keras_vit.training.optimizers import make_optimizer
from keras_vit.training.trainer import make_trainer

rng = np.random.default_rng(0)
images = rng.integers(0, 256, (16, 32, 32, 3), dtype="uint8")
labels = (np.arange(16) % 10).astype("int32")
augmentation_classes = tuple(
    value for value in vars(augment).values() if isinstance(value, type) and issubclass(value, keras.layers.Layer)
)
results = {}
for name in sys.argv[2:]:
    recipe = AUGMENT_RECIPES[name]
    keras.utils.set_random_seed(0)
    model = build_vit("vit_micro")
    trainer = make_trainer(model, recipe, label_smoothing=0.1, seed=0)
    trainer.compile(optimizer=make_optimizer("adamw", 1e-3))
    before = keras.ops.convert_to_numpy(model.trainable_weights[0]).copy()
    history = trainer.fit({"images": images, "labels": labels}, labels, batch_size=8, epochs=1, verbose=0)
    moved = float(np.abs(keras.ops.convert_to_numpy(model.trainable_weights[0]) - before).max())
    path = sys.argv[1] + "/" + name + ".keras"
    model.save(path)
    saved = keras.saving.load_model(path)
    carried = [layer.name for layer in saved._flatten_layers() if isinstance(layer, augmentation_classes)]
    results[name] = [history.history["loss"][-1], moved, carried]
print(json.dumps(results))
"""


# Recipes that between them turn on every option any recipe turns on (each layer, both MixUp/CutMix shares) and the
# empty pipeline: the others are subsets of these, and each compiled step costs this test seconds per backend.
COVERING_RECIPES = ("none", "strong", "lee2021")


def test_the_trained_recipes_turn_on_every_option_of_the_others():
    for recipe in AUGMENT_RECIPES.values():
        for option, value in recipe.items():
            assert not value or any(AUGMENT_RECIPES[c][option] for c in COVERING_RECIPES), option
    shares = {AUGMENT_RECIPES[c]["mix_prob"] for c in COVERING_RECIPES}
    assert shares >= {0.0, 0.5, 1.0}  # no mixing, some batches mixed, every batch mixed


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_the_covering_recipes_train_on_each_backend_and_the_saved_model_carries_none_of_it(backend, tmp_path):
    pytest.importorskip(backend)
    result = run_python(EVERY_RECIPE_SCRIPT, tmp_path, *COVERING_RECIPES, backend=backend, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(results) == sorted(COVERING_RECIPES)
    for name, (loss, moved, carried) in results.items():
        assert np.isfinite(loss) and moved > 0, (name, loss, moved)
        assert carried == [], (name, carried)  # no augmentation layer in the saved model
