"""keras_vit against PyTorch + timm and airbench94 on one GPU, in one run.

    bash benchmarks/peers_gpu.sh                      # the body of a GPU-machine `run` call (see there)
    python benchmarks/peers_gpu.py --data DIR --output DIR
    python benchmarks/peers_gpu.py --tiny --output /tmp/peers   # the CPU path: seconds of each side

1. **The training step and the accuracy at equal seconds.** keras_vit (`python -m keras_vit.train`, Keras on
   JAX) and timm (`benchmarks/peers_gpu_torch.py`: a `VisionTransformer` of the same shape with
   `torch.compile`, bfloat16 autocast and fused AdamW) train the same ViT with the same recipe for `--budget`
   seconds each: the `cifar10_gpu` recipe's optimiser, rate, weight decay, label smoothing and batch, warmup +
   cosine planned over the epochs that fit and re-planned every epoch, the data on the device, crop (reflect
   padding 4) and flip on the device, no other augmentation on either side. The steady images/s is the
   median epoch after the first (which holds compilation); MFU counts keras_vit's training FLOPs of the shape
   (`keras_vit.models.flops`) against the device's dense bfloat16 peak (`benchmarks/throughput.py`).
2. **The JPEG copy's cost.** airbench94's `train94` as published, `--airbench-runs` times on arrays read from
   the copy (its `train.pt` / `test.pt`): its mean accuracy here against its 94.0% on the original files. With
   `--teacher-archs`, `python -m keras_vit.teacher`'s ports of airbench and ResNet-9 run beside it.
3. **Where each step's time goes** (`--profile-steps`, 0: no profiles). timm's trained step runs that many more
   steps under `torch.profiler` in its own process (its kernel table: `timm_step_profile.txt`; its time by kind
   of kernel: the `profile` line); keras_vit's step (`benchmarks/throughput.py`: the same model, optimizer,
   batch, precision and crop+flip, on random images) is traced with `jax.profiler` into
   `keras_vit_step.xplane.pb.gz`, which `benchmarks/op_profile.py` reads where xprof is installed (the GPU
   machine has none).

Each side is a fresh process, one after another (each may take the whole device). A side that would end past
`--deadline` seconds from the start is not started and says so; a side that cannot run here (timm or airbench
missing, airbench without CUDA) writes one `skipped` line with the reason. Writes `peers_gpu.jsonl` (a line per
measurement, appended as each ends: a run killed at its limit keeps the lines before), then `peers_gpu.md` (the
side-by-side table with the ratios) and `peers_gpu.png`, and the two profiles: six files with the log.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This process only loads data and counts FLOPs, on JAX's CPU (the GPU machine has no TensorFlow): it leaves
# the accelerator to the sides' processes.
_CHILD_ENV = dict(os.environ)
os.environ.update(JAX_PLATFORMS="cpu", KERAS_BACKEND="jax")

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from keras_vit.files import atomic_path, atomic_write_text  # noqa: E402
from keras_vit.recipes import TRAINING_RECIPES  # noqa: E402

RECIPE = TRAINING_RECIPES["cifar10_gpu"]["flags"]
# The cifar10_gpu run's ViT (vit_cifar10 with 12 heads of 16 and the register its cuDNN attention needs).
GPU_SHAPE = dict(
    patch_size=4, projection_dim=192, depth=9, num_heads=12, mlp_dim=384, num_registers=1, drop_path=0.1
)
# --tiny: the CPU path, seconds per side.
TINY_SHAPE = dict(
    patch_size=8, projection_dim=32, depth=2, num_heads=2, mlp_dim=64, num_registers=0, drop_path=0.0
)
TEACHER_ARCHS = ("airbench", "resnet9")
# Both ViT sides: the global gradient-norm clip (python -m keras_vit.train's --clipnorm default) and AdamW's epsilon
# (Keras'; torch's default is 1e-8).
CLIPNORM = 1.0
ADAM_EPSILON = 1e-7
# The least time a side's process is given, whatever --deadline says.
MIN_CHILD_SECONDS = 60.0
# Seconds a side takes beyond its training budget (start-up, compilation, data, scoring), to keep to --deadline.
OVERHEAD_SECONDS = {"keras_vit": 60, "timm": 85, "airbench": 40, "profile": 60, "teacher": 60}
# (timm's includes its profile, which runs in its process after its training.)
# The profiles' files under --output.
TIMM_PROFILE_TABLE = "timm_step_profile.txt"
KERAS_TRACE = "keras_vit_step.xplane.pb.gz"


def child_env(**extra):
    """The environment the sides run in: this process's own (its PYTHONPATH, e.g. the GPU machine's wheels, then
    the repository), without its CPU-only JAX."""
    path = os.pathsep.join(filter(None, [_CHILD_ENV.get("PYTHONPATH"), str(ROOT)]))
    return dict(_CHILD_ENV, PYTHONPATH=path, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", **extra)


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


class Report:
    """The measurements so far, each appended to `peers_gpu.jsonl` as it arrives."""

    def __init__(self, output, common):
        self.path = Path(output) / "peers_gpu.jsonl"
        self.common = common
        self.rows = []

    def add(self, row):
        row = {**self.common, **row}
        self.rows.append(row)
        with open(self.path, "a") as file:
            file.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    def find(self, framework, measurement):
        """The measurements of `framework` (skipped and failed lines have no measurement)."""
        return [r for r in self.rows if r["framework"] == framework and r.get("measurement") == measurement]


def save_arrays(splits, folder):
    """The uint8 images and labels the PyTorch side reads (`{train,test}_{x,y}.npy`)."""
    import numpy as np

    for name, array in (
        ("train_x", splits.x_train),
        ("train_y", splits.y_train),
        ("test_x", splits.x_test),
        ("test_y", splits.y_test),
    ):
        np.save(Path(folder) / f"{name}.npy", array)


def flops_and_peak(shape, device):
    """keras_vit's training FLOPs per image of `shape` and the device's dense bfloat16 peak (None: unknown)."""
    from throughput import peak_for

    from keras_vit import build_vit
    from keras_vit.models.flops import training_flops_per_image

    model = build_vit("vit_cifar10", **vit_overrides(shape))
    return training_flops_per_image(model), peak_for(device, "bfloat16")


def vit_overrides(shape):
    keys = ("patch_size", "projection_dim", "depth", "num_heads", "mlp_dim", "num_registers", "drop_path")
    return {key: shape[key] for key in keys}


def mfu(images_per_second, flops, peak):
    return (
        None if peak is None or not images_per_second else round(flops * images_per_second / (peak * 1e12), 4)
    )


def first_epoch_estimate(budget):
    """Both ViT sides' first estimate of the epochs in `budget` seconds (each re-plans from its measured epochs)."""
    return max(2, int(budget / 1.5))


