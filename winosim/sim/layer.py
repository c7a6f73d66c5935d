"""One layer on the machine: plan -> traffic -> PE array -> pipeline -> stats, and the stats' energy.

`simulate_layer` runs one layer's `LayerWork` (one method, one variant) on an architecture:

1. the plan cuts the layer into passes through the global buffer (`winosim.sim.plan`);
2. the traffic is what each pass moves through DRAM and the buffer (`winosim.sim.traffic`);
3. the PE array gives each pass's makespan from the per-unit work (`winosim.sim.pe_array`), the transform
   units their time per pass (`winosim.sim.transforms`);
4. the passes flow through the pipeline of loader, transform units, PE array and writer sharing one DRAM
   channel (`winosim.sim.pipeline`): the simpy event model (`engine="events"`) or its exact recurrences
   (`engine="recurrence"`, identical results, several times faster);
5. the layer's `LayerStats` gathers what each block reports of itself (the pipeline's cycles and their
   attribution, the array's multiplies and accesses, the transforms' adds, the traffic's bytes), and the
   energy prices them (`winosim.sim.cost`).

What does not depend on the whole design point (plan, traffic, units, makespans) is kept in the work's memo
under the keys of the stages that compute it (`winosim.memo`).
"""

from __future__ import annotations

from typing import Literal

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
from winosim.sim.results import LayerResult, LayerStats
from winosim.sim.traffic import layer_traffic
from winosim.sim.transforms import transform_cycles, transform_stats
from winosim.workload import LayerWork

Engine = Literal["events", "recurrence"]
ENGINES: tuple[str, ...] = ("events", "recurrence")
"""Timing engines: the simpy event model, or the exact recurrences of the same model."""

COUNT = Stage("count", reads=())
"""The layer's exact counts (`winosim.counts`): they read nothing of the architecture."""

TIMELINE = Stage("timeline", reads=())
"""What the pipeline reports of itself (`pipeline.timeline_stats`): a function of the passes' service times
alone (the key's inputs), so design points that differ only in what does not change them (the PE count or
assignment when the passes take as long, energy, clock, register files) share it."""


def simulate_layer(
    work: LayerWork, arch: Arch, table: EnergyTable | Prices, *, engine: Engine = "events"
) -> LayerResult:
    """Simulate one layer under one method on `arch` and price it with `table` (see the module docstring);
    a network loop passes the table's `Prices` for `arch`, computed once."""
    if engine not in ENGINES:
        raise ConfigError(f"simulate_layer: engine must be one of {ENGINES}, got {engine!r}")
    plan_key = PLAN.key(arch)
    plan = plan_layer(work, arch, plan_key)
    traffic = layer_traffic(work, plan, plan_key, arch)
    compute = pass_compute(work, plan, arch)
    input_cycles, output_cycles = transform_cycles(work, traffic, arch)
    bandwidth = arch.memory.dram_bandwidth_bytes_per_cycle
    timing = PassTiming(
        read_cycles=traffic.read_cycles(bandwidth),
        input_transform_cycles=input_cycles,
        compute_cycles=compute.makespan_cycles.tolist(),
        output_transform_cycles=output_cycles,
        write_cycles=traffic.write_cycles(bandwidth),
        has_transforms=work.domain == "winograd",
    )

    def run() -> dict[str, int]:
        timeline = solve_layer(timing) if engine == "recurrence" else run_layer(simpy.Environment(), timing)
        return timeline_stats(timeline, timing.has_transforms)

    cycles = tuple(tuple(service) for service in timing.service_cycles())
    timeline = work.memo.get(TIMELINE.key(arch, engine, *cycles), run)
    pipeline = pipeline_stats(timeline, int(compute.work_cycles.sum()), arch.pe_array.pe_count)
    stats = LayerStats(
        **pipeline,
        passes=plan.passes,
        **pe_array_stats(work, arch, pipeline["cycles"]),
        **transform_stats(work, traffic),
        **traffic.stats(),
    )
    count = work.memo.get(COUNT.key(arch), lambda: count_operands(work))
    prices = table if isinstance(table, Prices) else Prices.of(arch, table)
    return LayerResult(count=count, stats=stats, energy=prices.energy(stats))
