"""`python -m export.benchmark EXPORT_DIR [--model MODEL.keras]`: latency and throughput per format.

For every format found in `EXPORT_DIR` (the output of `python -m export`:
`savedmodel/`, `*.tflite`, `*.onnx`) and for the Keras model itself:

- latency: batch 1, `--warmup` calls, then `--runs` timed calls; median
  and p90 in milliseconds per image;
- throughput: batch `--batch` (64), images per second over
  `--throughput-runs` timed calls after one warm-up call;
- file size.

Every file is loaded once, then the formats are timed in turn, `--rounds`
times (5): a shared machine's speed drifts from one minute to the next,
and timing one format after the other puts that drift between the
formats. Interleaved, a slow minute slows every format of its
round alike; the figures are the medians over the rounds, with the range of
the rounds beside them.

How each is called (timing covers one call on a batch already in the
input dtype; no image decoding):

- Keras: `model.predict_on_batch(x)` (a compiled `tf.function`, inference
  mode), not `model(x)` (eager dispatch per layer) nor `model.predict`
  (per-call dataset overhead).
- SavedModel: its `serving_default` signature via `tf.saved_model.load`.
- TFLite: `ai_edge_litert.interpreter.Interpreter(num_threads=cores)` with the
  XNNPACK delegate (applied by default on CPU).
- ONNX: onnxruntime CPUExecutionProvider, `intra_op_num_threads=cores`.
  TensorFlow (Keras, SavedModel) uses its default thread pools (all cores).

Writes `benchmark.md`, `benchmark.json` and `benchmark.png` (bar chart) into
`EXPORT_DIR` (or `--out`), and states the machine (CPU model, cores).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time

import numpy as np

from export import common
from export.cli import Parser
from export.common import ExportError
from export.runtime import load as load_runtime_model
from export.verify import SavedModelRunner, path_size
from keras_vit.cli_utils import os_error_reason, positive_int
from keras_vit.device import load_average, machine_summary, usable_cores
from keras_vit.files import atomic_path, atomic_write_json, atomic_write_text


def time_calls(fn, batch, warmup, runs):
    """Seconds of each of `runs` calls `fn(batch)` after `warmup` untimed ones."""
    for _ in range(warmup):
        fn(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def find_targets(export_dir):
    """`[(name, path)]` of the exported formats in `export_dir`, in report order."""
    targets = []
    if os.path.isfile(os.path.join(export_dir, "savedmodel", "saved_model.pb")):
        targets.append(("SavedModel", os.path.join(export_dir, "savedmodel")))
    order = {"model_fp32": 0, "model_fp16": 1, "model_dynamic": 2, "model_int8": 3}
    tflites = sorted(
        glob.glob(os.path.join(export_dir, "*.tflite")),
        key=lambda p: (order.get(os.path.splitext(os.path.basename(p))[0], 9), p),
    )
    targets += [
        (f"TFLite {os.path.splitext(os.path.basename(p))[0].replace('model_', '')}", p) for p in tflites
    ]
    targets += [("ONNX Runtime", p) for p in sorted(glob.glob(os.path.join(export_dir, "*.onnx")))]
    return targets


def make_runner(path, threads):
    """`(call, input_dtype, image_shape)` of a `.keras` file, SavedModel folder, `.tflite` or `.onnx` file."""
    if path.endswith(".keras"):
        model, io = common.load_keras_model(path)
        return model.predict_on_batch, np.dtype(np.float32), (io.height, io.width, io.channels)
    if os.path.isdir(path):
        runner = SavedModelRunner(path)
        spec = runner._fn.structured_input_signature[1][runner._input_name]
        return runner.predict_raw, np.dtype(np.float32), tuple(spec.shape[1:])
    model = load_runtime_model(path, num_threads=threads)
    return model.predict_raw, model.input_dtype, (*model.image_size, model.channels)


def timing_inputs(runners, names, batch):
    """One batch of the same random pixels per runner, in its input dtype (uint8 stays uint8 for int8 files).

    A runner that takes the first one's images channels first (a PyTorch export of the same network, the
    peer of a latency comparison) gets them transposed.

    Args:
        runners: `make_runner` results.
        names: what to call each runner in an error.
        batch: images in the batch.

    Raises:
        ExportError: the runners take images of different shapes (not one model's files).
    """
    shape = tuple(runners[0][2])
    channels_first = (shape[-1], *shape[:-1])
    pixels = np.random.default_rng(0).integers(0, 256, (batch, *shape), dtype=np.uint8)
    inputs = []
    for name, (_, dtype, other) in zip(names, runners):
        if tuple(other) == shape:
            inputs.append(pixels.astype(dtype))
        elif tuple(other) == channels_first:
            inputs.append(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).astype(dtype))
        else:
            raise ExportError(
                f"{name} takes images of shape {tuple(other)}, {names[0]} {shape}: not one model's files."
            )
    return inputs


def time_rounds(calls, inputs, *, rounds, runs, warmup, batch, throughput_runs, on_round=None):
    """Times `calls` in turn, `rounds` times over.

    Args:
        calls: functions that take one batch.
        inputs: one array `(batch, ...)` per call, already in its input dtype.
        rounds: how many times every call is timed.
        runs, warmup: timed and untimed batch-1 calls, each round.
        batch: images of a throughput call (at most `len(inputs[i])`).
        throughput_runs: timed throughput calls, each round, after one untimed.
        on_round: called after each round with its index and the arrays
            below, filled up to that round.

    Returns:
        A dict of arrays `(rounds, len(calls))`: `latency_ms_median` and
        `latency_ms_p90` (of each round's batch-1 calls) and
        `throughput_images_per_s`.
    """
    shape = (rounds, len(calls))
    out = {key: np.zeros(shape) for key in ("latency_ms_median", "latency_ms_p90", "throughput_images_per_s")}
    for r in range(rounds):
        for i, (call, x) in enumerate(zip(calls, inputs)):
            single = time_calls(call, x[:1], warmup, runs) * 1e3
            out["latency_ms_median"][r, i] = np.median(single)
            out["latency_ms_p90"][r, i] = np.percentile(single, 90)
            out["throughput_images_per_s"][r, i] = (
                batch * throughput_runs / time_calls(call, x[:batch], 1, throughput_runs).sum()
            )
        if on_round is not None:
            on_round(r, out)
    return out


def benchmark(
    export_dir, model_path=None, *, runs=100, warmup=10, batch=64, throughput_runs=10, threads=None, rounds=5
):
    """Times every format in `rounds` interleaved rounds; returns the JSON-ready results."""
    threads = threads or usable_cores()
    targets = find_targets(export_dir)
    if model_path:
        targets.insert(0, ("Keras", model_path))
    if not targets:
        raise ExportError(f"no exported files in {export_dir} (expected savedmodel/, *.tflite, *.onnx).")
    machine = machine_summary()  # before timing: its load average is the other processes'
    runners = [make_runner(path, threads) for _, path in common.progress(targets, desc="loading")]
    inputs = timing_inputs(runners, [name for name, _ in targets], batch)
    bar = common.progress(range(rounds), desc="rounds")
    timings = time_rounds(
        [call for call, _, _ in runners],
        inputs,
        rounds=rounds,
        runs=runs,
        warmup=warmup,
        batch=batch,
        throughput_runs=throughput_runs,
        on_round=lambda *_: bar.update(1),
    )
    bar.close()
    results = []
    for i, ((name, path), (_, dtype, _)) in enumerate(zip(targets, runners)):
        latency = timings["latency_ms_median"][:, i]
        throughput = timings["throughput_images_per_s"][:, i]
        row = {
            "name": name,
            "path": os.path.abspath(path),
            "size_bytes": path_size(path),
            "input_dtype": dtype.name,
            "latency_ms_median": float(np.median(latency)),
            "latency_ms_p90": float(np.median(timings["latency_ms_p90"][:, i])),
            "throughput_images_per_s": float(np.median(throughput)),
            "latency_ms_median_by_round": [round(float(v), 4) for v in latency],
            "throughput_images_per_s_by_round": [round(float(v), 2) for v in throughput],
        }
        print(
            f"{name:<16} latency {row['latency_ms_median']:7.3f} ms (p90 {row['latency_ms_p90']:7.3f}; "
            f"rounds {latency.min():.3f} to {latency.max():.3f}), throughput "
            f"{row['throughput_images_per_s']:9.1f} img/s, {row['size_bytes'] / 1e6:.3f} MB"
        )
        results.append(row)
    load = load_average()
    if load is not None:
        machine["load_average_1min_after"] = load
    return {
        "machine": machine,
        "settings": {
            "latency_batch": 1,
            "runs": runs,
            "warmup": warmup,
            "throughput_batch": batch,
            "throughput_runs": throughput_runs,
            "rounds": rounds,
            "threads": threads,
            "keras_call": "model.predict_on_batch",
            "tflite": "ai_edge_litert Interpreter + XNNPACK",
            "onnx": "onnxruntime CPUExecutionProvider",
        },
        "results": results,
    }


def round_range(row, key):
    """`(lowest, highest)` of a result row's per-round figures for `key`."""
    return min(row[f"{key}_by_round"]), max(row[f"{key}_by_round"])


def markdown(report):
    m, s = report["machine"], report["settings"]
    rounds = s["rounds"]
    # The load before the first timing is the other processes' (this one was idle
    # loading files); the load after includes this benchmark's own threads.
    before, after = m.get("load_average_1min"), m.get("load_average_1min_after")
    busy = before is not None and before > m["cores_available"] / 2
    lines = [
        "# keras-vit benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores_available']} cores available to this process ({m['cores_total']} in "
        f"total); {m['platform']}, Python {m['python']}."
        + (
            f" 1-minute load average {before} before, {after} after (this benchmark adds up to its thread "
            "count)" + ("; the machine was busy with other processes: expect noisy numbers." if busy else ".")
            if before is not None
            else ""
        ),
        f"Threads: TFLite and ONNX Runtime {s['threads']}; TensorFlow its defaults. Keras is timed with "
        f"`{s['keras_call']}`.",
        f"Latency: batch 1, median and p90 of {s['runs']} calls after {s['warmup']} warm-up calls. "
        f"Throughput: batch {s['throughput_batch']}, {s['throughput_runs']} calls. Inputs are random "
        "images in each file's input dtype.",
        (
            f"The formats were timed in turn, {rounds} rounds over: each figure is the median of the "
            "rounds', the range is the lowest and highest round's."
            if rounds > 1
            else "The formats were timed once each, one after the other (one round: no range)."
        ),
        "",
        "| format | input | size (MB) | latency median (ms) | its range over rounds | latency p90 (ms) | "
        "throughput (img/s) | its range over rounds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        latency, throughput = round_range(r, "latency_ms_median"), round_range(r, "throughput_images_per_s")
        lines.append(
            f"| {r['name']} | {r['input_dtype']} | {r['size_bytes'] / 1e6:.3f} | "
            f"{r['latency_ms_median']:.3f} | {latency[0]:.3f} to {latency[1]:.3f} | "
            f"{r['latency_ms_p90']:.3f} | {r['throughput_images_per_s']:.1f} | {throughput[0]:.1f} to "
            f"{throughput[1]:.1f} |"
        )
    lines += ["", "![latency and throughput](benchmark.png)", ""]
    return "\n".join(lines)


def plot(report, path):
    """Bar chart: latency (batch 1) and throughput (batch N) per format."""
    import matplotlib  # here: only the chart needs it, and it is slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    names = [r["name"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.5 * len(rows) + 2.2))
    y = np.arange(len(rows))

    def spread(key):  # error bars from the slowest to the fastest round
        medians = np.asarray([r[key] for r in rows])
        ranges = np.asarray([round_range(r, key) for r in rows]).T
        return np.abs(ranges - medians)

    latency = [r["latency_ms_median"] for r in rows]
    left.barh(y, latency, color="tab:blue", label="median")
    left.errorbar(
        latency,
        y,
        xerr=spread("latency_ms_median"),
        fmt="none",
        ecolor="dimgray",
        capsize=3,
        label="slowest to fastest round",
    )
    left.scatter(
        [r["latency_ms_p90"] for r in rows], y, color="black", marker="|", s=200, label="p90", zorder=3
    )
    left.set_yticks(y, names)
    left.invert_yaxis()
    left.set_xlabel("latency, batch 1 (ms, lower is better)")
    left.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.5 / len(rows)), ncol=3, fontsize=8, frameon=False
    )
    throughput = [r["throughput_images_per_s"] for r in rows]
    right.barh(y, throughput, color="tab:green")
    right.errorbar(
        throughput, y, xerr=spread("throughput_images_per_s"), fmt="none", ecolor="dimgray", capsize=3
    )
    right.set_yticks(y, [""] * len(rows))
    right.invert_yaxis()
    right.set_xlabel(
        f"throughput, batch {report['settings']['throughput_batch']} (images/s, higher is better)"
    )
    m = report["machine"]
    fig.suptitle(f"keras-vit on {m['cpu']} ({m['cores_available']} cores)", fontsize=10)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)


