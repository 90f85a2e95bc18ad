"""keras_vit's augmentation layers beside Keras' own, inside the same training step.

    python benchmarks/keras_augment.py --output benchmarks/results/keras_augment_DATE \
        --data-dir ../shared/data/cifar10-jpeg

Each comparison pairs one of ours (`keras_vit.training.augment`) with the Keras 3
layer a Keras user would reach for, at the settings that match it most closely
(`ARMS` says which); both run in `ViTTrainer`'s train step, never in the saved
model. Stages (`--stages`, default all), each writing JSON lines to `OUTPUT/`:

* `speed`: images/s of the augmentation alone (its `tf.function`) and of the whole
  train step (`ViTTrainer.fit`, `--preset`, `--batch-size`), on the current backend;
  every arm's trainer is built once and the arms are timed in interleaved rounds.
* `trace`: does a two-step `fit` run with the arm on TensorFlow (`tf.function`, and
  XLA with `jit_compile=True`), JAX (`jit`, float32 and mixed bfloat16) and PyTorch
  (eager)? One subprocess per backend; the JAX one also counts the loops in each arm's
  program (`jax_while_loops`).
* `randomness`: distinct outputs for 32 identical images (per-image randomness);
  for the mixing layers, distinct label weights in one batch, and how far the
  label weight is from the share of pixels really kept.
* `accuracy`: short training runs on CIFAR-10 (`--limit`, `--epochs`, `--seeds`)
  with crop+flip plus the arm, validation and test accuracy.

`summary.json` gathers the medians and ratios (Keras / ours) of every stage.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_vit import build_vit  # noqa: E402
from keras_vit.training import augment as ours  # noqa: E402
from keras_vit.training.batches import TrainingBatches  # noqa: E402
from keras_vit.training.optimizers import make_optimizer  # noqa: E402
from keras_vit.training.tf_feed import fit_input  # noqa: E402
from keras_vit.training.trainer import ViTTrainer  # noqa: E402

STAGES = ("speed", "trace", "randomness", "accuracy")


class KerasMixing(keras.layers.Layer):
    """Keras' `MixUp` / `CutMix` (which take and return `{"images", "labels"}`) behind the trainer's
    `mixing(images, targets)` call."""

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer

    enabled = True

    def call(self, images, targets):
        mixed = self.layer({"images": images, "labels": targets}, training=True)
        return mixed["images"], mixed["labels"]


# Each arm: (per-image layers, mixing layer) built from a seed. The Keras settings closest to ours:
# flip: a left-right mirror of half the images, drawn per image by both;
# crop+flip: 4-pixel reflect-padded crop = a translation of up to 4/32 = 0.125 with reflect fill and
#   nearest sampling (Keras' RandomCrop takes one offset per batch, so it is not the same thing);
# RandAugment: our magnitude 9 shears up to 0.27 and translates up to 27%, Keras' factor 0.27 does
#   the same (its rotation then reaches 0.27 turns, ours 27 degrees; its op is drawn per batch);
# erasing: probability 0.25 (Keras draws the probability uniformly from `factor`, so (0.25, 0.25)),
#   2% to 25% of the area; MixUp alpha 0.8; CutMix alpha 1.
ARMS = {
    "crop_flip": {
        "ours": lambda s: ([ours.RandomCropFlip(4, True, seed=s)], None),
        "keras": lambda s: (
            [
                keras.layers.RandomTranslation(
                    0.125, 0.125, fill_mode="reflect", interpolation="nearest", seed=s
                ),
                keras.layers.RandomFlip("horizontal", seed=s + 1),
            ],
            None,
        ),
    },
    "flip": {
        "ours": lambda s: ([ours.RandomCropFlip(0, True, seed=s)], None),
        "keras": lambda s: ([keras.layers.RandomFlip("horizontal", seed=s)], None),
    },
    "randaugment": {
        "ours": lambda s: ([ours.RandAugment(2, 9.0, seed=s)], None),
        "keras": lambda s: (
            [keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.27, seed=s)],
            None,
        ),
    },
    "erasing": {
        "ours": lambda s: ([ours.RandomErasing(0.25, area=(0.02, 0.25), seed=s)], None),
        "keras": lambda s: (
            [
                keras.layers.RandomErasing(
                    factor=(0.25, 0.25), scale=(0.02, 0.25), value_range=(0, 255), seed=s
                )
            ],
            None,
        ),
    },
    "mixup": {
        "ours": lambda s: ([], ours.MixUpCutMix(0.8, 0.0, seed=s)),
        "keras": lambda s: ([], KerasMixing(keras.layers.MixUp(alpha=0.8, seed=s))),
    },
    "cutmix": {
        "ours": lambda s: ([], ours.MixUpCutMix(0.0, 1.0, seed=s)),
        "keras": lambda s: ([], KerasMixing(keras.layers.CutMix(factor=(1.0, 1.0), seed=s))),
    },
}


def arm_names(comparisons):
    return [(comparison, side) for comparison in comparisons for side in ("ours", "keras")]


def make_arm_trainer(model, comparison, side, seed, base_crop_flip=False):
    """A `ViTTrainer` with the arm's layers (after our crop+flip when `base_crop_flip`)."""
    layers, mixing = ARMS[comparison][side](seed)
    if base_crop_flip and comparison != "crop_flip":
        layers = [ours.RandomCropFlip(4, True, seed=seed + 100), *layers]
    return ViTTrainer(model, layers, mixing, label_smoothing=0.1, name="vit_trainer")


