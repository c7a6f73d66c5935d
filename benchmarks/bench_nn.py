"""Benchmark: training speed of the networks behind the shipped traces, in each of the three methods.

Section 1: the whole training step (forward, backward, SGD-Nesterov step with weight decay) of
VGG-nagadomi and the CIFAR ResNet-18 in `spatial`, `native` and `winograd_relu`, batch 128 by default, in
the precision training uses on this machine (`--precision auto`: bf16 autocast where the CPU has native
bf16 arithmetic, else fp32), channels-last. It prints images/s, the ratio to the spatial model of the same
network (the issue's target: native and Winograd-ReLU >= 1.0), and the achieved GFLOP/s of *spatial-
equivalent* work (6 x the dense spatial multiply-accumulates per image: forward, and two GEMMs backward)
against this machine's peak, measured in the same run as a large matrix product in fp32 and, where the CPU
has native bf16 or `--precision bf16` is asked, in bf16 (emulated bf16 ran below 0.5 GFLOP/s on an AVX2-only
CPU: its 2048^3 products took minutes and a ratio to it means nothing, so it is not measured there).

Section 2 (`--layers`; `--only-layers` skips section 1): forward + backward of one
`WinogradConv2d(winograd_relu)` against `conv2d(relu(x))` on every Winograd layer shape of each network, and
of the layer's element-wise stage alone (its 16 batched products forward and the two backward, on tensors of
the layer's shapes), per shape and for the network's 3x3 layers in total: where the Winograd layer's time
goes by size, and the bound a fused transform could reach (the products' time: the transforms free) against
the spatial convolution.

Section 3 (`--products`): the element-wise stage's forward product on every Winograd layer shape, written
five ways (torch.bmm with each operand layout, a loop of mm, a grouped 1x1 conv2d), in GFLOP/s: whether any
formulation torch offers runs the small-C products as fast as the direct convolution.

`--malloc retain` (the default) keeps freed memory in the process as `winosim train` does
(`winosim.nn.memory`); `--malloc default` leaves glibc's settings, for the comparison.

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
from winosim.nn.memory import retain_freed_memory  # noqa: E402
from winosim.nn.models import build_model  # noqa: E402
from winosim.nn.train import autocast, cpu_has_native_bf16, resolve_precision  # noqa: E402

NETWORKS = {"vgg_nagadomi": "vgg_nagadomi", "resnet18": "resnet18_cifar"}  # model name -> geometry name


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


def winograd_layer_shapes(network: str) -> dict[tuple[int, int, int], int]:
    """The network's Winograd 3x3 layers as (input channels, output channels, map side) -> how many."""
    shapes: dict[tuple[int, int, int], int] = {}
    for layer in network_geometry(NETWORKS[network]).layers:
        if layer.kind == "winograd":
            key = (layer.in_channels, layer.out_channels, layer.in_height)
            shapes[key] = shapes.get(key, 0) + 1
    return shapes