def main(argv=None):
    parser = Parser(
        prog="python -m export.benchmark",
        description="Latency (batch 1) and throughput (batch N) of Keras, the SavedModel, each TFLite file "
        "and ONNX Runtime on this machine's CPU; writes benchmark.md/.json/.png.",
    )
    parser.add_argument("export_dir", help="output directory of `python -m export`")
    parser.add_argument(
        "--model",
        default=None,
        help="the .keras model to time too (default: the one named in EXPORT_DIR/report.json, "
        "if it still exists)",
    )
    parser.add_argument("--runs", type=int, default=100, help="timed batch-1 calls (default: %(default)s)")
    parser.add_argument(
        "--warmup", type=int, default=10, help="untimed batch-1 calls first (default: %(default)s)"
    )
    parser.add_argument(
        "--batch", type=int, default=64, help="batch size for throughput (default: %(default)s)"
    )
    parser.add_argument(
        "--throughput-runs", type=int, default=10, help="timed calls at --batch (default: %(default)s)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="times every format is timed, in turn with the others (the figures: medians of the rounds; default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="TFLite / ONNX Runtime threads (default: cores)"
    )
    parser.add_argument("--out", default=None, help="where to write benchmark.* (default: EXPORT_DIR)")
    args = parser.parse_args(argv)
    for name in ("runs", "batch", "throughput_runs", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if not os.path.isdir(args.export_dir):
        what = "is a file, not a folder" if os.path.exists(args.export_dir) else "does not exist"
        raise ExportError(f"export directory {args.export_dir} {what}.")
    model_path = args.model
    if model_path is None:
        try:
            with open(os.path.join(args.export_dir, "report.json"), encoding="utf-8") as f:
                candidate = json.load(f)["model"]["path"]
            if os.path.isfile(candidate):
                model_path = candidate
        except (OSError, ValueError, KeyError):
            pass
    if model_path is None:
        print("note: no Keras model given (--model) or found via report.json: Keras is not timed")
    else:
        common.check_model_file(model_path)
    out_dir = args.out or args.export_dir
    common.check_output_path(os.path.join(out_dir, "benchmark.json"))

    report = benchmark(
        args.export_dir,
        model_path,
        runs=args.runs,
        warmup=args.warmup,
        batch=args.batch,
        throughput_runs=args.throughput_runs,
        threads=args.threads,
        rounds=args.rounds,
    )
    text = write_report(report, out_dir)
    print()
    print(text)
    print(f"wrote {os.path.join(out_dir, 'benchmark.md')}, benchmark.json, benchmark.png")


def write_report(report, out_dir):
    """Writes `benchmark.png`, `benchmark.md`, then `benchmark.json` (the one a reader takes as the result) into
    `out_dir`, each atomically; a SIGINT/SIGTERM meanwhile waits until all three are written. Returns the text."""
    json_path = os.path.join(out_dir, "benchmark.json")
    written = False
    try:
        with common.SignalDeferral() as deferral:
            deferral.defer()  # raises a signal received earlier: then nothing is written
            text = markdown(report)
            plot(report, os.path.join(out_dir, "benchmark.png"))
            atomic_write_text(os.path.join(out_dir, "benchmark.md"), text)
            atomic_write_json(json_path, report)
            written = True
    except common.Interrupted as stop:
        stop.output, stop.published = json_path, written
        raise
    except OSError as error:  # the disk filled up, or the folder went away, since the check
        raise ExportError(f"cannot write the benchmark to {out_dir}: {os_error_reason(error)}") from None
    return text


if __name__ == "__main__":
    sys.exit(common.run_cli(main))
