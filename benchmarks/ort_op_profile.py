"""Where ONNX Runtime spends an ONNX file's time on the CPU: its own profiler's kernel time, by op type.

    python benchmarks/ort_op_profile.py A.onnx [B.onnx ...] [--batch 64 1] [--threads 2] [--output FILE.json]

Each file runs in an ONNX Runtime session (CPU, all graph optimisations, `--threads` intra-op threads) on random
inputs of its own input shape (the batch axis at `--batch`), `--warmup` calls and then `--runs` profiled calls;
the profiler's kernel events are summed by op type (after ONNX Runtime's fusions, so a fused `Gelu` or
`LayerNormalization` is one op). Prints per file and batch: ms per call, and each op type's share, ms per call and
node count. A breakdown, not a race: `benchmarks/compare_latency.py` times files against each other in
interleaved rounds.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def profile(path, batch, threads, warmup, runs):
    """Kernel microseconds per call by op type, node counts per call, and wall ms per call of `path`."""
    import numpy as np
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (given,) = session.get_inputs()
        shape = [batch if not isinstance(size, int) else size for size in given.shape]
        dtype = np.uint8 if given.type == "tensor(uint8)" else np.float32
        inputs = {given.name: (np.random.default_rng(0).random(shape) * 255).astype(dtype)}
        for _ in range(warmup):
            session.run(None, inputs)
        start = time.perf_counter()
        for _ in range(runs):
            session.run(None, inputs)
        wall_ms = 1000 * (time.perf_counter() - start) / runs
        events = json.loads(Path(session.end_profiling()).read_text())
    micros, nodes = collections.Counter(), collections.Counter()
    calls = warmup + runs  # the profiler records every call, the warmup's too
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            micros[event["args"]["op_name"]] += event["dur"] / calls
            nodes[event["args"]["op_name"]] += 1 / calls
    return micros, nodes, wall_ms


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 1])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--top", type=int, default=12, help="op types listed per file and batch")
    parser.add_argument("--output", type=Path, default=None, help="write every table as JSON here")
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    results = []
    for path in args.files:
        for batch in args.batch:
            micros, nodes, wall_ms = profile(path, batch, args.threads, args.warmup, args.runs)
            total = sum(micros.values())
            print(f"{path.name}, batch {batch}: {wall_ms:.2f} ms a call, kernels {total / 1000:.2f} ms")
            rows = []
            for op, spent in micros.most_common():
                rows.append(
                    {
                        "op": op,
                        "percent": round(100 * spent / total, 2),
                        "ms": round(spent / 1000, 4),
                        "nodes": round(nodes[op]),
                    }
                )
            for row in rows[: args.top]:
                print(
                    f"  {row['op']:<28} {row['percent']:5.1f}%  {row['ms']:8.3f} ms  {row['nodes']:3d} nodes"
                )
            results.append(
                {
                    "file": str(path),
                    "batch": batch,
                    "threads": args.threads,
                    "ms_per_call": round(wall_ms, 3),
                    "ops": rows,
                }
            )
    if args.output:
        from keras_vit.device import machine_summary
        from keras_vit.files import atomic_write_json

        atomic_write_json(args.output, {"machine": machine_summary(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
