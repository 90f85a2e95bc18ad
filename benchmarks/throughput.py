"""Training throughput of a preset: steady images/s, step time and MFU.

    KERAS_BACKEND=jax python benchmarks/throughput.py --preset vit_cifar10 \
        --batch-size 500 --mixed-precision bfloat16 --augment strong

Runs `ViTTrainer.fit` (the same train step and feed as `python -m keras_vit.train`,
augmentation included) for `--epochs` short epochs of `--steps` steps on
random uint8 images; the first epoch holds the compilation, the median of
the others gives the steady rate (`images_per_second_range`: the slowest and
fastest of them), and the median step of those epochs alone gives
`step_images_per_second` (what happens between epochs left out). MFU = achieved training FLOP/s (3 x the forward matrix
products, see `keras_vit.training.training_flops_per_image`) over the peak
dense rate of the device (`PEAK_TFLOPS` below, by device kind; no MFU on others). With
`--teacher-width W` the step also runs a teacher of that width forward
(`python -m keras_vit.train --teacher`; `--teacher-arch`: ResNet-9 or airbench),
twice with `--teacher-flip` (the mirror images too), `--teachers N` of them:
their forward FLOPs count in the MFU. The model flags are `train`'s
(`--num-heads`, `--pooling`, `--model-arg projection_dim=256`, ...), so a
shape timed here trains with the same flags. `--profile FOLDER` then traces
`--profile-steps` more steps of the same compiled step with the backend's
profiler (JAX or TensorFlow, for `benchmarks/op_profile.py`; on PyTorch its
operator table, `torch_ops.txt`). Prints one JSON line and
appends it to `--output` when given (`benchmarks/throughput_sweep.sh` times
several shapes in one GPU session).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_vit import build_vit, vit_arguments  # noqa: E402
from keras_vit.files import atomic_write_text  # noqa: E402
from keras_vit.model_flags import add_model_flags, flag_overrides  # noqa: E402
from keras_vit.models.flops import forward_flops_per_image, training_flops_per_image, training_sequence_length  # noqa: E402
from keras_vit.models.teachers import TEACHER_ARCHS, average_logits, build_teacher  # noqa: E402
from keras_vit.training.batches import TrainingBatches  # noqa: E402
from keras_vit.training.callbacks import EpochTimer  # noqa: E402
from keras_vit.training.optimizers import make_optimizer  # noqa: E402
from keras_vit.training.pipeline import describe_device  # noqa: E402
from keras_vit.training.recipes import AUGMENT_RECIPES, MIXED_PRECISION, training_recipe  # noqa: E402
from keras_vit.training.schedules import learning_rate_schedule  # noqa: E402
from keras_vit.training.tf_feed import fit_input  # noqa: E402
from keras_vit.training.trainer import make_trainer  # noqa: E402

# Dense peak rates (TFLOP/s) from the vendors' datasheets, for MFU.
PEAK_TFLOPS = {
    "H100": {"bfloat16": 989.0, "float16": 989.0, "float32": 67.0},
    "H200": {"bfloat16": 989.0, "float16": 989.0, "float32": 67.0},
}


def peak_for(device, precision):
    for name, table in PEAK_TFLOPS.items():
        if name in device:
            return table[
                "bfloat16" if "bfloat16" in precision else "float16" if "float16" in precision else "float32"
            ]
    return None


class StepTimer(keras.callbacks.Callback):
    """Seconds of each `train_function` call of the epochs after the first (the step, its data fetch
    included), without the epoch ends: there Keras and tf.data start a new iterator, whose cost a short
    benchmark epoch would count many times more often than training does (docs/experiments/README.md)."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch > 0:
            self.seconds.append(time.perf_counter() - self._start)


