"""keras_vit against PyTorch + timm on the CPU: the training step and the exported files, in one run.

    python benchmarks/peers_cpu.py --torch-python /path/to/venv/bin/python --output benchmarks/results/peers_cpu

The same ViT shapes on both sides (patches of 32x32 images, a class token, exact GELU, random data, float32,
no augmentation, batch 128, AdamW with label smoothing 0.1):

- **training**: images/s of the train step, timed step by step (the median step of the epochs after the
  first; the whole epochs' rate is kept too). keras_vit's side is `benchmarks/throughput.py --augment none`
  (the step of `python -m keras_vit.train`: `ViTTrainer.fit`), once per `--keras-config` (a Keras backend,
  with `+xla` for `jit_compile=True`, `+bf16` for mixed bfloat16, `@FOLDER` for another checkout); timm's is a
  `VisionTransformer` of the same shape trained eagerly (`torch.set_num_threads`). Each measurement is a fresh
  process. The rounds interleave every side and shape, so a slow minute of a shared machine slows all of one
  round. Steps, not epochs, because each Keras epoch under TensorFlow starts a new tf.data iterator whose end
  can wait seconds on tf.data's autotuning thread: a few-step benchmark epoch would count that many times
  more often than training does.
- **inference**: keras_vit's ONNX files (`python -m export.onnx`, standard ONNX, and with `--ort-attention`,
  ONNX Runtime's fused attention ops) and TFLite float32 file (`python -m export.tflite`) of a model with
  random weights (each moved off its initial value) beside timm's `torch.onnx.export` of the same shape, timed
  in interleaved rounds by `benchmarks/compare_latency.py` (ONNX Runtime and LiteRT with `--threads`).

timm needs torchvision, whose wheels on the package index are CUDA builds that do not load beside the CPU
torch of the dev extra: give a Python that has torch, torchvision, timm and onnx (`--torch-python`; a venv with
`pip install torch torchvision timm onnx` will do; CUDA builds run on the CPU). Writes `peers_cpu.json`,
`peers_cpu.md`, `peers_cpu.png` (training) and `peers_cpu_inference.png` to `--output`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keras_vit.device import machine_summary  # noqa: E402
from keras_vit.files import atomic_path, atomic_write_json, atomic_write_text  # noqa: E402

# Each shape: patch size, width, depth, heads, MLP width (32x32 images, 10 classes, class token).
SHAPES = {
    "w64": dict(patch_size=4, projection_dim=64, depth=4, num_heads=4, mlp_dim=128),
    "vit_tiny": dict(patch_size=8, projection_dim=128, depth=6, num_heads=4, mlp_dim=256),
    "w192": dict(patch_size=4, projection_dim=192, depth=9, num_heads=12, mlp_dim=384),
}

# timm's side, run by --torch-python: one JSON line of results.
TIMM_WORKER = r"""
import json, sys, time
import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer

job = json.loads(sys.argv[1])
torch.set_num_threads(job["threads"])
torch.manual_seed(0)
shape = job["shape"]
model = VisionTransformer(
    img_size=32, patch_size=shape["patch_size"], embed_dim=shape["projection_dim"], depth=shape["depth"],
    num_heads=shape["num_heads"], mlp_ratio=shape["mlp_dim"] / shape["projection_dim"], num_classes=10,
    class_token=True, global_pool="token",
)
parameters = sum(p.numel() for p in model.parameters())
if job["task"] == "export":
    model.eval()
    torch.onnx.export(
        model, (torch.zeros(1, 3, 32, 32),), job["path"], input_names=["images"], output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )
    print(json.dumps({"parameters": parameters}))
    sys.exit(0)
