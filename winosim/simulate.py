"""`simulate(trace, arch)`: run every layer of a trace under every method on one architecture.

For each layer and (method, variant) of the trace's workload (`winosim.workload.lower`, computed once and
reusable across design points), the layer is tiled into passes (`winosim.sim.plan`), the PE array's time
per pass is computed from the per-unit work (`winosim.sim.pe_array`), the passes run through the
discrete-event pipeline (`winosim.sim.pipeline`): by default the simpy event model, one fresh Environment
per layer (`engine="events"`), or the exact recurrences of that same model (`engine="recurrence"`, about 5x
faster on the pipeline, identical results to the cycle, as tests/sim/test_golden_results.py checks; sweeps
use it)), and the counts are priced
with the architecture's energy table (`winosim.cost`). Layers run one after another: a layer starts when
the previous one has written its last output.

What does not depend on the whole design point is kept in the workload's memo (`LayerWork.memo`): the plan
(`sim.plan.plan_key`), what it moves through DRAM and the buffer, the per-unit work and its arrangement into
passes, the makespans for a PE count and assignment. A sweep that passes one `workload` to every point
computes each of these once per distinct key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import simpy

from winosim.arch import Arch
from winosim.cost import ACCUMULATOR_BITS, energy_breakdown
from winosim.counts import count_operands, transform_adds_per_tile
from winosim.energy import EnergyTable, energy_table
from winosim.errors import ConfigError
from winosim.integers import ceil_div
from winosim.methods import available, check_methods, method
from winosim.sim.pe_array import pass_compute, zero_handling
from winosim.sim.pipeline import PassTiming, attribute, run_layer, solve_layer
from winosim.sim.plan import (
    LayerPlan,
    input_columns,
    input_footprint,
    input_rows,
    output_columns,
    output_rows,
    plan_key,
    plan_layer,
    weight_footprint,
)
from winosim.sim.results import LayerResult, LayerStats, SimResult
from winosim.trace import Trace
from winosim.workload import IntArray, LayerWork, Workload, lower

logger = logging.getLogger(__name__)

Engine = Literal["events", "recurrence"]
ENGINES: tuple[str, ...] = ("events", "recurrence")
"""Timing engines: the simpy event model, or the exact recurrences of the same model."""

Progress = Callable[[int, int], None]


def multiply_counts(work: LayerWork, arch: Arch) -> tuple[int, int, int, int]:
    """(algorithmic, actual, gated, skipped) multiplies of `work` under the array's zero handling."""
    weights_mode, acts_mode = zero_handling(work, arch.pe_array)
    pairs = work.pair_counts()
    algorithmic = pairs[(False, False)]
    issued = pairs[(weights_mode == "skip", acts_mode == "skip")]
    actual = pairs[(weights_mode != "none", acts_mode != "none")]
    return algorithmic, actual, issued - actual, algorithmic - issued


@dataclass(frozen=True, eq=False)
class _Traffic:
    """What a layer's plan moves, independent of everything but the plan: per pass (k-block-major) the DRAM
    bytes read and written, per group its columns (`tiles`), per k-block its channels, and the layer's byte
    totals. Kept in the work's memo under the plan's key; the arrays are read-only."""

    read_bytes: IntArray
    write_bytes: IntArray
    tiles: IntArray
    ksizes: IntArray
    dram_weight_read_bytes: int
    dram_input_read_bytes: int
    dram_output_write_bytes: int
    dram_metadata_bytes: int
    buffer_weight_read_bytes: int
    buffer_input_read_bytes: int


def _group_traffic(work: LayerWork, plan: LayerPlan, width: int) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Per group: stored input bytes and their metadata, columns, output pixels (read-only). They depend on the
    groups, the activations' storage format and the data width, not on the k-blocks (nor the PE count)."""
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