def write_line(path, row):
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def random_batch(batch_size, seed=0, size=32):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, batch_size).astype("int32")
    return images, labels


class BatchClock(keras.callbacks.Callback):
    """Seconds of every train step (`train_function` call, data fetch included)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def augmentation_call(layers, mixing, num_classes=10):
    """The arm's augmentation of a batch as a `tf.function` (TensorFlow only: the other backends' jit
    needs the layers' seed state passed in and out; their figure is the whole step's)."""

    def run(images, labels):
        images = ops.cast(images, "float32")
        for layer in layers:
            images = layer(images, training=True)
        targets = ops.one_hot(labels, num_classes)
        if mixing is not None:
            images, targets = mixing(images, targets)
        return images, targets

    import tensorflow as tf

    return tf.function(run)


def stage_speed(args, out):
    comparisons = args.comparisons
    images, labels = random_batch(args.batch_size * args.steps)
    keras.mixed_precision.set_global_policy(args.policy)
    arms = [("none", "none")] + arm_names(comparisons)
    trainers, augmenters = {}, {}
    for comparison, side in arms:
        model = build_vit(args.preset)
        if comparison == "none":
            trainer = ViTTrainer(model, [], None, label_smoothing=0.1, name="vit_trainer")
        else:
            trainer = make_arm_trainer(model, comparison, side, seed=0)
        trainer.compile(optimizer=make_optimizer("adamw", 1e-3), metrics=["accuracy"])
        batches = fit_input(TrainingBatches(images, labels, args.batch_size))
        trainer.fit(batches, epochs=1, verbose=0, shuffle=False)  # compiles the step
        trainers[comparison, side] = (trainer, batches)
        if comparison != "none" and keras.backend.backend() == "tensorflow":
            call = augmentation_call(trainer.augmentation, trainer.mixing)
            call(images[: args.batch_size], labels[: args.batch_size])  # traces
            augmenters[comparison, side] = call
    step_times = {arm: [] for arm in arms}
    augment_times = {arm: [] for arm in augmenters}
    for round_index in range(args.rounds):
        order = arms if round_index % 2 == 0 else arms[::-1]  # interleaved, alternating direction
        for arm in order:
            trainer, batches = trainers[arm]
            clock = BatchClock()
            trainer.fit(batches, epochs=1, verbose=0, callbacks=[clock], shuffle=False)
            step_times[arm].extend(clock.seconds[1:])  # the first step waits on the new iterator
            if arm in augmenters:
                batch = images[: args.batch_size], labels[: args.batch_size]
                for _ in range(args.augment_calls):
                    start = time.perf_counter()
                    result = augmenters[arm](*batch)
                    np.asarray(result[0])  # waits for the device
                    augment_times[arm].append(time.perf_counter() - start)
    rows = []
    for arm in arms:
        step = statistics.median(step_times[arm])
        row = {
            "stage": "speed",
            "comparison": arm[0],
            "side": arm[1],
            "backend": keras.backend.backend(),
            "preset": args.preset,
            "batch_size": args.batch_size,
            "policy": args.policy,
            "step_ms": round(1000 * step, 3),
            "step_images_per_second": round(args.batch_size / step, 1),
            "steps_timed": len(step_times[arm]),
        }
        if arm in augment_times:
            alone = statistics.median(augment_times[arm])
            row["augment_ms"] = round(1000 * alone, 3)
            row["augment_images_per_second"] = round(args.batch_size / alone, 1)
        write_line(out / "speed.jsonl", row)
        rows.append(row)
    return rows


def jax_while_loops(comparison, side):
    """Loops in the JAX program of the arm's augmentation of a batch: `while` loops and `random_gamma` (the
    gamma sampler of `jax.random.beta`, a rejection loop when lowered); on a GPU each iteration of one waits
    for the device to say whether to go on."""
    import jax

    layers, mixing = ARMS[comparison][side](0)
    images = ops.convert_to_tensor(random_batch(8)[0].astype("float32"))
    targets = ops.one_hot(ops.arange(8) % 10, 10)
    calls = [(layer, (images,), {"training": True}) for layer in layers]
    if mixing is not None:
        calls.append((mixing, (images, targets), {}))
    loops = 0
    for layer, inputs, kwargs in calls:
        layer(*inputs, **kwargs)  # builds it
        state = [v.value for v in layer.non_trainable_variables]
        program = jax.make_jaxpr(
            lambda s, layer=layer, inputs=inputs, kwargs=kwargs: layer.stateless_call(
                [], s, *inputs, **kwargs
            )
        )(state)
        loops += str(program).count("while[") + str(program).count("random_gamma")
    return loops


TRACE_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, {bench!r})
sys.path.insert(0, {root!r})
import keras
import keras_augment as bench
from keras_vit import build_vit
from keras_vit.training.optimizers import make_optimizer
images, labels = bench.random_batch(16)
for comparison, side in {arms!r}:
    for jit, policy in {variants!r}:
        keras.mixed_precision.set_global_policy(policy)
        start = time.perf_counter()
        try:
            trainer = bench.make_arm_trainer(build_vit("vit_micro"), comparison, side, seed=0)
            trainer.compile(optimizer=make_optimizer("adamw", 1e-3), jit_compile=jit)
            history = trainer.fit({{"images": images, "labels": labels}}, labels, batch_size=8, epochs=1, verbose=0)
            loss = history.history["loss"][-1]
            result = "ok" if loss == loss else "nan loss"
        except Exception as error:  # the row records what failed, the line naming an unsupported op first
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            named = [line for line in lines if "unsupported operations" in line]
            named = named or [line for line in lines if "XLA" in line] or lines or [""]
            result = type(error).__name__ + ": " + named[0][:300]
        print(json.dumps({{"stage": "trace", "comparison": comparison, "side": side,
            "backend": keras.backend.backend(), "jit_compile": jit, "policy": policy, "result": result,
            "seconds": round(time.perf_counter() - start, 1)}}), flush=True)
    if keras.backend.backend() == "jax":
        keras.mixed_precision.set_global_policy("float32")
        print(json.dumps({{"stage": "trace", "comparison": comparison, "side": side, "backend": "jax",
            "while_loops": bench.jax_while_loops(comparison, side)}}), flush=True)
"""


