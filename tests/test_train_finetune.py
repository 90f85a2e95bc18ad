"""python -m keras_vit.train --init-from: fine-tuning a pretrained ViT with layer-wise decay and frozen blocks."""

import csv
import json

import numpy as np
import pytest
from conftest import run_interrupted, write_colour_tree
from test_train import ARGS

from keras_vit import load_model, train
from keras_vit.models import build_vit


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 5-class, 3-block 'pretrained' ViT with non-zero weights everywhere, saved as .keras."""
    model = build_vit("vit_micro", num_classes=5, depth=3)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.2, w.shape).astype("float32") for w in model.get_weights()])
    path = tmp_path_factory.mktemp("pretrained") / "vit.keras"
    model.save(path)
    return path


def _args(tiny_tree, output, *extra):
    return [*ARGS, "--data-dir", str(tiny_tree), "--output", str(output), *extra]


def _layer_weights(model, name):
    return [np.asarray(w) for w in model.get_layer(name).get_weights()]


def test_fine_tuning_freezes_decays_and_writes_a_run(pretrained, tiny_tree, tmp_path, capsys):
    out = tmp_path / "fine"
    flags = [
        "--init-from",
        str(pretrained),
        "--layer-decay",
        "0.5",
        "--freeze-blocks",
        "1",
        "--drop-path",
        "0.1",
    ]
    assert train.main(_args(tiny_tree, out, *flags)) == 0
    printed = capsys.readouterr().out
    assert f"Training {pretrained} fine-tuned" in printed and "Frozen: " in printed
    for name in ("model.keras", "labels.txt", "history.csv", "curves.png", "metrics.json"):
        assert (out / name).stat().st_size > 0, name
    start, tuned = load_model(pretrained), load_model(out / "model.keras")
    assert tuned.output_shape == (None, 10)  # the data's classes: a new head
    assert tuned.get_config()["drop_path"] == 0.1 and tuned.get_config()["depth"] == 3
    for name in ("patch_encoder", "block_0"):  # frozen: bit for bit the checkpoint's
        for old, new in zip(_layer_weights(start, name), _layer_weights(tuned, name), strict=True):
            np.testing.assert_array_equal(old, new, err_msg=name)
    for name in ("block_1", "block_2", "encoder_norm"):  # trained
        moved = max(
            np.max(np.abs(a - b)) for a, b in zip(_layer_weights(start, name), _layer_weights(tuned, name))
        )
        assert moved > 1e-4, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["args"]["init_from"] == str(pretrained) and metrics["args"]["layer_decay"] == 0.5


def test_layer_decay_slows_the_lower_blocks(pretrained, tiny_tree, tmp_path):
    """One run with decay 0.1 against one without: block_0 (factor 0.1**3) moves far less, the head alike."""
    moves = {}
    for decay in (None, "0.1"):
        out = tmp_path / f"decay_{decay}"
        extra = ["--init-from", str(pretrained)] + (["--layer-decay", decay] if decay else [])
        assert train.main(_args(tiny_tree, out, *extra)) == 0
        start, tuned = load_model(pretrained), load_model(out / "model.keras")
        moves[decay] = {
            name: max(
                np.max(np.abs(a - b))
                for a, b in zip(_layer_weights(start, name), _layer_weights(tuned, name))
            )
            for name in ("block_0", "block_2")
        }
    assert moves["0.1"]["block_0"] < 0.05 * moves[None]["block_0"], moves
    assert moves["0.1"]["block_2"] < moves[None]["block_2"] and moves["0.1"]["block_2"] > 0, moves


def test_a_fine_tuning_run_resumes_to_the_uninterrupted_weights(pretrained, tiny_tree, tmp_path, monkeypatch):
    flags = ["--init-from", str(pretrained), "--layer-decay", "0.75", "--freeze-blocks", "1"]
    assert train.main(_args(tiny_tree, tmp_path / "whole", *flags)) == 0
    run_interrupted(train.main, _args(tiny_tree, tmp_path / "pieces", *flags))
    assert train.main(_args(tiny_tree, tmp_path / "pieces", *flags)) == 0
    whole = load_model(tmp_path / "whole" / "model.keras").get_weights()
    pieces = load_model(tmp_path / "pieces" / "model.keras").get_weights()
    for a, b in zip(whole, pieces, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layer-decay", "0.5"], "need --init-from"),
        (["--freeze-blocks", "1"], "need --init-from"),
        (["--init-from", "{pretrained}", "--layer-decay", "1.5"], "--layer-decay must be in (0, 1]"),
        (["--init-from", "{pretrained}", "--num-heads", "4"], "num_heads cannot be changed"),
        # The whole line: a missing file is no failure of a source's library ("cannot load ...: OSError").
        (["--init-from", "{missing}"], "error: --init-from {missing}: model file {missing} does not exist\n"),
        (["--init-from", "{pretrained}", "--freeze-blocks", "4"], "cannot freeze 4 blocks of a ViT with 3"),
        # safetensors' own error (no OSError or ValueError): one line, as python -m keras_vit.convert says it.
        (["--init-from", "{truncated}"], "cannot load {truncated}: SafetensorError: "),
    ],
)
def test_bad_fine_tuning_flags_say_why(pretrained, tiny_tree, tmp_path, capsys, extra, message):
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text(json.dumps({"model_type": "vit"}))
    (truncated / "model.safetensors").write_bytes(b"\x05")  # a download cut short
    paths = {"pretrained": pretrained, "missing": tmp_path / "missing.keras", "truncated": truncated}
    message = message.format(**paths)
    extra = [value.format(**paths) for value in extra]
    assert train.main(_args(tiny_tree, tmp_path / "run", *extra)) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error
    assert not (tmp_path / "run" / "model.keras").exists()


def test_a_fine_tuning_runs_own_patch_dropout_allows_an_unmasked_finish(pretrained, tiny_tree, tmp_path):
    """--unmasked-finish needs a model that leaves tokens out: the run's own --patch-dropout counts, though the
    checkpoint's is 0 (one epoch: the finish is all of it)."""
    assert load_model(pretrained).get_config()["patch_dropout"] == 0
    out = tmp_path / "fine"
    flags = [
        "--init-from",
        str(pretrained),
        "--patch-dropout",
        "0.5",
        "--unmasked-finish",
        "0.5",
        "--epochs",
        "1",
    ]
    assert train.main(_args(tiny_tree, out, *flags)) == 0
    assert json.loads((out / "metrics.json").read_text())["unmasked_from_epoch"] == 1
    assert load_model(out / "model.keras").get_config()["patch_dropout"] == 0.5


