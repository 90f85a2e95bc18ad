"""Tests for keras_vit.plots: valid PNGs, history CSV, attention overlays."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_vit import metrics, plots


def assert_png(path, min_size=(50, 50)):
    """The file is a complete, decodable PNG of a plausible size."""
    assert os.path.getsize(path) > 0
    with Image.open(path) as im:
        im.verify()  # Raises on a truncated or corrupt file.
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width >= min_size[0] and im.height >= min_size[1]
    # Atomic save: no temporary files left next to the output.
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp") or ".tmp-" in n]


# --------------------------------------------------------------------------
# Confusion matrix (counted by keras_vit.metrics).


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion_matrix(tmp_path, normalize):
    cm = metrics.confusion_matrix([0, 1, 2, 2, 1], [0, 2, 2, 2, 1], 4)  # class 3 empty: no divide-by-zero
    path = plots.plot_confusion_matrix(
        cm, ["a", "b", "c", "d"], tmp_path / "sub" / "cm.png", normalize=normalize
    )
    assert path == tmp_path / "sub" / "cm.png"
    assert_png(path)
    with pytest.raises(ValueError, match="class names"):
        plots.plot_confusion_matrix(cm, ["a", "b"], tmp_path / "bad.png")


# --------------------------------------------------------------------------
# Training curves.


def test_read_history_csv(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(
        "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n"
        "0,0.25,0.001,2.0,0.3,1.9\n"
        "1,0.5,0.0005,1.5,,1.7\n"
        "2,0.6,0.0001,1.2,NA,NA\n"  # CSVLogger's mark for an epoch without validation
    )
    history = plots.read_history_csv(path)
    assert list(history) == ["epoch", "accuracy", "learning_rate", "loss", "val_accuracy", "val_loss"]
    assert history["loss"] == [2.0, 1.5, 1.2]
    assert history["epoch"] == [0.0, 1.0, 2.0]
    assert math.isnan(history["val_loss"][2])
    assert history["val_accuracy"][0] == 0.3 and math.isnan(history["val_accuracy"][1])
    assert_png(plots.plot_training_curves(history, tmp_path / "curves.png", title="run"))


def test_plot_training_curves_key_variants(tmp_path):
    class FakeHistory:  # Like keras.callbacks.History.
        history = {
            "loss": [2.3, 1.0, 0.05],  # big range: log scale
            "val_loss": [2.2, 1.2, 1.1],
            "sparse_categorical_accuracy": [0.1, 0.5, 0.9],
            "val_sparse_categorical_accuracy": [0.1, 0.4, 0.6],
            "top5_accuracy": [0.5, 0.8, 0.99],
            "lr": [1e-3, 1e-3, 1e-4],
        }

    assert_png(plots.plot_training_curves(FakeHistory(), tmp_path / "a.png"))
    # Only training loss; validation-only accuracy.
    assert_png(plots.plot_training_curves({"loss": [1.0, 0.5]}, tmp_path / "b.png"))
    assert_png(plots.plot_training_curves({"val_accuracy": [0.2, 0.4]}, tmp_path / "c.png"))
    with pytest.raises(ValueError, match="no loss or accuracy"):
        plots.plot_training_curves({"learning_rate": [0.1]}, tmp_path / "d.png")


# --------------------------------------------------------------------------
# ViT internals and image grids.


def test_unmasked_finish_is_shaded(tmp_path):
    history = {"epoch": [0, 1, 2, 3], "loss": [2.0, 1.5, 1.2, 1.1], "unmasked": [0.0, 0.0, 1.0, 1.0]}
    assert plots.unmasked_span(history) == (3.0, 4.0)
    assert plots.unmasked_span({"loss": [1.0], "unmasked": [0.0]}) is None
    assert plots.unmasked_span({"loss": [1.0]}) is None
    shaded = plots.plot_training_curves(history, tmp_path / "shaded.png").read_bytes()
    history["unmasked"] = [0.0] * 4
    assert shaded != plots.plot_training_curves(history, tmp_path / "plain.png").read_bytes()


def test_plot_patches(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert_png(plots.plot_patches(image, 8, tmp_path / "patches.png"))
    # Float 0..255 (the model's input convention) and grayscale images work too.
    assert_png(plots.plot_patches(image.astype("float32"), 16, tmp_path / "float.png"))
    assert_png(plots.plot_patches(image[..., :1], 8, tmp_path / "gray.png"))
    with pytest.raises(ValueError, match="does not divide"):
        plots.plot_patches(image, 5, tmp_path / "bad.png")


def test_position_similarity_values():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(1, 1 + 2 * 3, 8))  # with a class token row, as stored
    sims = plots.position_similarity(table, (2, 3))
    assert sims.shape == (6, 2, 3)
    flat = sims.reshape(6, 6)
    np.testing.assert_allclose(np.diag(flat), 1.0, atol=1e-6)
    np.testing.assert_allclose(flat, flat.T, atol=1e-6)
    a, b = table[0, 1], table[0, 2]  # positions 0 and 1 (class token dropped)
    assert flat[0, 1] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-6)
    with pytest.raises(ValueError, match="does not fit"):
        plots.position_similarity(table, (3, 3))
    # A distilled (DeiT) model stores class and distillation token rows first; both are dropped.
    distilled = rng.normal(size=(1, 2 + 2 * 3, 8))
    expected = plots.position_similarity(distilled[0, 2:], (2, 3))
    np.testing.assert_allclose(plots.position_similarity(distilled, (2, 3)), expected, atol=1e-6)
    with pytest.raises(ValueError, match="does not fit"):
        plots.position_similarity(rng.normal(size=(1, 3 + 2 * 3, 8)), (2, 3))


@pytest.mark.parametrize("options", [{}, {"distillation_token": True, "num_registers": 1}])
def test_plot_position_similarity_from_model(options, tmp_path):
    from keras_vit import build_vit

    encoder = build_vit("vit_micro", **options).get_layer("patch_encoder")
    path = plots.plot_position_similarity(encoder.position, encoder.grid_size, tmp_path / "pos.png")
    assert_png(path)


def test_plot_image_grid(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 255, (5, 32, 32, 3)).astype("float32")
    path = plots.plot_image_grid(
        images,
        [f"img {i}" for i in range(5)],
        tmp_path / "grid.png",
        ncols=3,
        title_colors=["green", "red", "green", "red", "green"],
        title="grid",
    )
    assert_png(path)
    assert_png(plots.plot_image_grid(images.astype("uint8"), None, tmp_path / "plain.png"))
    with pytest.raises(ValueError, match="titles"):
        plots.plot_image_grid(images, ["one"], tmp_path / "bad.png")


def test_to_display_image_scales():
    assert plots.to_display_image(np.full((2, 2, 3), 255, np.uint8)).max() == 1.0
    assert plots.to_display_image(np.full((2, 2, 3), 127.5, "float32")).max() == pytest.approx(0.5)
    assert plots.to_display_image(np.full((2, 2, 3), 0.5, "float32")).max() == pytest.approx(0.5)
    assert plots.to_display_image(np.ones((2, 2, 1), np.uint8)).shape == (2, 2)


def test_plot_validation_comparison_and_its_cli(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import compare_runs

    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("epoch,accuracy,val_accuracy\n0,0.3,\n1,0.4,0.35\n2,0.5,0.45\n")
    b.write_text("epoch,accuracy,val_accuracy\n0,0.3,0.3\n1,0.5,0.5\n2,0.6,0.55\n")
    assert (
        compare_runs.main([f"plain seed 0={a}", f"teacher seed 0={b}", "--output", str(tmp_path / "ab.png")])
        == 0
    )
    assert_png(tmp_path / "ab.png")
    no_validation = tmp_path / "c.csv"
    no_validation.write_text("epoch,accuracy\n0,0.3\n")
    assert compare_runs.main([f"c={no_validation}", "--output", str(tmp_path / "c.png")]) == 2
    assert compare_runs.main([f"d={tmp_path / 'missing.csv'}", "--output", str(tmp_path / "d.png")]) == 2
    with pytest.raises(SystemExit):
        compare_runs.main(["no-label", "--output", str(tmp_path / "e.png")])


# --------------------------------------------------------------------------
# Attention maps (computed by keras_vit.attention_maps; drawn here without Keras).


def test_upsample_map():
    up = plots.upsample_map(np.arange(4, dtype="float32").reshape(2, 2), (8, 6))
    assert up.shape == (8, 6)
    assert up.min() == 0.0 and up.max() == pytest.approx(1.0)
    assert not plots.upsample_map(np.ones((2, 2)), (4, 4)).any()
    with pytest.raises(ValueError, match="2-D"):
        plots.upsample_map(np.ones((1, 2, 2)), (4, 4))


def test_plot_attention_and_heads(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    maps = rng.random((3, 8, 8))
    assert_png(
        plots.plot_attention(
            images, maps, tmp_path / "maps.png", titles=["a", "b", "c"], ncols=2, title="rollout"
        )
    )
    assert_png(
        plots.plot_attention_heads(
            images[0].astype("uint8"), rng.random((4, 8, 8)), tmp_path / "heads.png", title="block 0"
        )
    )
    with pytest.raises(ValueError, match="one"):
        plots.plot_attention(images, maps[:2], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="titles"):
        plots.plot_attention(images, maps, tmp_path / "bad.png", titles=["a"])
    with pytest.raises(ValueError, match="per head"):
        plots.plot_attention_heads(images[0], maps[0], tmp_path / "bad.png")


def test_plots_need_no_keras():
    code = "import sys, keras_vit.plots; bad = [m for m in ('keras', 'tensorflow') if m in sys.modules]; assert not bad, bad"
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)


# --------------------------------------------------------------------------
# What the figures show, not only that they are PNGs: the figure each plot saves, caught at the save.


@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib figures the plots hand to their save, in order (the PNG files are still written)."""
    figures = []
    original = plots._save

    def keep(fig, path, **kwargs):
        figures.append(fig)
        return original(fig, path, **kwargs)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def _lines(ax):
    """`{legend label: (x, y, linestyle)}` of an axes' plotted lines."""
    return {
        line.get_label(): (list(line.get_xdata()), list(line.get_ydata()), line.get_linestyle())
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    }


