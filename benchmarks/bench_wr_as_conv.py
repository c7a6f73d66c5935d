"""Experiment (not adopted): Winograd-ReLU F(2x2,3x3) written as oneDNN convolutions, against winosim's layer.

The input transform runs as a depthwise 4x4 stride-2 convolution with the 16 basis kernels B^T e_a e_b^T B,
then the Winograd-domain ReLU; the element-wise stage and the output transform fold into one 1x1 convolution
with 16C inputs and 4K outputs (weight Q[xi, c, k] * (A^T (x) A^T)[p q, xi]), then a pixel shuffle. Prints
the forward + backward time of one layer (bf16 autocast, channels-last input, batch 128) as a ratio to the
spatial convolution, for winosim's layer and for this formulation, and their largest relative difference.

    python benchmarks/bench_wr_as_conv.py [--threads 1]

docs/training.md quotes the result: the folded 1x1 convolution does 4x the multiplies of the element-wise
stage, which the faster kernels do not repay.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from winosim.nn.layers import WinogradConv2d

BT = torch.tensor([[1.0, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
AT = torch.tensor([[1.0, 1, 1, 0], [0, 1, -1, -1]])


class WinogradReluAsConv(nn.Module):
    """The same function as `layer` (a winograd_relu WinogradConv2d), computed with convolutions."""

    def __init__(self, layer: WinogradConv2d) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("basis", torch.einsum("ia,jb->ijab", BT, BT).reshape(16, 1, 4, 4))
        self.register_buffer("output", torch.einsum("pi,qj->pqij", AT, AT).reshape(4, 16))

    def forward(self, x: Tensor) -> Tensor:
        c, k = self.layer.in_channels, self.layer.out_channels
        basis: Tensor = self.basis  # type: ignore[assignment]
        output: Tensor = self.output  # type: ignore[assignment]
        v = F.conv2d(F.pad(x, (1, 1, 1, 1)), basis.repeat(c, 1, 1, 1), stride=2, groups=c).relu()
        folded = torch.einsum("xck,px->kpcx", self.layer.masked_weight(), output).reshape(4 * k, 16 * c, 1, 1)
        return F.pixel_shuffle(F.conv2d(v, folded), 2)


def step_seconds(module: Callable[[Tensor], Tensor], x: Tensor, repeat: int = 5) -> float:
    """Mean seconds of forward + backward under bf16 autocast, after two warm-up steps."""

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = module(x)
        y.float().sum().backward()

    step()
    step()
    start = time.perf_counter()
    for _ in range(repeat):
        step()
    return (time.perf_counter() - start) / repeat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for channels, size in ((64, 32), (128, 16), (256, 8)):
        x = torch.randn(args.batch, channels, size, size).to(memory_format=torch.channels_last)
        x.requires_grad_(True)
        spatial = WinogradConv2d(channels, channels, "spatial")
        layer = WinogradConv2d(channels, channels, "winograd_relu")
        as_conv = WinogradReluAsConv(layer)
        with torch.no_grad():
            reference, other = layer(x), as_conv(x)
        error = ((reference - other).abs().max() / reference.abs().max()).item()
        t_spatial, t_layer, t_conv = (step_seconds(m, x) for m in (spatial, layer, as_conv))
        print(
            f"C = K = {channels}, {size}x{size}: spatial {t_spatial * 1e3:.0f} ms; winosim layer "
            f"{t_spatial / t_layer:.2f}x spatial; as convolutions {t_spatial / t_conv:.2f}x; max rel diff {error:.1e}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
