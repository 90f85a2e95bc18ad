"""Makes the pictures of the shipped CIFAR-10 model (the README and docs/ show them).

    python benchmarks/figures.py --data-dir DIR --output benchmarks/results/figures

Writes: `patches.png` (a test image cut into its 4x4 patches), `augmentation.png` (what
`--augment lee2021` makes of eight images in three training batches), `position_similarity.png`
(cosine similarity of the learned position embeddings), `attention_rollout.png`
(rollout maps of correct and wrong predictions) and, through `python -m
keras_vit.evaluate`, `confusion_matrix.png` + `evaluation.json`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_vit import evaluate, load_pretrained  # noqa: E402
from keras_vit.attention_maps import rollout_map  # noqa: E402
from keras_vit.data import load_cifar10  # noqa: E402
from keras_vit.plots import plot_attention, plot_image_grid, plot_patches, plot_position_similarity  # noqa: E402
from keras_vit.pretrained import model_path  # noqa: E402
from keras_vit.training.recipes import training_recipe  # noqa: E402
from keras_vit.training.trainer import make_trainer  # noqa: E402


def plot_training_views(model, images, labels, names, path, recipe="lee2021", batches=3, seed=0):
    """The originals, then what `ViTTrainer.augment_batch` makes of them in `batches` training batches.

    Captions give the soft target: the class, or the two mixed classes with their weights.
    """
    trainer = make_trainer(model, training_recipe(recipe), seed=seed)
    shown, titles = list(images), [names[label] for label in labels]
    for _ in range(batches):
        augmented, targets, _ = trainer.augment_batch(images, labels)
        targets = np.asarray(targets)
        for image, target in zip(np.asarray(augmented), targets):
            top = np.argsort(target)[::-1][:2]
            mixed = target[top[1]] > 0.01
            shown.append(image)
            titles.append(
                f"{names[top[0]]} {target[top[0]]:.2f}\n{names[top[1]]} {target[top[1]]:.2f}"
                if mixed
                else names[top[0]]
            )
    return plot_image_grid(
        shown,
        titles,
        path,
        ncols=len(images),
        title=f"--augment {recipe}: originals (top row), then {batches} training batches",
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", default="benchmarks/results/figures")
    args = parser.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    model = load_pretrained()
    data = load_cifar10(args.data_dir, limit=1000, seed=0)
    names = data.class_names
    plot_patches(
        data.x_test[0], 4, out / "patches.png", title=f"a {names[data.y_test[0]]}, cut into 64 patches of 4x4"
    )
    plot_training_views(model, data.x_test[:8], data.y_test[:8], names, out / "augmentation.png")
    encoder = model.get_layer("patch_encoder")
    table = np.asarray(encoder.position)[0, 1:]  # without the class token's entry
    plot_position_similarity(
        table,
        encoder.grid_size,
        out / "position_similarity.png",
        title="learned position embeddings: similarity of each position to all others",
    )

    predictions = np.argmax(model.predict(data.x_test.astype("float32"), verbose=0), axis=-1)
    correct = np.flatnonzero(predictions == data.y_test)[:6]
    wrong = np.flatnonzero(predictions != data.y_test)[:6]
    chosen = np.concatenate([correct, wrong])
    maps = rollout_map(model, data.x_test[chosen])
    titles = [
        f"{names[predictions[i]]}"
        + ("" if predictions[i] == data.y_test[i] else f" (is {names[data.y_test[i]]})")
        for i in chosen
    ]
    plot_attention(
        data.x_test[chosen],
        maps,
        out / "attention_rollout.png",
        titles=titles,
        ncols=6,
        title="attention rollout: top row correct, bottom row wrong predictions",
    )

    return evaluate.main(
        [str(model_path()), "--output", str(out)] + (["--data-dir", args.data_dir] if args.data_dir else [])
    )


if __name__ == "__main__":
    sys.exit(main())
