"""One layer on the machine: plan -> traffic -> PE array -> pipeline -> stats, and the stats' energy.

`simulate_layer` runs one layer's `LayerWork` (one method, one variant) on an architecture:

1. the plan cuts the layer into passes through the global buffer (`winosim.sim.plan`);
2. the traffic is what each pass moves through DRAM and the buffer (`winosim.sim.traffic`);
3. the PE array gives each pass's makespan from the per-unit work (`winosim.sim.pe_array`), the transform
   units their time per pass (`winosim.sim.transforms`);
4. the passes flow through the pipeline of loader, transform units, PE array and writer sharing one DRAM
   channel (`winosim.sim.pipeline`; each run's first and last pass go through it row by row,
   `winosim.sim.streaming`): the simpy event model (`engine="events"`) or its exact recurrences
   (`engine="recurrence"`, identical results, several times faster);
5. the layer's `LayerStats` gathers what each block reports of itself (the pipeline's cycles and their
   attribution, the array's multiplies and accesses, the transforms' adds, the traffic's bytes), and the
   energy prices them (`winosim.sim.cost`).

What does not depend on the whole design point (plan, traffic, units, makespans) is kept in the work's memo
under the keys of the stages that compute it (`winosim.memo`).
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import simpy

from winosim.arch import Arch
from winosim.counts import count_operands
from winosim.energy import EnergyTable
from winosim.errors import ConfigError
from winosim.memo import Stage
from winosim.sim.cost import Prices
from winosim.sim.pe_array import pass_compute, pe_array_stats
from winosim.sim.pipeline import PassTiming, pipeline_stats, run_layer, solve_layer, timeline_stats
from winosim.sim.plan import PLAN, plan_layer
from winosim.sim.residency import LayerMemory, PassBytes, pass_bytes
from winosim.sim.results import LayerResult, LayerStats
from winosim.sim.streaming import run_timing
from winosim.sim.traffic import Traffic, layer_traffic
from winosim.sim.transforms import transform_cycles, transform_stats
from winosim.workload import LayerWork

Engine = Literal["events", "recurrence"]
ENGINES: tuple[str, ...] = ("events", "recurrence")
"""Timing engines: the simpy event model, or the exact recurrences of the same model."""

COUNT = Stage("count", reads=())
"""The layer's exact counts (`winosim.counts`): they read nothing of the architecture."""

TIMELINE = Stage("timeline", reads=())
"""What the pipeline reports of itself (`pipeline.timeline_stats`): a function of the passes' service times
and room alone (the key's inputs), so design points that differ only in what does not change them (the PE count or
assignment when the passes take as long, energy, clock, register files) share it."""


def simulate_layer(
    work: LayerWork,
    arch: Arch,
    table: EnergyTable | Prices,
    *,
    engine: Engine = "events",
    memory: LayerMemory | None = None,
    prefetched_bytes: int = 0,
) -> LayerResult:
    """Simulate one layer under one method on `arch` and price it with `table` (see the module docstring);
    a network loop passes the table's `Prices` for `arch`, computed once.

    `memory` is what the network decided for this layer (`winosim.sim.residency.network_memory`: inputs
    and outputs kept in the buffer, image order, weight fetches); without it the layer runs alone, every
    byte through DRAM. `prefetched_bytes` of its first weights were loaded during the previous layer."""
    if engine not in ENGINES:
        raise ConfigError(f"simulate_layer: engine must be one of {ENGINES}, got {engine!r}")
    plan_key = PLAN.key(arch)
    plan = plan_layer(work, arch, plan_key)
    traffic = layer_traffic(work, plan, plan_key, arch)
    compute = pass_compute(work, plan, arch)
    input_cycles, output_cycles = transform_cycles(work, traffic, arch)
    memory = memory if memory is not None else LayerMemory.alone(work.images)
    moved = pass_bytes(plan, traffic, memory, prefetched_bytes)
    makespans = compute.makespan_cycles[moved.order]
    input_transform = np.asarray(input_cycles, dtype=np.int64)[moved.order]
    output_transform = np.asarray(output_cycles, dtype=np.int64)[moved.order]

    def run(timing: PassTiming) -> dict[str, int]:
        timeline = solve_layer(timing) if engine == "recurrence" else run_layer(simpy.Environment(), timing)
        return timeline_stats(timeline, timing.has_transforms)

    timeline: dict[str, int] = {}
    for span in moved.runs:
        timing = run_timing(work, plan, moved, span, arch, makespans, input_transform, output_transform)
        cycles = tuple(tuple(service) for service in timing.service_cycles())
        room = (tuple(timing.units()), timing.pass_units)
        part = work.memo.get(TIMELINE.key(arch, engine, *cycles, *room), functools.partial(run, timing))
        timeline = {name: timeline.get(name, 0) + value for name, value in part.items()}
    pipeline = pipeline_stats(timeline, int(compute.work_cycles.sum()), arch.pe_array.pe_count)
    stats = LayerStats(
        **pipeline,
        passes=plan.passes,
        **pe_array_stats(work, arch, pipeline["cycles"]),
        **transform_stats(work, traffic),
        **_memory_stats(traffic, moved, memory, prefetched_bytes),
    )
    count = work.memo.get(COUNT.key(arch), lambda: count_operands(work))
    prices = table if isinstance(table, Prices) else Prices.of(arch, table)
    return LayerResult(count=count, stats=stats, energy=prices.energy(stats))


def _memory_stats(traffic: Traffic, moved: PassBytes, memory: LayerMemory, prefetched: int) -> dict[str, int]:
    """The layer's DRAM and buffer accesses, as `LayerStats` fields: the traffic of its passes with what the
    network keeps in the buffer taken out of DRAM (metadata pro rata of the DRAM reads)."""
    weight = int(moved.read_weight_bytes.sum()) + prefetched
    inputs = int(moved.read_input_bytes.sum())
    writes = int(moved.write_bytes.sum())
    kept_output = int(moved.kept_output_bytes.sum())
    planned_reads = int(traffic.read_bytes.sum())
    metadata = traffic.dram_metadata_bytes * (weight + inputs) // planned_reads if planned_reads else 0
    return {
        **traffic.stats(),
        "dram_weight_read_bytes": weight,
        "dram_input_read_bytes": inputs,
        "dram_output_write_bytes": writes,
        "dram_metadata_bytes": metadata,
        "buffer_fill_bytes": weight + inputs,
        "buffer_output_bytes": 2 * writes + kept_output,  # written once; drained to DRAM or kept
        "buffer_kept_input_bytes": int(moved.kept_input_bytes.sum()),
        "buffer_kept_output_bytes": kept_output,
        "dram_spill_write_bytes": writes if memory.spills else 0,
        "dram_prefetch_weight_bytes": prefetched,
    }