@contextlib.contextmanager
def profiler_trace(folder):
    """The backend's profiler around the block, its trace written under `folder`: JAX's and TensorFlow's
    `*.xplane.pb` (for `benchmarks/op_profile.py`), PyTorch's table of CPU operators `torch_ops.txt`."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        with jax.profiler.trace(str(folder)):
            yield
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.profiler.experimental.start(str(folder))
        try:
            yield
        finally:
            tf.profiler.experimental.stop()
    elif backend == "torch":  # a table of CPU operators by self time (no xplane file for op_profile.py)
        import torch

        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            yield
        table = profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)
        Path(folder).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(folder) / "torch_ops.txt", table)
    else:
        raise ValueError(f"no profiler trace on the {backend} backend (JAX, TensorFlow or PyTorch)")


def measure(
    preset,
    batch_size,
    steps,
    epochs,
    precision,
    augment,
    model_overrides=None,
    repeats=None,
    steps_per_execution=1,
    ema_momentum=None,
    teacher_width=0,
    teacher_flip=False,
    teacher_arch="resnet9",
    teachers=1,
    jit_compile="auto",
    profile=None,
    profile_steps=10,
):
    """Times `fit` on random images; returns the result row (a dict). `model_overrides`: `build_vit`
    keyword arguments over the preset's (`keras_vit.model_flags.flag_overrides` of the model flags). With
    `profile` (a folder), `profile_steps` more steps of the same compiled step run under the profiler after the
    timed epochs."""
    keras.mixed_precision.set_global_policy(MIXED_PRECISION[precision])
    model = build_vit(preset, **(model_overrides or {}))
    # A randomly initialised teacher costs what a trained one does (the trainer's default distillation).
    teacher = None
    if teacher_width:
        teacher = average_logits([build_teacher(teacher_arch, width=teacher_width) for _ in range(teachers)])
    trainer = make_trainer(
        model,
        training_recipe(augment, repeats),
        label_smoothing=0.1,
        seed=0,
        teacher=teacher,
        teacher_flip=teacher_flip,
    )
    schedule = learning_rate_schedule(1e-3, steps * epochs, steps)
    trainer.compile(
        optimizer=make_optimizer("adamw", schedule, ema_momentum=ema_momentum),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size * steps, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, batch_size * steps).astype("int32")
    # Epoch end is where Keras turns the logs into numbers, so the device is done.
    clock, step_clock = EpochTimer(batch_size * steps), StepTimer()
    # Fed as `python -m keras_vit.train` feeds it (`TrainingBatches` through `fit_input`).
    batches = fit_input(TrainingBatches(images, labels, batch_size))
    trainer.fit(batches, epochs=epochs, callbacks=[clock, step_clock], verbose=0)
    profile_error = None
    if profile:
        traced = batch_size * profile_steps
        try:
            with profiler_trace(profile):
                trainer.fit(
                    fit_input(TrainingBatches(images[:traced], labels[:traced], batch_size)), verbose=0
                )
        except Exception as error:  # noqa: BLE001 - a failed trace must not cost the timing above
            profile_error = f"{type(error).__name__}: {error}"
    # The median of the timed epochs; their spread shows how far one epoch's rate can be trusted
    # (one timed epoch alone can be far off: docs/experiments/README.md, "Training throughput and MFU").
    timed = [float(t) for t in clock.times[1:]]
    steady = float(np.median(timed))
    images_per_second = batch_size * steps / steady
    # steps_per_execution steps run in one call.
    step_seconds = float(np.median(step_clock.seconds)) / steps_per_execution
    teacher_flops = 0 if teacher is None else forward_flops_per_image(teacher) * (2 if teacher_flip else 1)
    flops = training_flops_per_image(model) + teacher_flops
    device = describe_device()
    shape = vit_arguments(model)
    peak = peak_for(device, MIXED_PRECISION[precision])
    return {
        "preset": preset,
        "model_overrides": dict(model_overrides or {}),
        "projection_dim": shape["projection_dim"],
        "depth": shape["depth"],
        "mlp_dim": shape["mlp_dim"],
        "pooling": shape["pooling"],
        "augment": augment,
        "num_heads": shape["num_heads"],
        "repeats": trainer.repeats,
        "num_registers": shape["num_registers"],
        "sequence_length": model.get_layer("patch_encoder").num_tokens,
        "shifted_patches": shape["shifted_patches"],
        "locality_attention": shape["locality_attention"],
        "patch_dropout": shape["patch_dropout"],
        "train_sequence_length": training_sequence_length(model),
        "steps_per_execution": steps_per_execution,
        "jit_compile": trainer.jit_compile,
        "ema_momentum": ema_momentum,
        "teacher_arch": teacher_arch if teacher is not None else None,
        "teachers": teachers if teacher is not None else 0,
        "teacher_width": teacher_width,
        "teacher_flip": teacher is not None and bool(teacher_flip),
        "teacher_gflops_per_image": round(teacher_flops / 1e9, 4),
        "batch_size": batch_size,
        "precision": MIXED_PRECISION[precision],
        "parameters": int(model.count_params()),
        "backend": keras.backend.backend(),
        "device": device,
        "images_per_second": round(images_per_second, 1),
        "step_ms": round(1000 * steady / steps, 3),
        # The median step alone, epoch ends left out (StepTimer).
        "step_images_per_second": round(batch_size / step_seconds, 1),
        "median_step_ms": round(1000 * step_seconds, 3),
        "images_per_second_range": [
            round(batch_size * steps / max(timed), 1),
            round(batch_size * steps / min(timed), 1),
        ],
        "timed_epochs": len(timed),
        "first_epoch_seconds": round(clock.times[0], 2),
        "steady_epoch_seconds": round(steady, 3),
        "compile_seconds_estimate": round(clock.times[0] - steady, 2),
        "train_gflops_per_image": round(flops / 1e9, 4),  # the teacher's forward included
        "achieved_tflops": round(flops * images_per_second / 1e12, 2),
        "mfu": None if peak is None else round(flops * images_per_second / (peak * 1e12), 4),
        "peak_tflops": peak,
        "profile": None
        if not profile
        else {"folder": str(profile), "steps": profile_steps, "error": profile_error},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="vit_tiny")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50, help="steps per timed epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (the first holds compilation)")
    parser.add_argument("--mixed-precision", default="none", choices=sorted(MIXED_PRECISION))
    parser.add_argument("--augment", default="strong", choices=sorted(AUGMENT_RECIPES))
    add_model_flags(
        parser
    )  # --num-heads, --pooling, --registers, --model-arg, ... as in python -m keras_vit.train
    parser.add_argument(
        "--repeats", type=int, default=None, help="repeated augmentation (default: the recipe's)"
    )
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile the step with XLA (default: Keras' choice, as python -m keras_vit.train)",
    )
    parser.add_argument("--ema-momentum", type=float, default=None)
    parser.add_argument(
        "--teacher-width",
        type=int,
        default=0,
        help="also run a teacher of this width forward in each step (0: none)",
    )
    parser.add_argument(
        "--teacher-arch",
        default="resnet9",
        choices=sorted(TEACHER_ARCHS),
        help="the teacher's network (python -m keras_vit.teacher --arch; default: %(default)s)",
    )
    parser.add_argument(
        "--teachers",
        type=int,
        default=1,
        help="with --teacher-width: this many teachers, their logits averaged (train's --teacher A B)",
    )
    parser.add_argument(
        "--teacher-flip",
        action="store_true",
        help="with --teacher-width: the teacher also classifies the mirror images (train's --teacher-flip)",
    )
    parser.add_argument(
        "--profile",
        default=None,
        metavar="FOLDER",
        help="after the timed epochs, trace --profile-steps more steps with the backend's profiler into FOLDER "
        "(read it with benchmarks/op_profile.py; on PyTorch, the operator table torch_ops.txt)",
    )
    parser.add_argument("--profile-steps", type=int, default=10)
    parser.add_argument("--output", default=None, help="append the JSON result to this file")
    args = parser.parse_args(argv)
    if args.profile and not 1 <= args.profile_steps <= args.steps:
        parser.error("--profile-steps must be between 1 and --steps")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first one compiles)")
    if args.teachers < 1:
        parser.error("--teachers must be at least 1")
    try:
        overrides = flag_overrides(args)  # the same flag handling as python -m keras_vit.train
    except ValueError as error:
        parser.error(str(error))
    result = measure(
        args.preset,
        args.batch_size,
        args.steps,
        args.epochs,
        args.mixed_precision,
        args.augment,
        overrides,
        args.repeats,
        args.steps_per_execution,
        args.ema_momentum,
        args.teacher_width,
        args.teacher_flip,
        args.teacher_arch,
        args.teachers,
        "auto" if args.jit_compile is None else args.jit_compile,
        args.profile,
        args.profile_steps,
    )
    line = json.dumps(result)
    print(line, flush=True)
    if args.output:
        with open(args.output, "a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