batch, steps, epochs = job["batch_size"], job["steps"], job["epochs"]
rng = np.random.default_rng(0)
images = torch.from_numpy(rng.integers(0, 256, (batch * steps, 32, 32, 3), dtype=np.uint8))
labels = torch.from_numpy(rng.integers(0, 10, batch * steps).astype("int64"))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
model.train()
times, step_times = [], []
for epoch in range(epochs):
    start = time.perf_counter()
    for step in range(steps):
        step_start = time.perf_counter()
        x = images[step * batch : (step + 1) * batch].permute(0, 3, 1, 2).float().div(255.0)
        loss = loss_fn(model(x), labels[step * batch : (step + 1) * batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if epoch > 0:
            step_times.append(time.perf_counter() - step_start)
    times.append(time.perf_counter() - start)
steady = float(np.median(times[1:]))
print(json.dumps({
    "parameters": parameters, "images_per_second": batch * steps / steady,
    "step_images_per_second": batch / float(np.median(step_times)),
    "first_epoch_seconds": times[0], "epoch_seconds": times[1:], "torch": torch.__version__,
}))
"""


def keras_config(text):
    """'tensorflow', 'jax+xla', 'tensorflow+xla+bf16', 'tensorflow@../old-checkout': a Keras backend, options,
    and the keras_vit checkout to run (this one unless `@FOLDER` names another, e.g. a `git worktree` of an
    earlier commit, to measure a change against it in the same interleaved rounds)."""
    config, _, tree = text.partition("@")
    backend, *options = config.split("+")
    unknown = set(options) - {"xla", "bf16"}
    if backend not in ("tensorflow", "jax", "torch") or unknown:
        raise argparse.ArgumentTypeError(f"expected BACKEND[+xla][+bf16][@FOLDER], got {text!r}")
    if tree and not (Path(tree) / "benchmarks" / "throughput.py").is_file():
        raise argparse.ArgumentTypeError(
            f"{tree!r} is not a keras_vit checkout (no benchmarks/throughput.py)"
        )
    return text


def last_json_line(result, what):
    """The JSON object a worker printed last; its stderr's end in the error otherwise."""
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


PEER_VERSIONS = (
    "import json, timm, torch; print(json.dumps({'timm': timm.__version__, 'torch': torch.__version__}))"
)


def peer_versions(torch_python):
    """The timm and torch versions of `--torch-python` (the peer's own interpreter, not this one's)."""
    result = subprocess.run([torch_python, "-c", PEER_VERSIONS], capture_output=True, text=True)
    return last_json_line(result, "timm's versions")


def keras_train(config, shape, args):
    """images/s of keras_vit's train step for one `--keras-config`, in a fresh process."""
    options_text, _, tree = config.partition("@")
    backend, *options = options_text.split("+")
    root = Path(tree).resolve() if tree else ROOT
    command = [sys.executable, str(root / "benchmarks" / "throughput.py"), "--preset", "vit_tiny"]
    for key, value in SHAPES[shape].items():
        command += ["--model-arg", f"{key}={value}"]
    command += ["--augment", "none", "--batch-size", str(args.batch_size)]
    command += ["--steps", str(args.steps), "--epochs", str(args.epochs)]
    command += ["--mixed-precision", "mixed_bfloat16" if "bf16" in options else "none"]
    if "xla" in options:
        command += ["--jit-compile"]
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(root))
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root)
    row = last_json_line(result, f"keras {config}")
    return {
        "images_per_second": row["step_images_per_second"],
        "epoch_images_per_second": row["images_per_second"],
        "parameters": row["parameters"],
    }


def timm_train(shape, args):
    """images/s of timm's eager train step, in a fresh process of `--torch-python`."""
    job = dict(
        task="train",
        shape=SHAPES[shape],
        batch_size=args.batch_size,
        steps=args.steps,
        epochs=args.epochs,
        threads=args.threads,
    )
    result = subprocess.run(
        [args.torch_python, "-c", TIMM_WORKER, json.dumps(job)], capture_output=True, text=True
    )
    row = last_json_line(result, "timm")
    return {
        "images_per_second": row["step_images_per_second"],
        "epoch_images_per_second": row["images_per_second"],
        "parameters": row["parameters"],
    }


def training(args):
    """Every side and shape, `--rounds` times interleaved; per shape the medians and per-round ratios to timm."""
    sides = ["timm", *args.keras_config]
    rates = {shape: {side: [] for side in sides} for shape in args.shapes}
    epoch_rates = {shape: {side: [] for side in sides} for shape in args.shapes}
    parameters = {}
    for round_index in range(args.rounds):
        for shape in args.shapes:
            for side in sides:
                row = timm_train(shape, args) if side == "timm" else keras_train(side, shape, args)
                rates[shape][side].append(row["images_per_second"])
                epoch_rates[shape][side].append(row.get("epoch_images_per_second"))
                parameters[shape, side] = row["parameters"]
                print(
                    f"round {round_index + 1}/{args.rounds} {shape} {side}: {row['images_per_second']:.0f} images/s"
                    f" (median step; {row.get('epoch_images_per_second') or float('nan'):.0f} by whole epochs)",
                    flush=True,
                )
    results = []
    for shape in args.shapes:
        for side in sides:
            ratios = [ours / peer for ours, peer in zip(rates[shape][side], rates[shape]["timm"])]
            results.append(
                {
                    "shape": shape,
                    "side": side,
                    "parameters": parameters[shape, side],
                    "images_per_second": rates[shape][side],
                    "median_images_per_second": statistics.median(rates[shape][side]),
                    "ratio_to_timm": ratios,
                    "median_ratio_to_timm": statistics.median(ratios),
                    # Whole epochs, their ends included: a short epoch counts Keras' new iterator often.
                    "epoch_images_per_second": epoch_rates[shape][side],
                }
            )
    return results


