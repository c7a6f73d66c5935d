"""What a layer's passes move: bytes through DRAM and the global buffer, per pass and in total.

From a layer's plan (`winosim.sim.plan`), for every pass (k-block-major):

- DRAM reads: the k-block's stored weights (values and metadata) for the first group of a k-block when the
  weights stay resident, for every group when they are streamed; the group's stored input window (halo
  included) for every k-block, or only for the first one when the input map stays resident;
- DRAM writes: the pass's outputs (k-block channels x output pixels, at the data width);
- buffer reads: a PE's weights once per chunk of columns (`LayerPlan.chunk_columns`); the inputs once per
  k-block (the transformed tiles for Winograd-domain work); the outputs are written into the buffer and
  read out to DRAM (twice their bytes); every byte fetched from DRAM fills the buffer once.

The per-group sizes depend on the groups, the activations' storage format and the data width only; the
layer's traffic on the plan and the data width only. Both are kept in the work's memo under the keys of
their stages (`GROUP_TRAFFIC`, `TRAFFIC`), so design points that share a plan share them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from winosim.arch import Arch
from winosim.integers import ceil_div
from winosim.memo import MemoKey, Stage
from winosim.sim.plan import (
    LayerPlan,
    input_columns,
    input_footprint,
    input_rows,
    output_columns,
    output_rows,
    weight_footprint,
)
from winosim.workload import IntArray, LayerWork

GROUP_TRAFFIC = Stage("group traffic", reads=("data_width_bits",))
TRAFFIC = Stage("traffic", reads=("data_width_bits",))


@dataclass(frozen=True, eq=False)
class Traffic:
    """What a layer's plan moves: per pass (k-block-major) the DRAM bytes read and written, per group its
    columns (`tiles`), per k-block its channels (`ksizes`), and the layer's byte totals. The arrays are
    read-only."""

    read_bytes: IntArray
    write_bytes: IntArray
    read_weight_bytes: IntArray
    """The weights' part of `read_bytes`, per pass."""
    read_input_bytes: IntArray
    """The input map's part of `read_bytes`, per pass."""
    tiles: IntArray
    ksizes: IntArray
    dram_weight_read_bytes: int
    dram_input_read_bytes: int
    dram_output_write_bytes: int
    dram_metadata_bytes: int
    buffer_weight_read_bytes: int
    buffer_input_read_bytes: int

    def read_cycles(self, bandwidth_bytes_per_cycle: int) -> list[int]:
        """Cycles of each pass's DRAM read on a channel of the given bandwidth."""
        return ceil_div(self.read_bytes, bandwidth_bytes_per_cycle).tolist()

    def write_cycles(self, bandwidth_bytes_per_cycle: int) -> list[int]:
        """Cycles of each pass's DRAM write on a channel of the given bandwidth."""
        return ceil_div(self.write_bytes, bandwidth_bytes_per_cycle).tolist()

    def stats(self) -> dict[str, int]:
        """The layer's DRAM and buffer accesses, as `LayerStats` fields."""
        return {
            "dram_weight_read_bytes": self.dram_weight_read_bytes,
            "dram_input_read_bytes": self.dram_input_read_bytes,
            "dram_output_write_bytes": self.dram_output_write_bytes,
            "dram_metadata_bytes": self.dram_metadata_bytes,
            "buffer_fill_bytes": self.dram_weight_read_bytes + self.dram_input_read_bytes,
            "buffer_weight_read_bytes": self.buffer_weight_read_bytes,
            "buffer_input_read_bytes": self.buffer_input_read_bytes,
            "buffer_output_bytes": 2 * self.dram_output_write_bytes,
        }


def layer_traffic(work: LayerWork, plan: LayerPlan, plan_key: MemoKey, arch: Arch) -> Traffic:
    """The traffic of `work` cut by `plan` (whose memo key is `plan_key`) on `arch`, kept in the work's memo."""
    key = TRAFFIC.key(arch, plan_key)
    return work.memo.get(key, lambda: _traffic(work, plan, TRAFFIC.view(arch)))


