"""Keras' EinsumDense QKV projection on the torch backend (torch.einsum, then the bias) against F.linear (one fused
matmul + bias) and matmul + bias: forward and backward at the vit_cifar10 step's shape (batch 128, 65 tokens, width
192, 12 heads of 16). 7 interleaved rounds of 20 calls each, after 5 warm-ups; the median of the rounds.

    python einsum_vs_linear.py   (torch 2.13.0+cpu, its default threads)
"""

import statistics
import time

import torch
import torch.nn.functional as F

torch.manual_seed(0)
B, T, C, H, D = 128, 65, 192, 12, 16
x = torch.randn(B, T, C, requires_grad=True)
W = torch.randn(C, H, D, requires_grad=True)
b = torch.randn(H, D, requires_grad=True)


def einsum():
    y = torch.einsum("abc,cde->abde", x, W) + b
    y.sum().backward()


def linear():
    y = F.linear(x, W.reshape(C, H * D).t(), b.reshape(H * D)).reshape(B, T, H, D)
    y.sum().backward()


def matmul():
    y = (torch.matmul(x, W.reshape(C, H * D)) + b.reshape(H * D)).reshape(B, T, H, D)
    y.sum().backward()


calls = (einsum, linear, matmul)
for call in calls:
    for _ in range(5):
        call()
rounds = {call.__name__: [] for call in calls}
for _ in range(7):
    for call in calls:
        start = time.perf_counter()
        for _ in range(20):
            call()
        rounds[call.__name__].append((time.perf_counter() - start) / 20 * 1e3)
for name, times in rounds.items():
    print(f"{name:7s} median ms {statistics.median(times):.3f}")