# (jit_compile, dtype policy) per backend: TensorFlow's tf.function and XLA, JAX's jit in float32 and in the
# GPU recipes' mixed bfloat16, PyTorch eager.
TRACE_VARIANTS = {
    "tensorflow": [(False, "float32"), (True, "float32")],
    "jax": [(True, "float32"), (True, "mixed_bfloat16")],
    "torch": [(False, "float32")],
}


def stage_trace(args, out):
    arms = arm_names(args.comparisons)
    rows = []
    for backend, variants in TRACE_VARIANTS.items():
        script = TRACE_SCRIPT.format(
            bench=str(Path(__file__).resolve().parent),
            root=str(Path(__file__).resolve().parents[1]),
            arms=arms,
            variants=variants,
        )
        env = dict(os.environ, KERAS_BACKEND=backend)
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith('{"stage": "trace"')]
        expected = len(arms) * (len(variants) + (backend == "jax"))
        if done.returncode != 0 or len(lines) != expected:
            lines.append(
                json.dumps(
                    {
                        "stage": "trace",
                        "backend": backend,
                        "result": f"the {backend} run failed (exit {done.returncode}): {done.stderr[-500:]}",
                    }
                )
            )
        for line in lines:
            row = json.loads(line)
            write_line(out / "trace.jsonl", row)
            rows.append(row)
    return rows


