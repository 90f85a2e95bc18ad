import time

import numpy as np
import torch

torch.set_num_threads(2)


def t(f, n=20):
    f()
    ts = []
    for _ in range(n):
        s = time.perf_counter()
        f()
        ts.append(time.perf_counter() - s)
    return np.median(ts) * 1e3


a = torch.rand(8320, 192)
w = torch.rand(192, 576)
q = torch.rand(1536, 65, 16)
k = torch.rand(1536, 65, 16)
x = torch.rand(8320, 192)
print(
    f"torch matmul {t(lambda: a @ w):.2f} ms  bmm {t(lambda: q @ k.transpose(1, 2)):.2f} ms  mul+sum {t(lambda: (x * x).sum(-1)):.2f} ms"
)