def layer_times_s(
    in_channels: int, out_channels: int, side: int, batch: int, precision: str, repeats: int
) -> tuple[float, float, float]:
    """Median seconds of forward + backward of one layer shape: (Winograd-ReLU layer, its element-wise stage
    alone, conv2d(relu(x))), on channels-last maps as in training. The element-wise stage is the 16 batched
    products of the layer, (tiles x C) @ (C x K) with V stored tiles-first, and their two gradients on tensors
    of the layer's shapes: no transform, no ReLU (what a transform fused away would leave).

    As in a training step: the maps (x, V and the gradients arriving) are in the dtype the networks' batch
    norms hand a layer under the precision (bf16 under bf16 autocast, where the transforms then run in bf16), the
    weights fp32 parameters that autocast casts, and every gradient is new each call (none accumulates)."""
    torch.manual_seed(0)
    maps = torch.bfloat16 if precision == "bf16" else torch.float32
    layer = WinogradConv2d(in_channels, out_channels, "winograd_relu")
    weight = torch.randn(out_channels, in_channels, 3, 3, requires_grad=True)
    x = torch.randn(batch, in_channels, side, side).to(maps, memory_format=torch.channels_last).requires_grad_()
    dy = torch.randn(batch, out_channels, side, side).to(maps, memory_format=torch.channels_last)
    u = (0.1 * torch.randn(16, in_channels, out_channels)).requires_grad_()
    v = torch.randn(16, batch * (-(-side // 2)) ** 2, in_channels).relu_().to(maps).requires_grad_()
    device = torch.device("cpu")

    def winograd() -> None:
        x.grad = layer.weight.grad = None
        with autocast(device, precision):
            y = layer(x)
        y.backward(dy.to(y.dtype))

    def products() -> None:
        v.grad = u.grad = None
        with autocast(device, precision):
            m = torch.bmm(v, u)
        m.backward(torch.ones_like(m))

    def spatial() -> None:
        x.grad = weight.grad = None
        with autocast(device, precision):
            y = F.conv2d(torch.relu(x), weight, padding=1)
        y.backward(dy.to(y.dtype))

    return _median_s(winograd, repeats), _median_s(products, repeats), _median_s(spatial, repeats)


def layer_section(networks: list[str], batch: int, precision: str, repeats: int) -> None:
    """Section 2: per Winograd layer shape of each network, and the network's 3x3 layers in total."""
    print("forward + backward of one layer; 'products' = its element-wise stage alone (the transforms free)")
    print(
        f"{'network':<13} {'layer (C->K, side)':>20} {'layers':>6} {'winograd ms':>12} {'products ms':>12} "
        f"{'conv2d ms':>10} {'winograd/conv':>14} {'products/conv':>14}"
    )
    for network in networks:
        totals = [0.0, 0.0, 0.0]
        for (c, k, side), count in winograd_layer_shapes(network).items():
            times = layer_times_s(c, k, side, batch, precision, repeats)
            totals = [total + count * t for total, t in zip(totals, times, strict=True)]
            w, p, s = times
            print(
                f"{network:<13} {f'{c}->{k}, {side}x{side}':>20} {count:6d} {1e3 * w:12.1f} {1e3 * p:12.1f} "
                f"{1e3 * s:10.1f} {w / s:13.2f}x {p / s:13.2f}x"
            )
        w, p, s = totals
        print(
            f"{network:<13} {'all 3x3 layers':>20} {'':>6} {1e3 * w:12.1f} {1e3 * p:12.1f} {1e3 * s:10.1f} "
            f"{w / s:13.2f}x {p / s:13.2f}x"
        )


def product_variants_gflops(
    in_channels: int, out_channels: int, side: int, batch: int, dtype: torch.dtype, repeats: int
) -> dict[str, float]:
    """GFLOP/s of the element-wise stage's forward product (16 products of K x C by C x T) written five ways:
    torch.bmm with each operand layout, a loop of 16 mm, and a grouped 1x1 conv2d (channels-last)."""
    torch.manual_seed(0)
    c, k, positions = in_channels, out_channels, 16
    tiles = batch * (-(-side // 2)) ** 2
    flops = 2 * positions * c * k * tiles
    u, v = torch.randn(positions, c, k, dtype=dtype), torch.randn(positions, c, tiles, dtype=dtype)
    u_t, v_t = u.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()
    maps = torch.randn(batch, positions * c, -(-side // 2), -(-side // 2), dtype=dtype)
    maps = maps.contiguous(memory_format=torch.channels_last)
    grouped = torch.randn(positions * k, c, 1, 1, dtype=dtype).contiguous(memory_format=torch.channels_last)
    variants: dict[str, Callable[[], object]] = {
        "bmm(U^T, V) (the layer before 2026-11-30)": lambda: torch.bmm(u.transpose(1, 2), v),
        "bmm(U^T contiguous, V)": lambda: torch.bmm(u_t, v),
        "bmm(V^T contiguous, U) (the layer: V tiles-first)": lambda: torch.bmm(v_t, u),
        "16 x mm(V^T, U)": lambda: [torch.mm(v_t[i], u[i]) for i in range(positions)],
        "grouped 1x1 conv2d": lambda: F.conv2d(maps, grouped, groups=positions),
    }
    return {name: flops / _median_s(fn, repeats) / 1e9 for name, fn in variants.items()}


def products_section(networks: list[str], batch: int, precision: str, repeats: int) -> None:
    """Section 3: the element-wise stage's forward product in five formulations, per layer shape."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    print(f"the element-wise stage's forward product, GFLOP/s ({dtype}), per Winograd layer shape")
    for network in networks:
        for c, k, side in winograd_layer_shapes(network):
            rates = product_variants_gflops(c, k, side, batch, dtype, repeats)
            print(
                f"{network:<13} {f'{c}->{k}, {side}x{side}':>16}  "
                + "  ".join(f"{n} {r:.0f}" for n, r in rates.items())
            )


def step_section(networks: list[str], batch: int, precision: str, repeats: int, peak: dict[str, float]) -> None:
    """Section 1: the whole training step of each network in each method."""
    print(
        f"{'network':<13} {'method':<14} {'step ms':>8} {'images/s':>9} {'vs spatial':>10} {'GFLOP/s':>8} "
        + "".join(f"{f'of {name} peak':>13}" for name in peak)
    )
    for network in networks:
        flops_per_image = 6 * spatial_macs_per_image(network)
        spatial_rate = None
        for mode in MODES:
            seconds = training_step_s(network, mode, batch, precision, repeats)
            rate = batch / seconds
            spatial_rate = spatial_rate or rate
            gflops = rate * flops_per_image / 1e9
            print(
                f"{network:<13} {mode:<14} {1e3 * seconds:8.0f} {rate:9.1f} {rate / spatial_rate:9.2f}x "
                f"{gflops:8.0f}" + "".join(f"{gflops / rate_peak:13.0%}" for rate_peak in peak.values())
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated")
    parser.add_argument("--layers", action="store_true", help="also time single layers (section 2)")
    parser.add_argument("--only-layers", action="store_true", help="section 2 only")
    parser.add_argument("--products", action="store_true", help="also section 3: the product in five formulations")
    parser.add_argument(
        "--malloc",
        choices=("retain", "default"),
        default="retain",
        help="retain: keep freed memory in the process as `winosim train` does (winosim.nn.memory); default: "
        "glibc's own settings (run both, one after the other, to measure the difference)",
    )
    args = parser.parse_args()
    networks = [name for name in args.networks.split(",") if name]
    unknown = sorted(set(networks) - set(NETWORKS))
    if unknown:
        parser.error(f"unknown network(s) {', '.join(unknown)}: choose from {', '.join(NETWORKS)}")
    torch.set_num_threads(args.threads)
    retained = args.malloc == "retain" and retain_freed_memory()
    precision = resolve_precision(args.precision, torch.device("cpu"))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, precision {precision} "
        f"(asked {args.precision}), median of {args.repeats}; malloc {'retain' if retained else 'default'}; "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    peak = {"fp32": peak_gflops(torch.float32)}
    native_bf16 = cpu_has_native_bf16()
    if native_bf16 or precision == "bf16":
        peak["bf16"] = peak_gflops(torch.bfloat16)
    bf16_note = (
        "" if native_bf16 else f" (no native bf16 on this CPU: {'emulated' if 'bf16' in peak else 'not measured'})"
    )
    print(
        "peak (2048^3 matrix product): "
        + ", ".join(f"{name} {rate:.0f} GFLOP/s" for name, rate in peak.items())
        + bf16_note
    )
    if not args.only_layers:
        print()
        step_section(networks, args.batch, precision, args.repeats, peak)
    if args.layers or args.only_layers:
        print()
        layer_section(networks, args.batch, precision, args.repeats)
    if args.products:
        print()
        products_section(networks, args.batch, precision, args.repeats)


if __name__ == "__main__":
    main()
