"""ONNX Runtime's transformer optimizer on our ONNX file and on timm's, then all four timed in interleaved rounds.

python transformer_optimizer.py OURS.onnx TIMM.onnx NUM_HEADS HIDDEN OUT_FOLDER
"""

import collections
import subprocess
import sys
from pathlib import Path

from onnxruntime.transformers import optimizer

ours, timm, heads, hidden, out = sys.argv[1:]
out = Path(out)
paths = []
for path in (ours, timm):
    optimized = out / (Path(path).stem + "_transformer_optimizer.onnx")
    model = optimizer.optimize_model(path, model_type="vit", num_heads=int(heads), hidden_size=int(hidden))
    ops = collections.Counter(node.op_type for node in model.model.graph.node)
    print(Path(path).name, "->", optimized.name, dict(ops.most_common()), flush=True)
    model.save_model_to_file(str(optimized))
    paths += [path, str(optimized)]
compare = Path(__file__).resolve().parents[4] / "benchmarks" / "compare_latency.py"
subprocess.run(
    [
        sys.executable,
        str(compare),
        *paths,
        "--rounds",
        "5",
        "--threads",
        "2",
        "--output",
        str(out / "latency.json"),
    ],
    check=True,
)