def export_files(shape, folder, args):
    """keras_vit's ONNX and TFLite float32 files and timm's torch.onnx file of `shape`, random weights."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    model_path = folder / f"{shape}.keras"
    overrides = ", ".join(f"{key}={value}" for key, value in SHAPES[shape].items())
    # Every weight moved off its initial value, as training moves it: TensorFlow's graph optimiser folds a fresh
    # model's LayerNorm scales of one and zero biases away, which changes the exported graph.
    build = (
        "import numpy as np; from keras_vit.models import build_vit; "
        f"model = build_vit('vit_tiny', {overrides}); rng = np.random.default_rng(0); "
        "model.set_weights([w + rng.normal(0, 0.02, w.shape).astype(w.dtype) for w in model.get_weights()]); "
        f"model.save({str(model_path)!r})"
    )
    subprocess.run([sys.executable, "-c", build], check=True, env=env, cwd=ROOT)
    ours_onnx, ours_ort_onnx, ours_tflite, timm_onnx = (
        folder / f"{shape}.onnx",
        folder / f"{shape}_ort_attention.onnx",
        folder / f"{shape}_fp32.tflite",
        folder / f"{shape}_timm.onnx",
    )
    for module, path, flags in (
        ("export.onnx", ours_onnx, []),
        ("export.onnx", ours_ort_onnx, ["--ort-attention"]),
        ("export.tflite", ours_tflite, []),
    ):
        command = [sys.executable, "-m", module, str(model_path), str(path), "--eval-images", "64", *flags]
        subprocess.run(command, check=True, env=env, cwd=ROOT, capture_output=True, text=True)
    job = dict(task="export", shape=SHAPES[shape], path=str(timm_onnx), threads=args.threads)
    last_json_line(
        subprocess.run(
            [args.torch_python, "-c", TIMM_WORKER, json.dumps(job)], capture_output=True, text=True
        ),
        "timm export",
    )
    return [ours_onnx, timm_onnx, ours_ort_onnx, ours_tflite]


def inference(args, folder):
    """Latency and throughput of each shape's three files; per file the median of the per-round speed-ups over
    timm's file (its time over the file's: above 1 is faster than timm)."""
    from compare_latency import compare

    results = {}
    for shape in args.shapes:
        paths = export_files(shape, folder, args)
        print(f"{shape}: timing {', '.join(p.name for p in paths)}", flush=True)
        result = compare(paths, rounds=args.rounds + 2, threads=args.threads)
        timm = result["results"][1]
        for row in result["results"]:
            row["latency_speedup_over_timm"] = statistics.median(
                peer / ours for ours, peer in zip(row["latency_ms_by_round"], timm["latency_ms_by_round"])
            )
            row["throughput_ratio_to_timm"] = statistics.median(
                ours / peer
                for ours, peer in zip(
                    row["throughput_images_per_s_by_round"], timm["throughput_images_per_s_by_round"]
                )
            )
        results[shape] = result
    return results


def markdown(report):
    lines = [f"Machine: {report['machine']}; timm's side: {report['peer']}; {report['date']}.", ""]
    if report.get("training"):
        lines += [
            f"Training step, batch {report['batch_size']}, float32 unless `+bf16`, images/s of the median step"
            f" (median of {report['rounds']} interleaved rounds) and the ratio to timm (median of the per-round"
            " ratios):",
            "",
            "| shape | parameters (ours / timm) | side | images/s | ratio to timm | whole epochs: images/s |"
            " ratio to timm |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        timm_epochs = {
            row["shape"]: row.get("epoch_images_per_second")
            for row in report["training"]
            if row["side"] == "timm"
        }
        timm_parameters = {
            row["shape"]: row["parameters"] for row in report["training"] if row["side"] == "timm"
        }
        for row in report["training"]:
            epochs, peer_epochs = row.get("epoch_images_per_second"), timm_epochs[row["shape"]]
            if epochs and peer_epochs and None not in epochs + peer_epochs:
                epoch_ratio = statistics.median(ours / peer for ours, peer in zip(epochs, peer_epochs))
                epoch_cells = f"{statistics.median(epochs):,.0f} | {epoch_ratio:.2f}x"
            else:
                epoch_cells = "- | -"
            lines.append(
                f"| {row['shape']} | {row['parameters']:,} / {timm_parameters[row['shape']]:,} | {row['side']} | "
                f"{row['median_images_per_second']:,.0f} | {row['median_ratio_to_timm']:.2f}x | {epoch_cells} |"
            )
    if report.get("inference"):
        lines += [
            "",
            "Exported inference, ONNX Runtime and LiteRT (XNNPACK), median of the rounds; the ratios are to timm's"
            " file in the same round (batch 1: timm's time over the file's; batch 64: the file's images/s over"
            " timm's; above 1 is faster than timm):",
            "",
            "| shape | file | batch-1 ms | ratio to timm | batch-64 images/s | ratio to timm |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for shape, result in report["inference"].items():
            for row in result["results"]:
                lines.append(
                    f"| {shape} | `{Path(row['path']).name}` | {row['latency_ms_median_of_rounds']:.3f} | "
                    f"{row['latency_speedup_over_timm']:.2f}x | "
                    f"{row['throughput_images_per_s_median_of_rounds']:,.0f} | "
                    f"{row['throughput_ratio_to_timm']:.2f}x |"
                )
    return "\n".join(lines) + "\n"


# The inference files by the end of their names (after the shape's), as the chart names them.
FILE_LABELS = {
    ".onnx": "keras_vit ONNX",
    "_timm.onnx": "timm torch.onnx",
    "_ort_attention.onnx": "keras_vit ONNX --ort-attention",
    "_fp32.tflite": "keras_vit TFLite float32",
}


def plot_inference(report, path):
    """Each file's speed over timm's file, batch 1 and batch 64, per shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(report["inference"])
    first = report["inference"][shapes[0]]["results"]
    files = [FILE_LABELS.get(Path(row["path"]).name[len(shapes[0]) :], row["path"]) for row in first]
    width = 0.8 / len(files)
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for axis, key, title in zip(
        axes,
        ("latency_speedup_over_timm", "throughput_ratio_to_timm"),
        ("batch 1: timm's latency over the file's", "batch 64: the file's images/s over timm's"),
    ):
        for index, file in enumerate(files):
            values = [report["inference"][shape]["results"][index][key] for shape in shapes]
            axis.bar([i + index * width for i in range(len(shapes))], values, width, label=file)
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.axhline(1.2, color="gray", linewidth=0.8, linestyle="--")
        axis.set_xticks([i + width * (len(files) - 1) / 2 for i in range(len(shapes))], shapes)
        axis.set_title(title, fontsize=9)
    axes[0].set_ylabel("speed over timm's torch.onnx file")
    axes[1].legend(fontsize=8, loc="lower right", framealpha=0.9)
    figure.suptitle("Exported inference on the CPU against PyTorch + timm", fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["training"]
    shapes = list(dict.fromkeys(row["shape"] for row in rows))
    sides = list(dict.fromkeys(row["side"] for row in rows))
    figure, axis = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(sides)
    for index, side in enumerate(sides):
        values = [
            next(r["median_ratio_to_timm"] for r in rows if r["shape"] == s and r["side"] == side)
            for s in shapes
        ]
        label = "PyTorch + timm" if side == "timm" else f"keras_vit, {side}"
        axis.bar([i + index * width for i in range(len(shapes))], values, width, label=label)
    axis.axhline(1.0, color="black", linewidth=0.8)
    axis.set_xticks([i + width * (len(sides) - 1) / 2 for i in range(len(shapes))], shapes)
    axis.set_ylabel("training images/s over timm's")
    axis.set_title("Training step on the CPU against PyTorch + timm (eager)")
    axis.legend(fontsize=8, loc="lower left", framealpha=0.9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--torch-python", required=True, help="a Python with torch, torchvision, timm and onnx"
    )
    parser.add_argument("--output", default="benchmarks/results/peers_cpu")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument(
        "--keras-config",
        nargs="+",
        type=keras_config,
        default=["tensorflow"],
        help="keras_vit sides: BACKEND[+xla][+bf16][@FOLDER] (default: tensorflow, the default of "
        "python -m keras_vit.train; @FOLDER runs another keras_vit checkout)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch")
    parser.add_argument(
        "--epochs", type=int, default=4, help="epochs per measurement (the first is not timed)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--skip", nargs="*", default=[], choices=["training", "inference"])
    args = parser.parse_args(argv)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": machine_summary(),
        "peer": peer_versions(args.torch_python),
        "date": __import__("datetime").date.today().isoformat(),
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "steps": args.steps,
        "epochs": args.epochs,
        "threads": args.threads,
    }
    if "training" not in args.skip:
        report["training"] = training(args)
    if "inference" not in args.skip:
        with tempfile.TemporaryDirectory() as folder:
            report["inference"] = inference(args, Path(folder))
    atomic_write_json(output / "peers_cpu.json", report)
    atomic_write_text(output / "peers_cpu.md", markdown(report))
    if report.get("training"):
        plot(report, output / "peers_cpu.png")
    if report.get("inference"):
        plot_inference(report, output / "peers_cpu_inference.png")
    print(markdown(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
