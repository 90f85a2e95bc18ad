"""Per-op-type time of batch-1 inference in ONNX Runtime (its own profiler), for each file given."""

import collections
import json
import os
import sys

import numpy as np
import onnxruntime as ort

for path in sys.argv[1:]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.enable_profiling = True
    so.profile_file_prefix = "/tmp/ortprof"
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    x = np.random.default_rng(0).uniform(0, 255, shape).astype("float32")
    if "timm" in path:
        x = x / 255.0
    for _ in range(50):
        s.run(None, {inp.name: x})
    s.end_profiling()
    # second session run, profiled from scratch
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for _ in range(300):
        s.run(None, {inp.name: x})
    prof = s.end_profiling()
    events = json.load(open(prof))
    os.remove(prof)
    by_type = collections.Counter()
    count = collections.Counter()
    total_run = 0
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_type[e["args"]["op_name"]] += e["dur"]
            count[e["args"]["op_name"]] += 1
        if e.get("cat") == "Session" and e["name"] == "model_run":
            total_run += e["dur"]
    runs = 300
    kernel = sum(by_type.values())
    print(
        f"== {os.path.basename(path)}: model_run {total_run / runs:.1f} us/run, kernels {kernel / runs:.1f} us/run, "
        f"nodes/run {sum(count.values()) / runs:.0f}"
    )
    for op, d in by_type.most_common(12):
        print(f"   {op:22s} {d / runs:7.1f} us  ({count[op] / runs:.0f} nodes)")
