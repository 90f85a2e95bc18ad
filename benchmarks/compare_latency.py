"""Batch-1 latency and batch throughput of several model files, timed in interleaved rounds.

    python benchmarks/compare_latency.py A.onnx B.onnx [C.tflite ...] [--rounds 7] [--output latency.json]

`python -m export.benchmark` times the formats of one export; this script
times any files, e.g. two versions of one format, against the first. It
loads every file once (`export.benchmark.make_runner`: ai-edge-litert with
XNNPACK, onnxruntime, SavedModel or Keras, the same calls as
`export.benchmark`) and times them in turn, `--rounds` times
(`export.benchmark.time_rounds`): each round gives every file its median of
`--runs` batch-1 calls and its images/s at `--batch`. It reports the median
over the rounds and each file's ratio to the first file's, round by round,
so a slow minute on a shared machine slows every file of that round alike.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from export.benchmark import make_runner, time_rounds, timing_inputs  # noqa: E402
from keras_vit.device import machine_summary as machine_info  # noqa: E402
from keras_vit.device import usable_cores  # noqa: E402


def compare(paths, *, rounds=7, runs=100, warmup=10, batch=64, throughput_runs=5, threads=None):
    """Times `paths` in `rounds` interleaved rounds; returns the JSON-ready results (first file = reference)."""
    threads = threads or usable_cores()
    machine = machine_info()
    runners = [make_runner(os.fspath(path), threads) for path in paths]
    names = [Path(p).name for p in paths]
    inputs = timing_inputs(runners, names, batch)

    def report_round(r, so_far):
        print(
            f"round {r + 1}/{rounds}: "
            + ", ".join(f"{name} {so_far['latency_ms_median'][r, i]:.2f} ms" for i, name in enumerate(names)),
            flush=True,
        )

    timings = time_rounds(
        [call for call, _, _ in runners],
        inputs,
        rounds=rounds,
        runs=runs,
        warmup=warmup,
        batch=batch,
        throughput_runs=throughput_runs,
        on_round=report_round,
    )
    latency, throughput = timings["latency_ms_median"], timings["throughput_images_per_s"]
    results = []
    for index, path in enumerate(paths):
        results.append(
            {
                "path": os.fspath(path),
                "latency_ms_median_of_rounds": float(np.median(latency[:, index])),
                "latency_ms_by_round": [round(float(v), 3) for v in latency[:, index]],
                "latency_ratio_to_first_median": float(np.median(latency[:, index] / latency[:, 0])),
                "throughput_images_per_s_median_of_rounds": float(np.median(throughput[:, index])),
                "throughput_images_per_s_by_round": [round(float(v), 1) for v in throughput[:, index]],
                "throughput_ratio_to_first_median": float(np.median(throughput[:, index] / throughput[:, 0])),
            }
        )
    machine["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    return {
        "machine": machine,
        "settings": {
            "rounds": rounds,
            "runs": runs,
            "warmup": warmup,
            "batch": batch,
            "throughput_runs": throughput_runs,
            "threads": threads,
        },
        "results": results,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/compare_latency.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths",
        nargs="+",
        help=".onnx, .tflite, .keras files or SavedModel folders; the first is the reference of the ratios",
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=100, help="timed batch-1 calls a file a round")
    parser.add_argument("--batch", type=int, default=64, help="batch size of the throughput calls")
    parser.add_argument("--threads", type=int, default=None, help="runtime threads (default: the cores)")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    missing = [path for path in args.paths if not os.path.exists(path)]
    if missing:
        parser.error(f"not found: {', '.join(missing)}")
    if min(args.rounds, args.runs, args.batch) < 1:
        parser.error("--rounds, --runs and --batch must be positive")
    report = compare(args.paths, rounds=args.rounds, runs=args.runs, batch=args.batch, threads=args.threads)
    print(f"{'file':<40} {'latency ms':>10} {'x first':>8} {'images/s':>9} {'x first':>8}")
    for row in report["results"]:
        print(
            f"{Path(row['path']).name:<40} {row['latency_ms_median_of_rounds']:>10.2f} "
            f"{row['latency_ratio_to_first_median']:>8.2f} {row['throughput_images_per_s_median_of_rounds']:>9.0f} "
            f"{row['throughput_ratio_to_first_median']:>8.2f}"
        )
    if args.output:
        from keras_vit.files import atomic_write_text

        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.output), json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
