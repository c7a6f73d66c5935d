"""Benchmark: training speed of the networks behind the shipped traces, in each of the three methods.

Section 1 (always): the whole training step (forward, backward, SGD-Nesterov step with weight decay) of
VGG-nagadomi and the CIFAR ResNet-18 in `spatial`, `native` and `winograd_relu`, batch 128 by default, in
the precision training uses on this machine (`--precision auto`: bf16 autocast where the CPU has native
bf16 arithmetic, else fp32), channels-last. It prints images/s, the ratio to the spatial model of the same
network (the issue's target: native and Winograd-ReLU >= 1.0), and the achieved GFLOP/s of *spatial-
equivalent* work (6 x the dense spatial multiply-accumulates per image: forward, and two GEMMs backward)
against this machine's peak, measured in the same run as a large matrix product in fp32 and in bf16.

Section 2 (`--layers`): forward + backward of one `WinogradConv2d(winograd_relu)` against
`conv2d(relu(x))` on the four CIFAR ResNet-18 layer shapes: where the Winograd layer's time goes by size.

Everything runs in this process back to back, so the ratios hold on a shared machine even when absolute
times do not; the load average at the start is printed.

    python benchmarks/bench_nn.py [--batch 128] [--threads 2] [--repeats 3] [--precision auto] [--layers]
"""

from __future__ import annotations

import argparse
import os
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

from winosim.geometry import network as network_geometry  # noqa: E402
from winosim.nn.layers import MODES, WinogradConv2d  # noqa: E402
from winosim.nn.models import build_model  # noqa: E402
from winosim.nn.train import autocast, resolve_precision  # noqa: E402

NETWORKS = {"vgg_nagadomi": "vgg_nagadomi", "resnet18": "resnet18_cifar"}  # model name -> geometry name
LAYER_SHAPES = [(64, 32), (128, 16), (256, 8), (512, 4)]  # (channels, map side) of the CIFAR ResNet-18 stages


def _median_s(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):  # allocator, oneDNN primitive caches
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    """Achieved GFLOP/s of one square matrix product of `size` in `dtype`, the fastest of `repeats`: this
    machine's practical peak (the fastest run, since on a shared machine a slow one says nothing of the peak)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        samples.append(time.perf_counter() - start)
    return 2 * size**3 / min(samples) / 1e9


def spatial_macs_per_image(network: str) -> int:
    """Dense spatial multiply-accumulates of one forward pass (every conv and FC layer)."""
    return sum(layer.dense_spatial_multiplies() for layer in network_geometry(NETWORKS[network]).layers)


def training_step_s(network: str, mode: str, batch: int, precision: str, repeats: int) -> float:
    """Median seconds of one training step on random CIFAR-shaped data."""
    torch.manual_seed(0)
    model = build_model(network, mode, 10, dropout=False).train()
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    device = torch.device("cpu")

    def step() -> None:
        with autocast(device, precision):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _median_s(step, repeats)


def layer_pair_s(channels: int, side: int, batch: int, precision: str, repeats: int) -> tuple[float, float]:
    """Median seconds of forward + backward: (Winograd-ReLU layer, conv2d(relu(x)))."""
    torch.manual_seed(0)
    layer = WinogradConv2d(channels, channels, "winograd_relu")
    weight = torch.randn(channels, channels, 3, 3, requires_grad=True)
    x = torch.randn(batch, channels, side, side, requires_grad=True)
    device = torch.device("cpu")

    def winograd() -> None:
        with autocast(device, precision):
            y = layer(x)
        y.float().sum().backward()

    def spatial() -> None:
        with autocast(device, precision):
            y = F.conv2d(torch.relu(x), weight, padding=1)
        y.float().sum().backward()

    return _median_s(winograd, repeats), _median_s(spatial, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--layers", action="store_true", help="also time single layers (section 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    precision = resolve_precision(args.precision, torch.device("cpu"))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, precision {precision} "
        f"(asked {args.precision}), median of {args.repeats}; load average at start {os.getloadavg()[0]:.2f}"
    )
    peak = {name: peak_gflops(dtype) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"peak (2048^3 matrix product): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    print()
    print(
        f"{'network':<13} {'method':<14} {'step ms':>8} {'images/s':>9} {'vs spatial':>10} {'GFLOP/s':>8} "
        f"{'of fp32 peak':>12} {'of bf16 peak':>12}"
    )
    for network in args.networks.split(","):
        flops_per_image = 6 * spatial_macs_per_image(network)
        spatial_rate = None
        for mode in MODES:
            seconds = training_step_s(network, mode, args.batch, precision, args.repeats)
            rate = args.batch / seconds
            spatial_rate = spatial_rate or rate
            gflops = rate * flops_per_image / 1e9
            print(
                f"{network:<13} {mode:<14} {1e3 * seconds:8.0f} {rate:9.1f} {rate / spatial_rate:9.2f}x "
                f"{gflops:8.0f} {gflops / peak['fp32']:11.0%} {gflops / peak['bf16']:11.0%}"
            )
    if not args.layers:
        return
    print()
    print(f"{'layer shape':>14} {'winograd ms':>12} {'conv2d ms':>10} {'ratio':>6}")
    for channels, side in LAYER_SHAPES:
        w, s = layer_pair_s(channels, side, args.batch, precision, args.repeats)
        print(f"{f'{channels}ch {side}x{side}':>14} {1e3 * w:12.1f} {1e3 * s:10.1f} {w / s:6.2f}")


if __name__ == "__main__":
    main()