def test_fine_tuning_a_converted_hugging_face_folder(tiny_tree, tmp_path):
    """A random-weight transformers ViT saved as safetensors (5 classes) fine-tunes on the 10-class folder:
    a new zero head, the loss falls, and the run's model keeps the checkpoint's normalization."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from safetensors.numpy import save_file

    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=5,
    )
    torch.manual_seed(0)
    source = transformers.ViTForImageClassification(config)
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file(
        {k: v.detach().numpy().copy() for k, v in source.state_dict().items()},
        str(folder / "model.safetensors"),
    )
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3})
    )
    out = tmp_path / "fine"
    args = _args(
        tiny_tree, out, "--init-from", str(folder), "--layer-decay", "0.75", "--learning-rate", "3e-3"
    )
    args[args.index("--epochs") + 1] = "4"
    assert train.main(args) == 0
    tuned = load_model(out / "model.keras")
    assert tuned.output_shape == (None, 10)
    assert tuned.get_config()["mean"] == pytest.approx([127.5] * 3)
    assert tuned.get_config()["std"] == pytest.approx([63.75] * 3)
    with open(out / "history.csv", newline="") as file:
        losses = [float(row["loss"]) for row in csv.DictReader(file)]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0], losses


# A 3-class folder of 48x48 images (the checkpoint was built at 32x32 with 5 classes).
CLASSES_48 = ("ant", "bee", "cat")


@pytest.fixture(scope="module")
def tree_48(tmp_path_factory):
    """A learnable 3-class image tree of 48x48 images: each class a colour, plus noise."""
    # 12 training images a class (the default): the 10% validation split keeps one a class.
    return write_colour_tree(tmp_path_factory.mktemp("tree_48"), CLASSES_48, size=48, seed=1)


def _spy_on_the_start(monkeypatch):
    """Records what `fine_tuning_start` was asked for and the model it returned, before any training."""
    seen = {}
    from keras_vit.training import train_command

    original = train_command.fine_tuning_start

    def spy(model, image_size, num_classes, overrides=None, head=None):
        start = original(model, image_size, num_classes, overrides, head=head)
        seen.update(image_size=tuple(image_size), num_classes=num_classes)
        seen["position"] = np.array(start.get_layer("patch_encoder").position.numpy())
        seen["head"] = _layer_weights(start, "head")
        return start

    monkeypatch.setattr(train_command, "fine_tuning_start", spy)
    return seen


def test_fine_tuning_at_another_resolution(pretrained, tree_48, tmp_path, monkeypatch):
    """--init-from a 32x32 checkpoint with --image-size 48 on a folder of 48x48 images: the run starts from the
    checkpoint with its position embedding resampled to the 6x6 patch grid and a new zero 3-class head, and
    model.keras takes 48x48 images."""
    seen = _spy_on_the_start(monkeypatch)
    out = tmp_path / "fine_48"
    assert train.main(_args(tree_48, out, "--init-from", str(pretrained), "--image-size", "48")) == 0
    checkpoint = load_model(pretrained)
    old = checkpoint.get_layer("patch_encoder")
    assert old.position.shape == (1, 4 * 4 + 1, 32)  # 32x32 in 8x8 patches, and the class token

    assert seen["image_size"] == (48, 48) and seen["num_classes"] == len(CLASSES_48)
    assert seen["position"].shape == (1, 6 * 6 + 1, 32)
    expected = np.asarray(old.resampled_position_embedding((6, 6)))
    np.testing.assert_allclose(seen["position"], expected, atol=1e-6)
    np.testing.assert_array_equal(seen["position"][:, 0], old.position.numpy()[:, 0])  # the class token's
    kernel, bias = seen["head"]
    assert kernel.shape == (32, 3) and not np.any(kernel) and not np.any(bias)

    tuned = load_model(out / "model.keras")
    assert tuned.input_shape == (None, 48, 48, 3) and tuned.output_shape == (None, 3)
    assert tuned.get_layer("patch_encoder").position.shape == (1, 37, 32)
    assert np.any(tuned.get_layer("head").kernel.numpy())  # trained from zero
    assert (out / "labels.txt").read_text().split() == list(CLASSES_48)
    assert json.loads((out / "metrics.json").read_text())["args"]["image_size"] == 48


def test_fine_tuning_loads_a_folder_at_the_checkpoint_size_by_default(
    pretrained, tree_48, tmp_path, monkeypatch
):
    """Without --image-size the folder loads at the checkpoint's 32x32 (--image-size's help): no resampling."""
    seen = _spy_on_the_start(monkeypatch)
    out = tmp_path / "fine_32"
    assert train.main(_args(tree_48, out, "--init-from", str(pretrained))) == 0
    assert seen["image_size"] == (32, 32) and seen["position"].shape == (1, 17, 32)
    np.testing.assert_array_equal(
        seen["position"], load_model(pretrained).get_layer("patch_encoder").position
    )
    assert load_model(out / "model.keras").input_shape == (None, 32, 32, 3)


def test_an_error_of_the_sources_library_is_one_line(tmp_path, monkeypatch, capsys):
    """timm's unknown model (a RuntimeError) is worded as python -m keras_vit.convert words it."""
    from keras_vit.training import finetune

    def unknown(spec, **options):
        raise RuntimeError("Unknown model (vit_tyni)\nmore lines")

    monkeypatch.setattr(finetune, "load_source", unknown)
    args = [*ARGS, "--init-from", "timm:vit_tyni", "--output", str(tmp_path / "run")]
    assert train.main(args) == 2
    assert capsys.readouterr().err == (
        "error: --init-from timm:vit_tyni: cannot load timm:vit_tyni: RuntimeError: Unknown model (vit_tyni)\n"
    )


