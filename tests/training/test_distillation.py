"""Distillation in ViTTrainer: the losses, the frozen teacher, the teacher's flip."""

import keras
import numpy as np
import pytest

from keras_vit import build_vit
from keras_vit.models.teachers import build_resnet9
from keras_vit.training.optimizers import make_optimizer
from keras_vit.training.recipes import AUGMENT_RECIPES
from keras_vit.training.trainer import ViTTrainer, make_trainer


def _trainer(distillation, weight, temperature=1.0, label_smoothing=0.1):
    return ViTTrainer(
        build_vit("vit_micro"),
        label_smoothing=label_smoothing,
        teacher=build_resnet9(width=4),
        distillation=distillation,
        distillation_weight=weight,
        temperature=temperature,
    )


def _cross_entropy(targets, logits):
    return float(np.mean(-np.sum(targets * (logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))), -1)))


def test_distillation_losses():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 10)).astype("float32")
    teacher_logits = rng.normal(size=(4, 10)).astype("float32")
    targets = np.eye(10, dtype="float32")[[0, 3, 5, 9]]
    y_pred = {"logits": logits, "targets": targets, "teacher_logits": teacher_logits}
    smooth = lambda t: t * 0.9 + 0.01  # noqa: E731
    labels_loss = _cross_entropy(smooth(targets), logits)

    # Hard (DeiT): the teacher's top class, smoothed like the labels.
    hard = float(_trainer("hard", 0.5).compute_loss(y_pred=y_pred))
    teacher_top = np.eye(10, dtype="float32")[np.argmax(teacher_logits, -1)]
    assert hard == pytest.approx(
        0.5 * labels_loss + 0.5 * _cross_entropy(smooth(teacher_top), logits), rel=1e-5
    )

    # Soft (Hinton): T^2 KL(teacher || model) at temperature T.
    t = 2.0
    p = np.exp(teacher_logits / t) / np.sum(np.exp(teacher_logits / t), -1, keepdims=True)
    log_q = logits / t - np.log(np.sum(np.exp(logits / t), -1, keepdims=True))
    kl = float(np.mean(np.sum(p * (np.log(p) - log_q), -1)))
    soft = float(_trainer("soft", 0.25, temperature=t).compute_loss(y_pred=y_pred))
    assert soft == pytest.approx(0.75 * labels_loss + 0.25 * t * t * kl, rel=1e-5)

    # Weight 0 is training on the labels alone; a teacher that agrees with the model adds ~0 KL.
    assert float(_trainer("soft", 0.0).compute_loss(y_pred=y_pred)) == pytest.approx(labels_loss, rel=1e-6)
    same = dict(y_pred, teacher_logits=logits)
    assert float(_trainer("soft", 1.0).compute_loss(y_pred=same)) == pytest.approx(0.0, abs=1e-5)


def test_bad_distillation_arguments():
    for kwargs in (dict(distillation="medium"), dict(distillation_weight=1.5), dict(temperature=0.0)):
        with pytest.raises(ValueError):
            ViTTrainer(build_vit("vit_micro"), teacher=build_resnet9(width=4), **kwargs)
    with pytest.raises(ValueError, match="outputs"):
        ViTTrainer(build_vit("vit_micro"), teacher=build_resnet9(num_classes=3, width=4))


def test_fit_with_a_teacher_trains_the_student_only():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (64, 32, 32, 3)).astype("uint8")
    labels = rng.integers(0, 10, 64).astype("int32")
    model = build_vit("vit_micro")
    guide = build_resnet9(width=4)
    before = [w.copy() for w in guide.get_weights()]  # batch-norm statistics included
    trainer = make_trainer(
        model,
        AUGMENT_RECIPES["lee2021"],
        label_smoothing=0.1,
        seed=0,
        teacher=guide,
        distillation="hard",
        distillation_weight=0.5,
    )
    trainer.compile(optimizer=make_optimizer("adamw", 1e-3))
    student_before = [w.copy() for w in model.get_weights()]
    outputs = trainer({"images": images[:8], "labels": labels[:8]}, training=True)
    assert outputs["teacher_logits"].shape == (8, 10)
    history = trainer.fit({"images": images, "labels": labels}, labels, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for a, b in zip(before, guide.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(student_before, model.get_weights()))
    # The trainer's config names the teacher; the model saved and exported is the student alone.
    config = trainer.get_config()
    assert config["teacher"] is not None and config["distillation"] == "hard"
    assert ViTTrainer.from_config(config).teacher.count_params() == guide.count_params()


def test_teacher_flip_averages_the_teacher_over_the_mirror_images():
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    labels = np.arange(8).astype("int32")
    guide = build_resnet9(width=4)  # random weights: not mirror-symmetric
    plain, mirrored = (
        keras.ops.convert_to_numpy(guide(x, training=False)) for x in (images, images[:, :, ::-1])
    )
    assert not np.allclose(plain, mirrored, atol=1e-4)
    # No augmentation and no mixing: the teacher sees the batch as it is.
    for flip, expected in ((False, plain), (True, (plain + mirrored) / 2)):
        trainer = make_trainer(
            build_vit("vit_micro"), AUGMENT_RECIPES["none"], teacher=guide, teacher_flip=flip
        )
        outputs = trainer({"images": images, "labels": labels}, training=True)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs["teacher_logits"]), expected, atol=1e-5)
        assert trainer.get_config()["teacher_flip"] is flip
        assert ViTTrainer.from_config(trainer.get_config()).teacher_flip is flip
