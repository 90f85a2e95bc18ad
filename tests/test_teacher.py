"""The teachers (ResNet-9, airbench), their CLI, and distilling them into the ViT (ViTTrainer and keras_vit.train)."""

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



def _correlated_images(n=64, seed=0):
    """Images whose neighbouring pixels and channels are strongly correlated, as in photographs."""
    rng = np.random.default_rng(seed)
    smooth = rng.normal(size=(n, 8, 8, 1)).repeat(4, axis=1).repeat(4, axis=2)
    return np.clip(128 + 40 * smooth + 10 * rng.normal(size=(n, 32, 32, 3)), 0, 255).astype("float32")


def test_whitening_kernel_decorrelates_the_patches():
    images = _correlated_images() / 255.0
    kernel = teacher.whitening_kernel(images, kernel_size=2, epsilon=0.0)
    assert kernel.shape == (2, 2, 3, 24)
    # The first 12 filters map each 2x2x3 patch (in a Keras kernel's order) to unit-variance, uncorrelated outputs.
    windows = np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(1, 2))
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12).astype("float64")
    outputs = patches @ kernel.reshape(12, 24)
    covariance = outputs[:, :12].T @ outputs[:, :12] / len(outputs)
    np.testing.assert_allclose(covariance, np.eye(12), atol=1e-3)
    # The second half is the first, negated (GELU keeps both signs of each component).
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])
    # Strongest component first: before whitening the first filter's direction carries the most variance.
    raw = patches @ (kernel.reshape(12, 24)[:, :12] / np.linalg.norm(kernel.reshape(12, 24)[:, :12], axis=0))
    assert raw[:, 0].var() == pytest.approx(raw.var(axis=0).max())


def test_airbench_shape_initialisation_and_safe_mode_round_trip(tmp_path):
    # airbench94's network: 1.97 M parameters (batch-norm statistics included), 0.24 GFLOP an image.
    model = teacher.build_airbench((32, 32), num_classes=10, width=64)
    assert 1_950_000 < model.count_params() < 2_000_000
    w = 64
    convolutions = (31 * 31 * 3 * 24 * 4 + 9 * (31 * 31 * 24 * w + 15 * 15 * w * w + 15 * 15 * w * 4 * w
                                               + 7 * 7 * (4 * w) ** 2 + 7 * 7 * (4 * w) ** 2 + 3 * 3 * (4 * w) ** 2))
    assert teacher.forward_flops_per_image(model) == 2 * convolutions + 2 * 4 * w * 10
    images = _correlated_images(n=200)
    small = teacher.build_airbench((32, 32), num_classes=7, width=4, images=images)
    whiten = small.get_layer("whiten")
    assert not whiten.trainable and not whiten.trainable_weights
    np.testing.assert_allclose(keras.ops.convert_to_numpy(whiten.kernel),
                               teacher.whitening_kernel((images - images.mean((0, 1, 2))) / images.std((0, 1, 2))),
                               rtol=1e-4, atol=1e-4)
    # Identity initialisation: a block's second convolution passes its input through; the first passes its
    # input to its first filters.
    second = keras.ops.convert_to_numpy(small.get_layer("block2_conv2").kernel)
    np.testing.assert_array_equal(second[1, 1], np.eye(16))
    assert not second[0].any() and not second[2].any()
    first = keras.ops.convert_to_numpy(small.get_layer("block2_conv1").kernel)  # 4 -> 16 channels
    np.testing.assert_array_equal(first[1, 1, :, :4], np.eye(4))
    assert np.abs(first[..., 4:]).sum() > 0  # the other filters keep their random start
    logits = small.predict(images[:3], verbose=0)
    assert logits.shape == (3, 7) and logits.dtype == np.float32
    path = tmp_path / "airbench.keras"
    small.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # built-in layers only: no Lambda
    np.testing.assert_allclose(loaded.predict(images[:3], verbose=0), logits, atol=1e-5)
    with pytest.raises(ValueError, match="at least 16"):
        teacher.build_airbench((8, 8))
    with pytest.raises(ValueError, match="Unknown teacher arch"):
        teacher.build_teacher("resnet50")
    assert teacher.build_teacher("airbench", width=4).name == "airbench_teacher"

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