def _traffic(work: LayerWork, plan: LayerPlan, arch: Arch) -> _Traffic:
    width, wb = arch.data_width_bits, arch.data_width_bytes
    layer = work.layer
    ksizes = np.array([k1 - k0 for k0, k1 in plan.kblocks], dtype=np.int64)
    blocks, groups = len(plan.kblocks), len(plan.groups)
    weight_fps = [weight_footprint(work, plan.weight_format, width, k0, k1) for k0, k1 in plan.kblocks]
    weight_bytes = np.array([fp.bytes for fp in weight_fps], dtype=np.int64)
    weight_meta = np.array([fp.metadata_bytes for fp in weight_fps], dtype=np.int64)
    key = ("group traffic", plan.activation_format, width, plan.group_rows, plan.group_segments)
    input_bytes, input_meta, tiles, out_pixels = work.memo.get(key, lambda: _group_traffic(work, plan, width))

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
        buffer_input = blocks * work.positions * layer.in_channels * int(tiles.sum()) * wb
    else:
        buffer_input = blocks * int(input_bytes.sum())
    read_bytes = (read_weight + read_input).ravel()
    write_bytes = write.ravel()
    for array in (read_bytes, write_bytes, tiles, ksizes):
        array.setflags(write=False)
    return _Traffic(
        read_bytes=read_bytes,
        write_bytes=write_bytes,
        tiles=tiles,
        ksizes=ksizes,
        dram_weight_read_bytes=int(read_weight.sum()),
        dram_input_read_bytes=int(read_input.sum()),
        dram_output_write_bytes=int(write.sum()),
        dram_metadata_bytes=int(read_meta.sum()),
        buffer_weight_read_bytes=int(weight_bytes.sum()) * weight_rereads,
        buffer_input_read_bytes=buffer_input,
    )


