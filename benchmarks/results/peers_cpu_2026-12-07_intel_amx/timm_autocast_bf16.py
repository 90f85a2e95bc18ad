import sys
import time

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer

torch.set_num_threads(2)
torch.manual_seed(0)
shape = dict(w192=(4, 192, 9, 12, 384), tiny=(8, 128, 6, 4, 256))[sys.argv[1]]
bf16 = sys.argv[2] == "bf16"
p, w, d, h, m = shape
model = VisionTransformer(
    img_size=32, patch_size=p, embed_dim=w, depth=d, num_heads=h, mlp_ratio=m / w, num_classes=10
)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
lf = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
x = torch.rand(128, 3, 32, 32)
y = torch.randint(0, 10, (128,))
ts = []
for i in range(12):
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = lf(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    ts.append(time.perf_counter() - t)
print(sys.argv[1:], round(128 / np.median(ts[3:])))