def run_keras(args, shape, work):
    """`python -m keras_vit.train` for `--budget` seconds of fit; its metrics.json as a row."""
    output = Path(work) / "keras_vit"
    # The first estimate of the epochs (the time budget re-plans from the measured ones) and a 10% warmup.
    epochs = first_epoch_estimate(args.budget)
    command = [sys.executable, "-m", "keras_vit.train", "--recipe", "cifar10_gpu", *shape_flags(shape)]
    command += ["--data-dir", str(args.data), "--augment", "basic", "--batch-size", str(args.batch_size)]
    command += ["--epochs", str(epochs), "--warmup-epochs", str(epochs / 10), "--max-epochs", "100000"]
    command += ["--time-budget", str(args.budget), "--time-limit", str(args.budget + 15)]
    command += ["--mixed-precision", args.precision, "--output", str(output), "--verbose", "2", "--fresh"]
    command += ["--validation-freq", "100000", "--checkpoint-every", "100000", "--clipnorm", str(CLIPNORM)]
    if args.limit:
        command += ["--limit", str(args.limit)]
    result = run_child(args, command, "keras_vit.train", env=child_env(KERAS_BACKEND="jax"), cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"keras_vit.train failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    metrics = json.loads((output / "metrics.json").read_text())
    with open(output / "history.csv", newline="") as file:
        first_epoch = float(next(csv.DictReader(file))["epoch_seconds"])
    # The rate is the median epoch after the first (keras_vit.training.pipeline); the first alone holds compilation.
    steady = metrics["epochs"] > 1
    rate = metrics["train_images_per_second"] if steady else None
    import jax
    import keras

    return {
        "framework": "keras_vit",
        "measurement": "train",
        "versions": {"keras": keras.__version__, "jax": jax.__version__},
        "device": metrics["device"],
        "parameters": metrics["parameters"],
        "batch_size": args.batch_size,
        "epochs": metrics["epochs"],
        "seconds": metrics["wall_clock_seconds"],
        "first_epoch_seconds": round(first_epoch, 2),
        "steady_epochs": metrics["epochs"] - 1,
        "images_per_second": rate,
        "step_ms": round(1000 * args.batch_size / rate, 3) if rate else None,
        "images_per_epoch": metrics["images_per_epoch"],
        "accuracy": metrics["test_accuracy"],
    }


class SideFailed(RuntimeError):
    """A side's process failed or ran out of time; `rows` holds the measurements it printed before."""

    def __init__(self, message, rows=()):
        super().__init__(message)
        self.rows = list(rows)


def run_child(args, command, what, **kwargs):
    """`command`'s finished process (output captured, its stderr's end echoed); one still running past
    `--deadline` (and a margin) is killed and raises `SideFailed` with the lines it printed."""
    timeout = max(MIN_CHILD_SECONDS, args.deadline - (time.monotonic() - args.start) + 30.0)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as error:
        printed = (
            error.stdout.decode(errors="replace") if isinstance(error.stdout, bytes) else error.stdout or ""
        )
        raise SideFailed(
            f"{what} still running after {timeout:.0f} s (--deadline): killed", json_lines(printed)
        )
    sys.stderr.write(result.stderr[-2000:])
    return result


def run_torch(args, job):
    """One task of benchmarks/peers_gpu_torch.py in `--torch-python`; its JSON lines."""
    command = [args.torch_python, str(HERE / "peers_gpu_torch.py"), json.dumps(job)]
    result = run_child(args, command, f"peers_gpu_torch.py {job['task']}", env=child_env())
    rows = json_lines(result.stdout)
    if result.returncode != 0 or not rows:
        message = (
            f"peers_gpu_torch.py {job['task']} failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
        )
        raise SideFailed(message, rows)
    return rows


def shape_flags(shape):
    """`python -m keras_vit.train`'s (and `benchmarks/throughput.py`'s) flags for `shape` over `vit_cifar10`."""
    flags = ["--preset", "vit_cifar10", "--num-heads", str(shape["num_heads"])]
    flags += ["--registers", str(shape["num_registers"]), "--drop-path", str(shape["drop_path"])]
    for key in ("patch_size", "projection_dim", "depth", "mlp_dim"):
        flags += ["--model-arg", f"{key}={shape[key]}"]
    return flags


def profile_keras(args, shape, output):
    """keras_vit's step (`benchmarks/throughput.py`, the run's model, batch, precision and crop+flip) timed, then
    `--profile-steps` steps traced with `jax.profiler`; the trace kept as one compressed file under `output`.
    Returns the `profile` row."""
    # 30 timed steps: their median is the step's time (profile_summary shows it).
    steps = max(args.profile_steps, 30) if not args.tiny else args.profile_steps
    with tempfile.TemporaryDirectory() as folder:
        lines = Path(folder) / "throughput.jsonl"
        command = [sys.executable, str(HERE / "throughput.py"), *shape_flags(shape)]
        command += ["--batch-size", str(args.batch_size), "--mixed-precision", args.precision]
        command += ["--augment", "basic", "--steps", str(steps), "--epochs", "2", "--output", str(lines)]
        command += ["--profile", str(Path(folder) / "trace"), "--profile-steps", str(args.profile_steps)]
        result = run_child(args, command, "throughput.py", env=child_env(KERAS_BACKEND="jax"), cwd=ROOT)
        if result.returncode != 0:
            raise RuntimeError(f"throughput.py failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
        timed = json.loads(lines.read_text().splitlines()[-1])
        traces = sorted((Path(folder) / "trace").rglob("*.xplane.pb"))
        trace = traces[0].read_bytes() if traces else b""
        if trace:
            with atomic_path(Path(output) / KERAS_TRACE) as target, gzip.open(target, "wb") as sink:
                sink.write(trace)
    error = timed["profile"]["error"] or (None if trace else "jax.profiler wrote no .xplane.pb")
    if not error and not args.tiny and b"/device:GPU:" not in trace:
        error = "the trace holds no GPU plane (the device's kernels were not recorded)"
    return {
        "framework": "keras_vit",
        "measurement": "profile",
        "device": timed["device"],
        "profiled_steps": args.profile_steps,
        "images_per_second": timed["images_per_second"],
        "step_ms": timed["step_ms"],
        "median_step_ms": timed["median_step_ms"],
        "trace": KERAS_TRACE if trace else None,
        "error": error,
    }


def run_teacher(args, arch, work):
    """`python -m keras_vit.teacher --arch ARCH` with its own defaults on every training image; its metrics.json
    as a row."""
    output = Path(work) / f"teacher_{arch}"
    command = [sys.executable, "-m", "keras_vit.teacher", "--arch", arch, "--data-dir", str(args.data)]
    command += ["--mixed-precision", args.precision, "--output", str(output), "--fresh", "--verbose", "2"]
    command += ["--validation-split", "0"]  # every training image, as airbench trains on
    if args.teacher_epochs:
        command += ["--epochs", str(args.teacher_epochs)]
    command += ["--time-budget", str(args.teacher_budget)]
    if args.limit:
        command += ["--limit", str(args.limit)]
    result = run_child(
        args, command, f"keras_vit.teacher {arch}", env=child_env(KERAS_BACKEND="jax"), cwd=ROOT
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"keras_vit.teacher {arch} failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
        )
    metrics = json.loads((output / "metrics.json").read_text())
    return {
        "framework": f"keras_vit.teacher {arch}",
        "measurement": "train",
        "device": metrics.get("device"),
        "epochs": metrics.get("epochs"),
        "seconds": metrics.get("wall_clock_seconds"),
        "accuracy": metrics["test_accuracy"],
        "accuracy_tta": metrics.get("test_accuracy_flip"),
    }


def summary(report):
    """The ratios the run was for: keras_vit over timm (images/s; accuracy at the same seconds) and airbench's
    mean accuracy on the copy."""
    result = {}
    ours, peer = report.find("keras_vit", "train"), report.find("timm", "train")
    if ours and peer:
        ours, peer = ours[0], peer[0]
        if ours["images_per_second"] and peer["images_per_second"]:  # none where only the compiling epoch ran
            result["images_per_second_ratio"] = round(
                ours["images_per_second"] / peer["images_per_second"], 3
            )
        result["accuracy_difference_points"] = round(100 * (ours["accuracy"] - peer["accuracy"]), 2)
    runs = report.find("airbench", "train94")
    if runs:
        for key in ("accuracy_tta", "accuracy", "seconds"):
            values = [r[key] for r in runs]
            result[f"airbench_{key}_mean"] = round(statistics.fmean(values), 4)
            result[f"airbench_{key}_stdev"] = round(statistics.stdev(values), 4) if len(values) > 1 else None
        result["airbench_runs"] = len(runs)
    return result


def markdown(report, totals):
    lines = [
        f"Device: {report.common['gpu']}; {report.common['date']}; shape {report.common['shape']}, batch "
        f"{report.common['batch_size']}, {report.common['budget']} s of training per side, crop+flip only.",
        "",
        "| side | versions | images/s | step ms | MFU | epochs | seconds | test accuracy |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    profiles = [row for row in report.rows if row.get("measurement") == "profile"]
    for row in report.rows:
        if row.get("measurement") == "profile":
            continue
        if "skipped" in row or "failed" in row:
            what = f"skipped: {row['skipped']}" if "skipped" in row else "failed (see peers_gpu.jsonl)"
            lines.append(f"| {row['framework']} | {what} | | | | | | |")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in (row.get("versions") or {}).items())
        accuracy = f"{row['accuracy']:.2%}"
        if row.get("accuracy_tta") is not None:
            accuracy += f" ({row['accuracy_tta']:.2%} with TTA)"
        side = row["framework"] + (f" run {row['run']}" if "run" in row else "")
        rate = f"{row['images_per_second']:,.0f}" if row.get("images_per_second") else "-"
        share = f"{row['mfu']:.1%}" if row.get("mfu") is not None else "-"
        lines.append(
            f"| {side} | {versions} | {rate} | {row.get('step_ms') or '-'} | {share} | "
            f"{row.get('epochs') or '-'} | {row['seconds']} | {accuracy} |"
        )
    if "accuracy_difference_points" in totals:
        ratio = totals.get("images_per_second_ratio")
        speed = f"**{ratio:.2f}x** the images/s" if ratio else "no steady images/s on one side (one epoch)"
        lines += [
            "",
            f"keras_vit over timm: {speed}, **{totals['accuracy_difference_points']:+.2f} points** of test accuracy"
            " in the same seconds.",
        ]
    if profiles:
        lines += ["", "Profiles of the step (`--profile-steps`):", ""]
        for row in profiles:
            lines.append(f"- {row['framework']}: {profile_summary(row)}")
    if "airbench_runs" in totals:
        spread = totals["airbench_accuracy_tta_stdev"]
        lines += [
            "",
            f"airbench94 on this copy, {totals['airbench_runs']} runs: {totals['airbench_accuracy_tta_mean']:.2%}"
            f"{f' ± {spread:.2%}' if spread is not None else ''} with its TTA "
            f"({totals['airbench_accuracy_mean']:.2%} single view) in {totals['airbench_seconds_mean']:.1f} s a run;"
            " 94.0% on the original files (its paper).",
        ]
    return "\n".join(lines) + "\n"


def profile_summary(row):
    """One line on a `profile` row: its error, or its step and where the step's time goes."""
    if row.get("error"):
        return f"failed: {row['error'][:300]}"
    if "ms_per_step_by_kind" in row:  # timm's, from torch.profiler
        kinds = ", ".join(f"{kind} {ms:.2f}" for kind, ms in row["ms_per_step_by_kind"].items())
        return (
            f"{row['step_ms_profiled']} ms a step under the profiler, {row['busy_ms_per_step']} ms of it counted "
            f"({row['counted']}): {kinds} (ms a step); kernel table in `{row['table']}`"
        )
    return (
        f"{row['median_step_ms']} ms a step, the median of the timed steps on random images; "
        f"{row['profiled_steps']} steps traced in `{row['trace']}` (`python benchmarks/op_profile.py {row['trace']}`)"
    )


def plot(report, totals, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sides = report.find("keras_vit", "train") + report.find("timm", "train")
    colours = {"keras_vit": "tab:red", "timm": "tab:blue"}
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    names = [r["framework"] for r in sides]
    rates = [r["images_per_second"] or 0.0 for r in sides]  # 0: no steady epoch
    axes[0].bar(names, rates, color=[colours[name] for name in names])
    axes[0].set_ylabel("training images/s (steady)")
    axes[0].set_title(f"the step, batch {report.common['batch_size']}", fontsize=9)
    bars = [(r["framework"], 100 * r["accuracy"]) for r in sides]
    if "airbench_runs" in totals:
        bars.append(("airbench94\n(its TTA)", 100 * totals["airbench_accuracy_tta_mean"]))
    axes[1].bar(
        [b[0] for b in bars], [b[1] for b in bars], color=[colours.get(b[0], "tab:gray") for b in bars]
    )
    axes[1].set_ylabel("test accuracy (%)")
    axes[1].set_title(f"after {report.common['budget']} s of training each", fontsize=9)
    figure.suptitle(f"keras_vit against PyTorch + timm on {report.common['gpu']}", fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)


def publish(report, output):
    """Writes `peers_gpu.md` and `peers_gpu.png` from the measurements so far; returns the table."""
    totals = summary(report)
    table = markdown(report, totals)
    atomic_write_text(Path(output) / "peers_gpu.md", table)
    if report.find("keras_vit", "train") or report.find("timm", "train"):
        plot(report, totals, Path(output) / "peers_gpu.png")
    return table


def gpu_name():
    """The first GPU's name from nvidia-smi, else "cpu"."""
    if shutil.which("nvidia-smi") is None:
        return "cpu"
    result = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
    )
    names = result.stdout.strip().splitlines()
    return names[0] if result.returncode == 0 and names else "cpu"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=os.environ.get("KERAS_VIT_DATA_DIR"), help="CIFAR-10 image folders")
    parser.add_argument("--output", default="benchmarks/results/peers_gpu")
    # 100 s each: both sides, airbench and both profiles fit in the 8 minutes of one call (OVERHEAD_SECONDS).
    parser.add_argument("--budget", type=float, default=100.0, help="seconds of training for each ViT side")
    parser.add_argument(
        "--deadline",
        type=float,
        default=470.0,
        help="seconds from the start: no side starts that would end past it",
    )
    parser.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    parser.add_argument("--airbench-runs", type=int, default=5)
    parser.add_argument("--teacher-archs", nargs="*", default=list(TEACHER_ARCHS), choices=TEACHER_ARCHS)
    parser.add_argument("--teacher-epochs", type=int, default=0, help="0: the teacher CLI's default")
    parser.add_argument(
        "--teacher-budget", type=float, default=40.0, help="seconds of fit for each teacher port"
    )
    parser.add_argument(
        "--profile-steps",
        type=int,
        default=5,
        help="steps of each ViT's step to profile (timm's after its training, keras_vit's as the 'profile' side); "
        "0: none",
    )
    parser.add_argument(
        "--sides",
        nargs="+",
        default=["timm", "keras_vit", "airbench", "profile", "teacher"],
        choices=["timm", "keras_vit", "airbench", "profile", "teacher"],
    )
    parser.add_argument(
        "--torch-python", default=sys.executable, help="a Python with torch, timm and airbench"
    )
    parser.add_argument("--limit", type=int, default=0, help="N images of each split (0: all)")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="the CPU check: a tiny ViT, 640 images, a few seconds "
        "of training, float32, no torch.compile, no teacher ports",
    )
    args = parser.parse_args(argv)
    if not args.data:
        parser.error("--data (or $KERAS_VIT_DATA_DIR) must name the CIFAR-10 image folders")
    if args.profile_steps < 0:
        parser.error("--profile-steps must be 0 (no profiles) or more")
    if args.tiny:
        args.budget, args.batch_size, args.limit = min(args.budget, 20.0), 64, args.limit or 640
        args.airbench_runs, args.teacher_archs = min(args.airbench_runs, 1), []
        args.profile_steps = min(args.profile_steps, 2)
    return args