def _labelled_checkpoint(folder, names):
    """A 3-class 32x32 'pretrained' ViT with non-zero weights, saved with `names` (None: none) as its labels twin."""
    model = build_vit("vit_micro", num_classes=3)
    rng = np.random.default_rng(2)
    model.set_weights([rng.normal(0, 0.2, w.shape).astype("float32") for w in model.get_weights()])
    folder.mkdir()
    model.save(folder / "vit.keras")
    if names is not None:
        (folder / "vit.labels.txt").write_text("".join(f"{name}\n" for name in names))
    return folder / "vit.keras", model.get_layer("head").get_weights()


@pytest.mark.parametrize(
    ("names", "columns", "said"),
    [
        (("bee", "cat", "ant"), (2, 0, 1), "rows reordered to the data's order"),  # the data: ant, bee, cat
        (("ant", "bee", "cat"), (0, 1, 2), "Head: the checkpoint's, kept: the data's classes"),
        (
            ("ant", "bee", "dog"),
            None,
            "Head: new, zero, for the data's 3 classes: the checkpoint's 3 classes",
        ),
        (None, (0, 1, 2), "its class names are unknown (no labels file beside"),
    ],
)
def test_the_checkpoints_head_follows_its_class_names(
    tree_48, tmp_path, monkeypatch, capsys, names, columns, said
):
    """A 3-class checkpoint on the 3-class folder: its head is kept for the same names, its rows reordered for the
    same names in another order, new and zero for other names; without names it is kept, and the line says so."""
    checkpoint, (kernel, bias) = _labelled_checkpoint(tmp_path / "checkpoint", names)
    seen = _spy_on_the_start(monkeypatch)
    args = _args(tree_48, tmp_path / "run", "--init-from", str(checkpoint), "--epochs", "1")
    assert train.main(args) == 0
    new_kernel, new_bias = seen["head"]
    if columns is None:
        assert not np.any(new_kernel) and not np.any(new_bias)
    else:
        np.testing.assert_array_equal(new_kernel, kernel[:, list(columns)])
        np.testing.assert_array_equal(new_bias, bias[list(columns)])
    heads = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Head: ")]
    assert len(heads) == 1 and said in heads[0], heads


def test_fine_tuning_starts_from_a_hugging_face_backbone(tree_48, tmp_path, monkeypatch, capsys):
    """A transformers ViTModel folder (no classifier) gets a new zero head of the data's classes; without its
    preprocessor_config.json, the one line says how to convert it with its statistics first."""
    from tests.convert.test_sources import save_hugging_face_folder

    folder = tmp_path / "backbone"
    save_hugging_face_folder(folder, model_class="ViTModel")
    seen = _spy_on_the_start(monkeypatch)
    args = _args(tree_48, tmp_path / "run", "--init-from", str(folder), "--epochs", "1")
    assert train.main(args) == 0
    kernel, bias = seen["head"]
    assert kernel.shape == (64, 3) and not np.any(kernel) and not np.any(bias)
    assert "Head: new, zero, for the data's 3 classes (the checkpoint has none)" in capsys.readouterr().out
    (folder / "preprocessor_config.json").unlink()
    assert train.main(_args(tree_48, tmp_path / "run2", "--init-from", str(folder))) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "pass `mean`" not in error, error
    assert f"python -m keras_vit.convert {folder} OUT.keras --mean R G B --std R G B" in error
    assert not (tmp_path / "run2" / "model.keras").exists()
