"""Experiment (issue 38): each block's attention as ONNX Runtime's fused CPU kernel (com.microsoft Attention).

    python fuse_attention.py IN.onnx OUT.onnx

The figures of the experiment log were taken with a first version of this script, which found the blocks by
their node names; the fusion now lives in `export/onnx_attention.py` (`python -m export.onnx --ort-attention`),
which finds them by the graph's pattern and writes the same nodes, so this script calls it.
"""

import sys
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from export.onnx_attention import fuse_attention  # noqa: E402

model = onnx.load(sys.argv[1])
fused = fuse_attention(model)
onnx.save(model, sys.argv[2])
print("fused", fused, "attention blocks;", len(model.graph.node), "nodes")
