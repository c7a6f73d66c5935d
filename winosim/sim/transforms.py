"""The transform units of a Winograd-domain layer: their time per pass and the adds and compares they do.

For every pass, the input transform turns the group's input tiles of every input channel into the Winograd
domain (B^T d B), followed for Winograd-ReLU by a ReLU on every element; the output transform turns the
k-block's accumulated tiles of every output channel back (A^T M A). Each unit finishes `tiles_per_cycle`
tiles (of one channel) per cycle, so a pass keeps the input transform ceil(C x tiles / (count x
tiles_per_cycle)) cycles and the output transform ceil(K_block x tiles / ...) cycles. The input tiles are
transformed again for every k-block (they are not kept in the Winograd domain across k-blocks).
Spatial-domain work has no transforms.
"""

from __future__ import annotations

import numpy as np

from winosim.arch import Arch
from winosim.counts import transform_adds_per_tile
from winosim.integers import ceil_div
from winosim.methods import method
from winosim.sim.traffic import Traffic
from winosim.workload import LayerWork


def transform_cycles(work: LayerWork, traffic: Traffic, arch: Arch) -> tuple[list[int], list[int]]:
    """Cycles of the input and of the output transform for every pass (k-block-major); zeros when spatial."""
    passes = len(traffic.ksizes) * len(traffic.tiles)
    if work.domain != "winograd":
        return [0] * passes, [0] * passes
    per_block = ceil_div(work.in_channels * traffic.tiles, arch.input_transform.tiles_per_cycle_total).tolist()
    output = ceil_div(np.outer(traffic.ksizes, traffic.tiles), arch.output_transform.tiles_per_cycle_total)
    return per_block * len(traffic.ksizes), output.ravel().tolist()


def transform_stats(work: LayerWork, traffic: Traffic) -> dict[str, int]:
    """The transforms' adds and the ReLU's compares over the layer, as `LayerStats` fields."""
    if work.domain != "winograd":
        return {"input_transform_adds": 0, "output_transform_adds": 0, "relu_compares": 0}
    in_adds, out_adds = transform_adds_per_tile(work.winograd_m, work.layer.kernel)
    tiles = int(traffic.tiles.sum())
    transformed_tiles = len(traffic.ksizes) * tiles
    relu = method(work.method).relu_in_winograd
    return {
        "input_transform_adds": in_adds * work.in_channels * transformed_tiles,
        "output_transform_adds": out_adds * work.out_channels * tiles,
        "relu_compares": work.positions * work.in_channels * transformed_tiles if relu else 0,
    }