def test_training_curves_plot_the_history_and_mark_the_best_validation_epoch(tmp_path, saved_figures):
    history = {
        "epoch": [0, 1, 2, 3],
        "loss": [2.0, 1.5, 1.2, 1.1],
        "val_loss": [2.1, 1.7, 1.6, 1.65],
        "accuracy": [0.2, 0.4, 0.5, 0.6],
        "val_accuracy": [0.25, float("nan"), 0.55, 0.5],  # validated every other epoch: NA rows skipped
        "learning_rate": [1e-3, 1e-3, 5e-4, 1e-4],
    }
    plots.plot_training_curves(history, tmp_path / "curves.png", title="run")
    (fig,) = saved_figures
    loss, accuracy, rate = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["Loss", "Accuracy", "Learning rate"]
    assert fig._suptitle.get_text() == "run"
    assert _lines(loss) == {
        "train": ([1, 2, 3, 4], [2.0, 1.5, 1.2, 1.1], "-"),
        "validation": ([1, 2, 3, 4], [2.1, 1.7, 1.6, 1.65], "--"),
    }
    lines = _lines(accuracy)
    assert lines["train"] == ([1, 2, 3, 4], [0.2, 0.4, 0.5, 0.6], "-")
    assert lines["validation"] == ([1, 3, 4], [0.25, 0.55, 0.5], "--")
    stars = [line for line in accuracy.get_lines() if line.get_marker() == "*"]
    assert len(stars) == 1 and list(stars[0].get_xdata()) == [3] and list(stars[0].get_ydata()) == [0.55]
    assert [text.get_text() for text in accuracy.texts] == ["best 0.5500\n(epoch 3)"]
    assert _lines(rate)["train"][1] == [1e-3, 1e-3, 5e-4, 1e-4]


def test_confusion_matrix_shows_the_row_normalised_counts(tmp_path, saved_figures):
    cm = metrics.confusion_matrix([0, 1, 2, 2, 1, 0], [0, 2, 2, 2, 1, 1], 3)  # rows: true class
    plots.plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "cm.png")
    plots.plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "counts.png", normalize=False)
    normalized, counts = (fig.axes[0] for fig in saved_figures)
    expected = cm / cm.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(normalized.get_images()[0].get_array(), expected)
    np.testing.assert_array_equal(counts.get_images()[0].get_array(), cm)
    assert normalized.get_title() == "Confusion matrix (row-normalised): accuracy 0.6667"
    assert [t.get_text() for t in counts.texts] == [str(int(v)) for v in cm.ravel()]
    assert [t.get_text() for t in normalized.texts] == [f"{v:.2f}" for v in expected.ravel()]