def simulate_layer(work: LayerWork, arch: Arch, table: EnergyTable, *, engine: Engine = "events") -> LayerResult:
    """Simulate one layer under one method on `arch`.

    `engine="events"` (default) runs the passes through the simpy event model (`pipeline.run_layer`);
    `engine="recurrence"` evaluates the same model's recurrences (`pipeline.solve_layer`, identical results,
    much faster).
    """
    plan: LayerPlan = plan_layer(work, arch)
    pe = arch.pe_array
    wb = arch.data_width_bytes
    layer = work.layer
    winograd = work.domain == "winograd"

    compute = pass_compute(work, plan, pe)
    traffic = work.memo.get(("traffic", *plan_key(arch)), lambda: _traffic(work, plan, arch))
    tiles, ksizes = traffic.tiles, traffic.ksizes
    blocks = len(plan.kblocks)
    tiles_total = int(tiles.sum())
    bandwidth = arch.memory.dram_bandwidth_bytes_per_cycle

    if winograd:
        in_adds, out_adds = transform_adds_per_tile(work.winograd_m, work.layer.kernel)
        it_cycles = ceil_div(layer.in_channels * tiles, arch.input_transform.tiles_per_cycle_total).tolist() * blocks
        ot_cycles = ceil_div(np.outer(ksizes, tiles), arch.output_transform.tiles_per_cycle_total).ravel().tolist()
    else:
        in_adds = out_adds = 0
        it_cycles = ot_cycles = [0] * plan.passes

    timing = PassTiming(
        read_cycles=ceil_div(traffic.read_bytes, bandwidth).tolist(),
        input_transform_cycles=it_cycles,
        compute_cycles=compute.makespan_cycles.tolist(),
        output_transform_cycles=ot_cycles,
        write_cycles=ceil_div(traffic.write_bytes, bandwidth).tolist(),
        has_transforms=winograd,
    )
    if engine == "recurrence":
        timeline = solve_layer(timing)
    elif engine == "events":
        timeline = run_layer(simpy.Environment(), timing)
    else:
        raise ConfigError(f"simulate_layer: engine must be 'recurrence' or 'events', got {engine!r}")
    parts = attribute(timeline, int(compute.work_cycles.sum()), pe.pe_count, winograd)
    total = timeline.total_cycles

    algorithmic, actual, gated, skipped = multiply_counts(work, arch)
    transformed_tiles = blocks * tiles_total
    relu = method(work.method).relu_in_winograd and winograd
    stats = LayerStats(
        cycles=total,
        compute_cycles=parts.compute_cycles,
        imbalance_idle_cycles=parts.imbalance_idle_cycles,
        transform_stall_cycles=parts.transform_stall_cycles,
        dram_stall_cycles=parts.dram_stall_cycles,
        passes=plan.passes,
        multiplier_cycles=pe.pe_count * pe.multipliers_per_pe * total,
        pe_array_busy_cycles=timeline.pe_array.busy_cycles,
        pe_array_stall_cycles=timeline.pe_array.stall_cycles(total),
        input_transform_busy_cycles=timeline.input_transform.busy_cycles,
        input_transform_stall_cycles=timeline.input_transform.stall_cycles(total),
        output_transform_busy_cycles=timeline.output_transform.busy_cycles,
        output_transform_stall_cycles=timeline.output_transform.stall_cycles(total),
        dram_channel_busy_cycles=timeline.dram_busy_cycles,
        dram_channel_stall_cycles=timeline.dram_idle_cycles,
        multiplies_algorithmic=algorithmic,
        multiplies_actual=actual,
        multiplies_gated=gated,
        multiplies_skipped=skipped,
        accumulation_adds=actual,
        input_transform_adds=in_adds * layer.in_channels * transformed_tiles,
        output_transform_adds=out_adds * layer.out_channels * tiles_total,
        relu_compares=work.positions * layer.in_channels * transformed_tiles if relu else 0,
        dram_weight_read_bytes=traffic.dram_weight_read_bytes,
        dram_input_read_bytes=traffic.dram_input_read_bytes,
        dram_output_write_bytes=traffic.dram_output_write_bytes,
        dram_metadata_bytes=traffic.dram_metadata_bytes,
        buffer_fill_bytes=traffic.dram_weight_read_bytes + traffic.dram_input_read_bytes,
        buffer_weight_read_bytes=traffic.buffer_weight_read_bytes,
        buffer_input_read_bytes=traffic.buffer_input_read_bytes,
        buffer_output_bytes=2 * traffic.dram_output_write_bytes,
        rf_access_bytes=2 * wb * actual,
        accumulator_access_bytes=2 * (ACCUMULATOR_BITS // 8) * actual,
    )
    return LayerResult(
        layer=layer.name,
        layer_index=work.layer_index,
        method=work.method,
        variant=work.variant,
        domain=work.domain,
        images=work.images,
        stats=stats,
        energy=energy_breakdown(stats, arch, table),
        count=count_operands(work),
    )


def simulate(
    trace: Trace,
    arch: Arch,
    methods: tuple[str, ...] | list[str] | None = None,
    *,
    workload: Workload | None = None,
    progress: Progress | None = None,
    engine: Engine = "events",
) -> SimResult:
    """Simulate every layer of `trace` under each available method (or only `methods`) on `arch`.

    Pass a `workload` from `winosim.workload.lower(trace)` to reuse the mask-derived work across design
    points. `progress(done, total)` is called after each (layer, method, variant). `engine` selects the simpy
    event model ("events", default) or its exact recurrences ("recurrence", for sweeps); results are identical.
    """
    if engine not in ENGINES:
        raise ConfigError(f"simulate: engine must be one of {ENGINES}, got {engine!r}")
    selected: tuple[str, ...] | None = tuple(methods) if methods is not None else None
    if selected is not None:
        check_methods(selected)
        sources = available(trace)
        missing = [m for m in selected if not sources[m]]
        if missing:
            raise ConfigError(f"the trace has no variant for method(s) {', '.join(missing)}")
    if workload is None:
        workload = lower(trace, selected)
    elif workload.network != trace.network or workload.images != trace.images:
        raise ConfigError("simulate: the workload was not lowered from this trace")
    works = workload.select(selected)
    if selected is not None:
        lowered = {w.method for w in works}
        absent = [m for m in selected if m not in lowered]
        if absent:
            raise ConfigError(f"simulate: the workload was lowered without method(s) {', '.join(absent)}")
    table = energy_table(arch.energy_table)
    rows: list[LayerResult] = []
    for done, work in enumerate(works, start=1):
        rows.append(simulate_layer(work, arch, table, engine=engine))
        if progress is not None:
            progress(done, len(works))
    logger.debug("simulated %d layer-method rows of %s on %s", len(rows), trace.network, arch.name)
    return SimResult(network=trace.network, arch=arch, energy_table=table.name, rows=tuple(rows))