def _group_traffic(work: LayerWork, plan: LayerPlan, arch: Arch) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Per group: stored input bytes and their metadata, columns, output pixels (read-only). They depend on the
    groups, the activations' storage format and the data width, not on the k-blocks (nor the PE count)."""
    width = arch.data_width_bits
    groups = len(plan.groups)
    input_bytes = np.empty(groups, dtype=np.int64)
    input_meta = np.empty(groups, dtype=np.int64)
    tiles = np.empty(groups, dtype=np.int64)
    out_pixels = np.empty(groups, dtype=np.int64)
    for g, group in enumerate(plan.groups):
        col0, col1 = group.columns(work)
        fp = input_footprint(
            work,
            plan.activation_format,
            width,
            group.image,
            input_rows(work, group.row0, group.row1),
            input_columns(work, col0, col1),
        )
        input_bytes[g], input_meta[g] = fp.bytes, fp.metadata_bytes
        tiles[g] = (group.row1 - group.row0) * (col1 - col0)
        out_pixels[g] = output_rows(work, group.row0, group.row1) * output_columns(work, col0, col1)
    for array in (input_bytes, input_meta, tiles, out_pixels):
        array.setflags(write=False)
    return input_bytes, input_meta, tiles, out_pixels


def _traffic(work: LayerWork, plan: LayerPlan, arch: Arch) -> Traffic:
    width, wb = arch.data_width_bits, arch.data_width_bytes
    ksizes = np.array([k1 - k0 for k0, k1 in plan.kblocks], dtype=np.int64)
    blocks, groups = len(plan.kblocks), len(plan.groups)
    weight_fps = [weight_footprint(work, plan.weight_format, width, k0, k1) for k0, k1 in plan.kblocks]
    weight_bytes = np.array([fp.bytes for fp in weight_fps], dtype=np.int64)
    weight_meta = np.array([fp.metadata_bytes for fp in weight_fps], dtype=np.int64)
    group_key = GROUP_TRAFFIC.key(arch, plan.activation_format, plan.group_rows, plan.group_segments)
    input_bytes, input_meta, tiles, out_pixels = work.memo.get(
        group_key, lambda: _group_traffic(work, plan, GROUP_TRAFFIC.view(arch))
    )

    first_of_block = np.zeros((blocks, groups), dtype=bool)
    first_of_block[:, 0] = True
    if not plan.weights_resident:
        first_of_block[:, :] = True  # weights stream through the buffer again for every group
    fetch_inputs = np.ones((blocks, groups), dtype=bool)
    if plan.input_resident:
        fetch_inputs[1:, :] = False
    read_weight = np.where(first_of_block, weight_bytes[:, None], 0)
    read_input = np.where(fetch_inputs, input_bytes[None, :], 0)
    read_meta = np.where(first_of_block, weight_meta[:, None], 0) + np.where(fetch_inputs, input_meta[None, :], 0)
    write = ksizes[:, None] * out_pixels[None, :] * wb

    weight_rereads = int(ceil_div(tiles, plan.chunk_columns).sum())  # weights read once per chunk of a pass
    if work.domain == "winograd":
        buffer_input = blocks * work.positions * work.in_channels * int(tiles.sum()) * wb
    else:
        buffer_input = blocks * int(input_bytes.sum())
    read_bytes = (read_weight + read_input).ravel()
    write_bytes = write.ravel()
    read_weight_bytes, read_input_bytes = read_weight.ravel(), read_input.ravel()
    for array in (read_bytes, write_bytes, read_weight_bytes, read_input_bytes, tiles, ksizes):
        array.setflags(write=False)
    return Traffic(
        read_bytes=read_bytes,
        write_bytes=write_bytes,
        read_weight_bytes=read_weight_bytes,
        read_input_bytes=read_input_bytes,
        tiles=tiles,
        ksizes=ksizes,
        dram_weight_read_bytes=int(read_weight.sum()),
        dram_input_read_bytes=int(read_input.sum()),
        dram_output_write_bytes=int(write.sum()),
        dram_metadata_bytes=int(read_meta.sum()),
        buffer_weight_read_bytes=int(weight_bytes.sum()) * weight_rereads,
        buffer_input_read_bytes=buffer_input,
    )
