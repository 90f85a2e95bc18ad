"""The ResNet-9 teacher, its CLI, and distilling it into the ViT (ViTTrainer and keras_vit.train)."""

import json

import keras
import numpy as np
import pytest

from keras_vit import build_vit, teacher, train
from keras_vit.augment import AUGMENT_RECIPES
from keras_vit.training import ViTTrainer, make_optimizer, make_trainer


def test_resnet9_shape_parameters_and_safe_mode_round_trip(tmp_path):
    model = teacher.build_resnet9((32, 32), num_classes=10, width=64)
    # Page's ResNet-9: 6.57 M parameters (batch-norm statistics included).
    assert 6_500_000 < model.count_params() < 6_600_000
    small = teacher.build_resnet9((32, 32), num_classes=7, width=4)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    logits = small.predict(images, verbose=0)
    assert logits.shape == (3, 7) and logits.dtype == np.float32
    path = tmp_path / "teacher.keras"
    small.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # built-in layers only: no Lambda
    np.testing.assert_allclose(loaded.predict(images, verbose=0), logits, atol=1e-5)
    with pytest.raises(ValueError, match="divide by 8"):
        teacher.build_resnet9((30, 30))


def test_forward_flops_count_every_convolution_and_the_head():
    w = 64
    convolutions = (32 * 32 * 3 * w + 32 * 32 * w * 2 * w + 2 * 16 * 16 * (2 * w) ** 2 + 16 * 16 * 2 * w * 4 * w
                    + 8 * 8 * 4 * w * 8 * w + 2 * 4 * 4 * (8 * w) ** 2)
    expected = 2 * 9 * convolutions + 2 * 8 * w * 10
    assert teacher.forward_flops_per_image(teacher.build_resnet9(width=w)) == expected  # 0.76 GFLOP


def test_with_dtype_policy_keeps_the_weights_and_float32_logits():
    model = teacher.build_resnet9(width=4)
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    copy = teacher.with_dtype_policy(model, "mixed_bfloat16")
    assert copy.get_layer("prep_conv").compute_dtype == "bfloat16"
    assert copy.layers[-1].compute_dtype == "float32"
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(copy.predict(images, verbose=0), model.predict(images, verbose=0), atol=0.15)


def test_load_teacher_checks_the_data_and_freezes(tmp_path):
    path = tmp_path / "t.keras"
    teacher.build_resnet9(width=4).save(path)
    loaded = teacher.load_teacher(path, (32, 32), 10)
    assert not loaded.trainable and not loaded.trainable_weights
    with pytest.raises(ValueError, match="outputs"):
        teacher.load_teacher(path, (32, 32), 5)
    with pytest.raises(ValueError, match="images"):
        teacher.load_teacher(path, (64, 64), 10)


def _trainer(distillation, weight, temperature=1.0, label_smoothing=0.1):
    return ViTTrainer(build_vit("vit_micro"), label_smoothing=label_smoothing, teacher=teacher.build_resnet9(width=4),
                      distillation=distillation, distillation_weight=weight, temperature=temperature)


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
    assert hard == pytest.approx(0.5 * labels_loss + 0.5 * _cross_entropy(smooth(teacher_top), logits), rel=1e-5)

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
            ViTTrainer(build_vit("vit_micro"), teacher=teacher.build_resnet9(width=4), **kwargs)
    with pytest.raises(ValueError, match="outputs"):
        ViTTrainer(build_vit("vit_micro"), teacher=teacher.build_resnet9(num_classes=3, width=4))