def stage_randomness(args, out):
    rows = []
    image = random_batch(1, seed=1)[0]
    same = np.repeat(image, 32, axis=0).astype("float32")
    distinct_images, _ = random_batch(64, seed=2)
    for comparison, side in arm_names(args.comparisons):
        layers, mixing = ARMS[comparison][side](0)
        row = {
            "stage": "randomness",
            "comparison": comparison,
            "side": side,
            "backend": keras.backend.backend(),
        }
        if layers:
            outputs = same
            for layer in layers:
                outputs = layer(outputs, training=True)
            outputs = np.round(np.asarray(outputs), 2).reshape(32, -1)
            row["distinct_outputs_of_32_identical_images"] = len({o.tobytes() for o in outputs})
            if isinstance(layers[0], keras.layers.RandAugment):
                # Keras draws each round's operation index once: one operation for the whole batch.
                drawn = layers[0].get_random_transformation(same, training=True)["layer_idxes"]
                row["operation_indices_drawn_for_32_images"] = list(np.shape(drawn))
        else:
            labels = np.arange(64) % 10
            targets = np.eye(10, dtype="float32")[labels]
            images = distinct_images.astype("float32")
            mixed_images, mixed_targets = mixing(
                ops.convert_to_tensor(images), ops.convert_to_tensor(targets)
            )
            mixed_images, mixed_targets = np.asarray(mixed_images), np.asarray(mixed_targets)
            own_weight = mixed_targets[np.arange(64), labels]
            row["distinct_label_weights_in_a_batch_of_64"] = len(np.unique(np.round(own_weight, 4)))
            if comparison == "cutmix":
                # Share of each image's pixels left in place; the label weight should equal it.
                kept = np.mean(np.all(mixed_images == images, axis=-1), axis=(1, 2))
                partner_differs = np.any(images != images[::-1], axis=(1, 2, 3))
                row["label_weight_minus_kept_pixels_mean_abs"] = round(
                    float(np.mean(np.abs(own_weight - kept)[partner_differs])), 4
                )
        write_line(out / "randomness.jsonl", row)
        rows.append(row)
    return rows


def stage_accuracy(args, out):
    from keras_vit.training.pipeline import load_splits
    from keras_vit.training.schedules import learning_rate_schedule

    splits = load_splits(args.data_dir, limit=args.limit, seed=0).hold_out(0.2, seed=0)
    done = set()
    path = out / "accuracy.jsonl"
    if path.exists():  # resumes: arms already measured are skipped
        for line in path.read_text().splitlines():
            row = json.loads(line)
            done.add((row["comparison"], row["side"], row["seed"]))
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    arms = arm_names(args.comparisons)
    for seed in args.seeds:
        for comparison, side in arms:
            if (comparison, side, seed) in done:
                continue
            keras.utils.set_random_seed(seed)
            model = build_vit(args.preset)
            trainer = make_arm_trainer(model, comparison, side, seed=seed, base_crop_flip=True)
            batches = TrainingBatches(splits.x_train, splits.y_train, args.batch_size, seed=seed)
            schedule = learning_rate_schedule(1e-3, len(batches) * args.epochs, len(batches))
            trainer.compile(
                optimizer=make_optimizer("adamw", schedule, weight_decay=0.05), metrics=["accuracy"]
            )
            start = time.perf_counter()
            for epoch in range(args.epochs):
                batches.set_epoch(epoch)
                trainer.fit(fit_input(batches), epochs=1, verbose=0, shuffle=False)
            seconds = time.perf_counter() - start

            def accuracy(x, y):
                logits = model.predict(x, batch_size=500, verbose=0)
                return float(np.mean(np.argmax(logits, -1) == y))

            row = {
                "stage": "accuracy",
                "comparison": comparison,
                "side": side,
                "seed": seed,
                "preset": args.preset,
                "epochs": args.epochs,
                "train_images": len(splits.y_train),
                "validation_accuracy": round(accuracy(splits.x_val, splits.y_val), 4),
                "test_accuracy": round(accuracy(splits.x_test, splits.y_test), 4),
                "train_seconds": round(seconds, 1),
                "backend": keras.backend.backend(),
            }
            write_line(path, row)
            rows.append(row)
    return rows


