"""`simulate(trace, arch)`: run every layer of a trace under every method on one architecture.

For each layer and (method, variant) of the trace's workload (`winosim.workload.lower`, computed once and
reusable across design points), the layer is tiled into passes (`winosim.sim.plan`), the PE array's time
per pass is computed from the per-unit work (`winosim.sim.pe_array`), the passes run through the
discrete-event pipeline in a fresh simpy Environment (`winosim.sim.pipeline`), and the counts are priced
with the architecture's energy table (`winosim.cost`). Layers run one after another: a layer starts when
the previous one has written its last output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import simpy

from winosim.arch import Arch
from winosim.cost import ACCUMULATOR_BITS, energy_breakdown
from winosim.counts import METHODS, available
from winosim.energy import EnergyTable, energy_table
from winosim.errors import ConfigError
from winosim.sim.pe_array import pass_compute, zero_handling
from winosim.sim.pipeline import PassTiming, attribute, run_layer
from winosim.sim.plan import (
    LayerPlan,
    input_columns,
    input_footprint,
    input_rows,
    output_columns,
    output_rows,
    plan_layer,
    weight_footprint,
)
from winosim.sim.results import LayerResult, LayerStats, SimResult
from winosim.trace import Trace
from winosim.winograd import transform_for
from winosim.workload import LayerWork, Workload, lower

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def _ceil_div(values: np.ndarray, divisor: int) -> np.ndarray:
    return -(-values // divisor)


def multiply_counts(work: LayerWork, arch: Arch) -> tuple[int, int, int, int]:
    """(algorithmic, actual, gated, skipped) multiplies of `work` under the array's zero handling."""
    weights_mode, acts_mode = zero_handling(work, arch.pe_array)
    pairs = work.pair_counts()
    algorithmic = pairs[(False, False)]
    issued = pairs[(weights_mode == "skip", acts_mode == "skip")]
    actual = pairs[(weights_mode != "none", acts_mode != "none")]
    return algorithmic, actual, issued - actual, algorithmic - issued


def simulate_layer(work: LayerWork, arch: Arch, table: EnergyTable) -> LayerResult:
    """Simulate one layer under one method on `arch`."""
    plan: LayerPlan = plan_layer(work, arch)
    pe, mem = arch.pe_array, arch.memory
    width, wb = arch.data_width_bits, arch.data_width_bytes
    layer = work.layer
    winograd = work.domain == "winograd"

    compute = pass_compute(work, plan, pe)
    ksizes = np.array([k1 - k0 for k0, k1 in plan.kblocks], dtype=np.int64)
    blocks, groups = len(plan.kblocks), len(plan.groups)

    weight_fps = [weight_footprint(work, plan.weight_format, width, k0, k1) for k0, k1 in plan.kblocks]
    weight_bytes = np.array([fp.bytes for fp in weight_fps], dtype=np.int64)
    weight_meta = np.array([fp.metadata_bytes for fp in weight_fps], dtype=np.int64)
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
    bandwidth = mem.dram_bandwidth_bytes_per_cycle

    if winograd:
        transform = transform_for(work.winograd_m, layer.kernel)
        in_adds, out_adds = transform.input_cost().adds, transform.output_cost().adds
        it_cycles = np.broadcast_to(
            _ceil_div(layer.in_channels * tiles, arch.input_transform.tiles_per_cycle_total), (blocks, groups)
        )
        ot_cycles = _ceil_div(ksizes[:, None] * tiles[None, :], arch.output_transform.tiles_per_cycle_total)
    else:
        in_adds = out_adds = 0
        it_cycles = ot_cycles = np.zeros((blocks, groups), dtype=np.int64)

    timing = PassTiming(
        read_cycles=_ceil_div(read_weight + read_input, bandwidth).ravel().tolist(),
        input_transform_cycles=np.ascontiguousarray(it_cycles).ravel().tolist(),
        compute_cycles=compute.makespan_cycles.tolist(),
        output_transform_cycles=np.ascontiguousarray(ot_cycles).ravel().tolist(),
        write_cycles=_ceil_div(write, bandwidth).ravel().tolist(),
        has_transforms=winograd,
    )
    env = simpy.Environment()
    timeline = run_layer(env, timing)
    parts = attribute(timeline, int(compute.work_cycles.sum()), pe.pe_count, winograd)
    total = timeline.total_cycles

    weight_rereads = int(_ceil_div(tiles, plan.chunk_columns).sum())  # weights read once per chunk of a pass
    algorithmic, actual, gated, skipped = multiply_counts(work, arch)
    transformed_tiles = blocks * int(tiles.sum())
    relu = work.method == "winograd_relu" and winograd
    if winograd:
        buffer_input = blocks * work.positions * layer.in_channels * int(tiles.sum()) * wb
    else:
        buffer_input = blocks * int(input_bytes.sum())
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
        output_transform_adds=out_adds * layer.out_channels * int(tiles.sum()),
        relu_compares=work.positions * layer.in_channels * transformed_tiles if relu else 0,
        dram_weight_read_bytes=int(read_weight.sum()),
        dram_input_read_bytes=int(read_input.sum()),
        dram_output_write_bytes=int(write.sum()),
        dram_metadata_bytes=int(read_meta.sum()),
        buffer_fill_bytes=int(read_weight.sum() + read_input.sum()),
        buffer_weight_read_bytes=int(weight_bytes.sum()) * weight_rereads,
        buffer_input_read_bytes=buffer_input,
        buffer_output_bytes=2 * int(write.sum()),
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
    )


def simulate(
    trace: Trace,
    arch: Arch,
    methods: tuple[str, ...] | list[str] | None = None,
    *,
    workload: Workload | None = None,
    progress: Progress | None = None,
) -> SimResult:
    """Simulate every layer of `trace` under each available method (or only `methods`) on `arch`.

    Pass a `workload` from `winosim.workload.lower(trace)` to reuse the mask-derived work across design
    points. `progress(done, total)` is called after each (layer, method, variant).
    """
    selected: tuple[str, ...] | None = tuple(methods) if methods is not None else None
    if selected is not None:
        unknown = [m for m in selected if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
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
        rows.append(simulate_layer(work, arch, table))
        if progress is not None:
            progress(done, len(works))
    logger.debug("simulated %d layer-method rows of %s on %s", len(rows), trace.network, arch.name)
    return SimResult(network=trace.network, arch=arch, energy_table=table.name, rows=tuple(rows))