def test_load_teacher_averages_several_teachers(tmp_path):
    images = np.random.default_rng(2).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    members = [teacher.build_resnet9(width=4), teacher.build_airbench(width=4), teacher.build_resnet9(width=4)]
    paths = []
    for index, member in enumerate(members):
        paths.append(tmp_path / f"t{index}.keras")
        member.save(paths[-1])
    ensemble = teacher.load_teacher(paths, (32, 32), 10)
    assert not ensemble.trainable and not ensemble.trainable_weights
    expected = np.mean([member.predict(images, verbose=0) for member in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(images, verbose=0), expected, atol=1e-5)
    assert teacher.forward_flops_per_image(ensemble) == sum(teacher.forward_flops_per_image(m) for m in members)
    # One path, or a list of one: the teacher itself.
    assert teacher.load_teacher([paths[0]], (32, 32), 10).name == "resnet9_teacher"
    # The ensemble serialises with the trainer (built-in layers only) and comes back with the same outputs.
    config = keras.saving.serialize_keras_object(ensemble)
    again = keras.saving.deserialize_keras_object(config, safe_mode=True)
    again.set_weights(ensemble.get_weights())
    np.testing.assert_allclose(again.predict(images, verbose=0), expected, atol=1e-5)
    teacher.build_resnet9(num_classes=3, width=4).save(tmp_path / "three.keras")
    with pytest.raises(ValueError, match="3 outputs"):
        teacher.load_teacher([paths[0], tmp_path / "three.keras"], (32, 32), 10)

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
    assert saved["args"]["teacher"] == [str(out / "model.keras")] and saved["args"]["distillation"] == "soft"
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
    capsys.readouterr()
    assert train.main(args + ["--teacher-flip"]) == 2  # nothing to flip: said, not ignored
    assert "--teacher-flip needs --teacher" in capsys.readouterr().err
    assert teacher.main(["--data-dir", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o")]) == 2


def test_teacher_cli_airbench(tiny_tree, tmp_path):
    out = tmp_path / "airbench"
    assert teacher.main(["--arch", "airbench", "--data-dir", str(tiny_tree), "--width", "4", "--epochs", "2",
                         "--batch-size", "32", "--output", str(out), "--verbose", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["arch"] == "airbench" and metrics["epochs"] == 2
    assert 0.0 <= metrics["test_accuracy_flip"] <= 1.0
    # The arch's SGD settings unless given.
    assert metrics["args"]["learning_rate"] == 0.5 and metrics["args"]["weight_decay"] == 0.0133
    loaded = teacher.load_teacher(out / "model.keras", (32, 32), 10)
    assert loaded.name == "airbench_teacher" and not loaded.get_layer("whiten").trainable
    # Two teachers distilled at once: their logits averaged.
    other = tmp_path / "other.keras"
    teacher.build_resnet9(width=4).save(other)
    student = tmp_path / "student"
    assert train.main(["--preset", "vit_micro", "--epochs", "1", "--batch-size", "32", "--verbose", "0",
                       "--data-dir", str(tiny_tree), "--output", str(student),
                       "--teacher", str(out / "model.keras"), str(other)]) == 0
    saved = json.loads((student / "metrics.json").read_text())
    assert saved["args"]["teacher"] == [str(out / "model.keras"), str(other)]
    assert train.main(["--data-dir", str(tiny_tree), "--output", str(student),
                       "--teacher", str(other), str(tmp_path / "missing.keras")]) == 2


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


def test_teacher_ensemble_benchmark(tiny_tree, tmp_path):
    """benchmarks/teacher_ensemble.py: each teacher's test accuracy, plain and with flip, then their average's."""
    import importlib.util
    from pathlib import Path

    from keras_vit.data import load_cifar10

    spec = importlib.util.spec_from_file_location(
        "teacher_ensemble", Path(__file__).resolve().parents[1] / "benchmarks" / "teacher_ensemble.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    members = [teacher.build_resnet9(width=4), teacher.build_airbench(width=4)]
    paths = [str(tmp_path / f"t{i}.keras") for i in range(2)]
    for member, path in zip(members, paths):
        member.save(path)
    output = tmp_path / "ensemble.json"
    assert script.main([*paths, "--data-dir", str(tiny_tree), "--batch-size", "20", "--output", str(output)]) == 0
    rows = json.loads(output.read_text())["rows"]
    assert [row["teachers"] for row in rows] == [[paths[0]], [paths[1]], paths]
    test = load_cifar10(str(tiny_tree), splits=("test",))
    x, y = test.x_test, test.y_test
    logits = [m.predict(x, verbose=0) for m in members]
    mirrored = [m.predict(x[:, :, ::-1], verbose=0) for m in members]
    assert rows[0]["accuracy"] == pytest.approx(float(np.mean(logits[0].argmax(1) == y)))
    assert rows[2]["accuracy"] == pytest.approx(float(np.mean((logits[0] + logits[1]).argmax(1) == y)))
    assert rows[2]["accuracy_flip"] == pytest.approx(float(np.mean(sum(logits + mirrored).argmax(1) == y)))
    assert "accuracy_flip_shift" not in rows[2]
    from conftest import reference_tta_views

    assert script.main([*paths, "--data-dir", str(tiny_tree), "--batch-size", "20", "--tta", "flip-shift",
                        "--output", str(output)]) == 0
    rows = json.loads(output.read_text())["rows"]
    views = [sum(m.predict(view, verbose=0) for m in members) for view in reference_tta_views(x, "flip-shift")]
    assert rows[2]["accuracy_flip_shift"] == pytest.approx(float(np.mean(sum(views).argmax(1) == y)))
    assert rows[2]["accuracy_flip"] == pytest.approx(float(np.mean(sum(logits + mirrored).argmax(1) == y)))
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "missing.keras"), "--data-dir", str(tiny_tree)])