def summarize(out):
    """Medians and Keras / ours ratios of every stage measured so far, into `summary.json`."""

    def read(name):
        path = out / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    summary = {}
    speed = {(r["comparison"], r["side"]): r for r in read("speed.jsonl")}
    for (comparison, side), row in speed.items():
        if side != "keras" or (comparison, "ours") not in speed:
            continue
        mine = speed[comparison, "ours"]
        entry = summary.setdefault(comparison, {})["speed"] = {
            "backend": row["backend"],
            "step_images_per_second": {
                "ours": mine["step_images_per_second"],
                "keras": row["step_images_per_second"],
            },
            "step_ratio_keras_over_ours": round(
                row["step_images_per_second"] / mine["step_images_per_second"], 3
            ),
        }
        if "augment_images_per_second" in row:
            entry["augment_images_per_second"] = {
                "ours": mine["augment_images_per_second"],
                "keras": row["augment_images_per_second"],
            }
            entry["augment_ratio_keras_over_ours"] = round(
                row["augment_images_per_second"] / mine["augment_images_per_second"], 3
            )
    if ("none", "none") in speed:
        summary["no_augmentation_step_images_per_second"] = speed["none", "none"]["step_images_per_second"]
    for row in read("trace.jsonl"):
        if "while_loops" in row:
            summary.setdefault(row["comparison"], {}).setdefault("jax_while_loops", {})[row["side"]] = row[
                "while_loops"
            ]
        elif "comparison" in row:
            key = row["backend"] + (" xla" if row["jit_compile"] and row["backend"] == "tensorflow" else "")
            key += " bf16" if row.get("policy") == "mixed_bfloat16" else ""
            summary.setdefault(row["comparison"], {}).setdefault("trace", {}).setdefault(row["side"], {})[
                key
            ] = row["result"]
    for row in read("randomness.jsonl"):
        fields = {k: v for k, v in row.items() if k not in ("stage", "comparison", "side", "backend")}
        summary.setdefault(row["comparison"], {}).setdefault("randomness", {})[row["side"]] = fields
    accuracy = {}
    for row in read("accuracy.jsonl"):
        accuracy.setdefault((row["comparison"], row["side"]), []).append(row)
    for (comparison, side), rows in accuracy.items():
        entry = summary.setdefault(comparison, {}).setdefault("accuracy", {})
        entry[side] = {
            "seeds": [r["seed"] for r in rows],
            "validation": [r["validation_accuracy"] for r in rows],
            "test": [r["test_accuracy"] for r in rows],
            "validation_mean": round(statistics.mean(r["validation_accuracy"] for r in rows), 4),
            "test_mean": round(statistics.mean(r["test_accuracy"] for r in rows), 4),
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output", type=Path, required=True, help="folder for the JSON lines and summary.json"
    )
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--comparisons", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument(
        "--preset", default="vit_tiny", help="model preset (default: the main job's vit_tiny)"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--policy", default="float32", choices=["float32", "mixed_bfloat16"], help="dtype policy (speed)"
    )
    parser.add_argument("--steps", type=int, default=8, help="train steps per timed fit (speed)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (speed)")
    parser.add_argument(
        "--augment-calls", type=int, default=5, help="augmentation-alone calls per round (speed)"
    )
    parser.add_argument("--data-dir", help="CIFAR-10 folder (accuracy)")
    parser.add_argument("--limit", type=int, default=5000, help="training images (accuracy)")
    parser.add_argument("--epochs", type=int, default=15, help="epochs (accuracy)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds (accuracy)")
    args = parser.parse_args(argv)
    if "accuracy" in args.stages and not args.data_dir:
        parser.error("the accuracy stage needs --data-dir")
    args.output.mkdir(parents=True, exist_ok=True)
    stages = {
        "speed": stage_speed,
        "trace": stage_trace,
        "randomness": stage_randomness,
        "accuracy": stage_accuracy,
    }
    for name in args.stages:
        stages[name](args, args.output)
    print(json.dumps(summarize(args.output), indent=1))


if __name__ == "__main__":
    main()