def main(argv=None):
    args = parse_args(argv)
    args.start = start = time.monotonic()
    shape = TINY_SHAPE if args.tiny else GPU_SHAPE
    cuda_like = not args.tiny
    args.precision = "bfloat16" if cuda_like else "none"
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "peers_gpu.jsonl").unlink(missing_ok=True)
    gpu = gpu_name()

    from keras_vit.data import load_cifar10

    splits = load_cifar10(args.data, limit=args.limit or None, download=False)
    flops, peak = flops_and_peak(shape, gpu)
    report = Report(
        output,
        {
            "date": __import__("datetime").date.today().isoformat(),
            "gpu": gpu,
            "shape": shape,
            "batch_size": args.batch_size,
            "budget": args.budget,
            "train_gflops_per_image": round(flops / 1e9, 4),
            "peak_tflops": peak,
        },
    )
    with tempfile.TemporaryDirectory() as work:
        save_arrays(splits, work)

        def fits(side, seconds, name=None):
            left = args.deadline - (time.monotonic() - start)
            if seconds + OVERHEAD_SECONDS[side] > left:
                report.add({"framework": name or side, "skipped": f"{left:.0f} s left before --deadline"})
                return False
            return True

        timm_job = dict(
            task="timm",
            arrays=work,
            shape=shape,
            seed=0,
            batch_size=args.batch_size,
            budget=args.budget,
            first_epoch_estimate=first_epoch_estimate(args.budget),
            learning_rate=RECIPE["learning_rate"],
            weight_decay=RECIPE["weight_decay"],
            epsilon=ADAM_EPSILON,
            clipnorm=CLIPNORM,
            label_smoothing=RECIPE["label_smoothing"],
            warmup_share=0.1,
            compile=cuda_like,
            bfloat16=cuda_like,
            profile_steps=args.profile_steps,
            profile_table=str(output.resolve() / TIMM_PROFILE_TABLE),
        )

        def run_side(side, measure):
            # A side that fails is reported (with what it measured before) and the others still run; the table
            # and the chart are rewritten after every side, so a run killed at its limit keeps them.
            try:
                measure()
            except SideFailed as error:
                for row in error.rows:
                    report.add(row)
                report.add({"framework": side, "failed": str(error)[-1500:]})
            except Exception as error:  # noqa: BLE001 - any failure of one side must not cost the others
                report.add({"framework": side, "failed": f"{type(error).__name__}: {error}"[-1500:]})
            publish(report, output)

        def timm():
            for row in run_torch(args, timm_job):
                report.add({**row, "mfu": mfu(row.get("images_per_second"), flops, peak)})

        def keras_vit():
            row = run_keras(args, shape, work)
            report.add({**row, "mfu": mfu(row["images_per_second"], flops, peak)})

        def airbench():
            job = dict(task="airbench", arrays=work, runs=args.airbench_runs, class_names=splits.class_names)
            for row in run_torch(args, job):
                report.add(row)

        def teacher(arch):
            report.add(run_teacher(args, arch, work))

        def profile():
            report.add(profile_keras(args, shape, output))

        for side in args.sides:
            if side == "timm" and fits("timm", args.budget):
                run_side("timm", timm)
            elif side == "keras_vit" and fits("keras_vit", args.budget):
                run_side("keras_vit", keras_vit)
            elif side == "airbench" and fits("airbench", 5 * args.airbench_runs):
                run_side("airbench", airbench)
            elif side == "profile" and args.profile_steps and fits("profile", 0, "keras_vit profile"):
                run_side("keras_vit profile", profile)
            elif side == "teacher":
                for arch in args.teacher_archs:
                    if fits("teacher", args.teacher_budget, f"keras_vit.teacher {arch}"):
                        run_side(f"keras_vit.teacher {arch}", lambda arch=arch: teacher(arch))
    print(publish(report, output), flush=True)
    failed = [row["framework"] for row in report.rows if "failed" in row]
    if failed:
        print(
            f"peers_gpu.py: {', '.join(failed)} failed (their lines in peers_gpu.jsonl say why)",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