def test_fit_with_a_teacher_trains_the_student_only():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (64, 32, 32, 3)).astype("uint8")
    labels = rng.integers(0, 10, 64).astype("int32")
    model = build_vit("vit_micro")
    guide = teacher.build_resnet9(width=4)
    before = [w.copy() for w in guide.get_weights()]  # batch-norm statistics included
    trainer = make_trainer(model, AUGMENT_RECIPES["lee2021"], label_smoothing=0.1, seed=0, teacher=guide,
                           distillation="hard", distillation_weight=0.5)
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
    guide = teacher.build_resnet9(width=4)  # random weights: not mirror-symmetric
    plain, mirrored = (keras.ops.convert_to_numpy(guide(x, training=False)) for x in (images, images[:, :, ::-1]))
    assert not np.allclose(plain, mirrored, atol=1e-4)
    # No augmentation and no mixing: the teacher sees the batch as it is.
    for flip, expected in ((False, plain), (True, (plain + mirrored) / 2)):
        trainer = make_trainer(build_vit("vit_micro"), AUGMENT_RECIPES["none"], teacher=guide, teacher_flip=flip)
        outputs = trainer({"images": images, "labels": labels}, training=True)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs["teacher_logits"]), expected, atol=1e-5)
        assert trainer.get_config()["teacher_flip"] is flip
        assert ViTTrainer.from_config(trainer.get_config()).teacher_flip is flip


def test_teacher_cli_and_train_with_teacher(tiny_tree, tmp_path, capsys):
    out = tmp_path / "teacher"
    assert teacher.main(["--data-dir", str(tiny_tree), "--width", "4", "--epochs", "2", "--batch-size", "32",
                         "--output", str(out), "--verbose", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["wall_clock_seconds"] > 0
    assert (out / "labels.txt").read_text().split()[0] == "airplane"
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 2  # a header and an epoch a line
    student = tmp_path / "student"
    args = ["--preset", "vit_micro", "--epochs", "1", "--batch-size", "32", "--verbose", "0",
            "--data-dir", str(tiny_tree), "--output", str(student)]
    assert train.main(args + ["--teacher", str(out / "model.keras"), "--distillation", "soft",
                              "--temperature", "2", "--teacher-flip"]) == 0
    saved = json.loads((student / "metrics.json").read_text())
    assert saved["args"]["teacher"] == str(out / "model.keras") and saved["args"]["distillation"] == "soft"
    assert saved["args"]["teacher_flip"] is True
    # The saved model is the ViT alone.
    assert keras.saving.load_model(student / "model.keras").count_params() == saved["parameters"]
    capsys.readouterr()
    assert train.main(args + ["--teacher", str(tmp_path / "missing.keras")]) == 2
    assert "no such file" in capsys.readouterr().err
    teacher.build_resnet9(num_classes=3, width=4).save(tmp_path / "three.keras")
    assert train.main(args + ["--teacher", str(tmp_path / "three.keras")]) == 2
    assert "3 outputs" in capsys.readouterr().err
    assert train.main(args + ["--teacher", str(out / "model.keras"), "--distillation-weight", "2"]) == 2
    assert teacher.main(["--data-dir", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o")]) == 2


def test_teacher_time_budget(tiny_tree, tmp_path, capsys):
    """--time-budget stops the teacher once the next epoch would pass it, and plans its rate per epoch."""
    out = tmp_path / "teacher"
    # The first epoch holds the compilation, far longer than 0.5 s: the budget stops fit after it.
    assert teacher.main(["--data-dir", str(tiny_tree), "--width", "4", "--epochs", "3", "--batch-size", "32",
                         "--time-budget", "0.5", "--output", str(out), "--verbose", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["stopped_by_time_budget"] and metrics["time_budget_seconds"] == 0.5
    header, row = (out / "history.csv").read_text().splitlines()
    rate = float(row.split(",")[header.split(",").index("learning_rate")])
    # Epoch 1 of the 3 planned, warmup a fifth of them: the rate at the epoch's middle is 0.5/3/0.2 of the peak.
    assert rate == pytest.approx(0.4 * (0.5 / 3) / 0.2)
    # A budget larger than --max-epochs need: the cap ends the run, which says so and is not a budget stop.
    capsys.readouterr()
    assert teacher.main(["--data-dir", str(tiny_tree), "--width", "4", "--epochs", "2", "--max-epochs", "2",
                         "--batch-size", "32", "--time-budget", "600", "--output", str(out), "--verbose", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and not metrics["stopped_by_time_budget"]
    assert "2 epochs ended before the 600 s budget" in capsys.readouterr().out
    assert teacher.main(["--data-dir", str(tiny_tree), "--time-budget", "0", "--output", str(out)]) == 2
    assert "--time-budget must be positive" in capsys.readouterr().err
