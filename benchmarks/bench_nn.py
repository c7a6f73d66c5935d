"""Benchmark: forward + backward of the Winograd-ReLU layer vs torch's conv2d, CIFAR ResNet-18 shapes.

For each residual 3x3 layer shape of the CIFAR ResNet-18 (64 ch @ 32x32, 128 @ 16x16, 256 @ 8x8, 512 @ 4x4)
this times one forward + backward pass of `WinogradConv2d(mode="winograd_relu")` and of
`conv2d(relu(x), g, padding=1)` (the spatial layer it replaces), in float32 and under bfloat16 autocast, and
prints the time ratio (Winograd / conv2d; < 1 means the Winograd layer is faster). Both run in this process
on the same inputs, so the ratio is meaningful on a shared machine even when the absolute times are not.

    python benchmarks/bench_nn.py [--batch 32] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from winosim.nn.layers import WinogradConv2d  # noqa: E402

SHAPES = [(64, 32), (128, 16), (256, 8), (512, 4)]  # (channels, map side) of the CIFAR ResNet-18 stages


def _time(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up (allocator, oneDNN primitive caches)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench(channels: int, side: int, batch: int, precision: str, repeats: int) -> tuple[float, float]:
    torch.manual_seed(0)
    layer = WinogradConv2d(channels, channels, "winograd_relu")
    weight = torch.randn(channels, channels, 3, 3, requires_grad=True)
    x = torch.randn(batch, channels, side, side, requires_grad=True)
    ctx = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if precision == "bf16"
        else (lambda: torch.autocast("cpu", enabled=False))
    )

    def winograd() -> None:
        with ctx():
            y = layer(x)
        y.float().sum().backward()

    def spatial() -> None:
        with ctx():
            y = F.conv2d(torch.relu(x), weight, padding=1)
        y.float().sum().backward()

    return _time(winograd, repeats), _time(spatial, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, median of {args.repeats}")
    print(f"{'shape':>14} {'precision':>9} {'winograd ms':>12} {'conv2d ms':>10} {'ratio':>6}")
    for precision in args.precisions.split(","):
        total_w = total_s = 0.0
        for channels, side in SHAPES:
            w, s = bench(channels, side, args.batch, precision, args.repeats)
            total_w, total_s = total_w + w, total_s + s
            print(f"{f'{channels}ch {side}x{side}':>14} {precision:>9} {1e3 * w:12.1f} {1e3 * s:10.1f} {w / s:6.2f}")
        print(f"{'all four':>14} {precision:>9} {1e3 * total_w:12.1f} {1e3 * total_s:10.1f} {total_w / total_s:6.2f}")


if __name__ == "__main__":
    main()
