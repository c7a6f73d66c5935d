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
from winosim.sim.cost import energy_breakdown
from winosim.sim.pe_array import pass_compute, pe_array_stats
from winosim.sim.pipeline import PassTiming, pipeline_stats, run_layer, solve_layer
from winosim.sim.plan import PLAN, plan_layer
from winosim.sim.results import LayerResult, LayerStats
from winosim.sim.traffic import layer_traffic
from winosim.sim.transforms import transform_cycles, transform_stats
from winosim.workload import LayerWork

Engine = Literal["events", "recurrence"]
ENGINES: tuple[str, ...] = ("events", "recurrence")
"""Timing engines: the simpy event model, or the exact recurrences of the same model."""

TIMING = Stage(
    "timing",
    reads=(
        "memory.dram_bandwidth_bytes_per_cycle",
        "input_transform.count",
        "input_transform.tiles_per_cycle",
        "output_transform.count",
        "output_transform.tiles_per_cycle",
    ),
)
"""What the pipeline's service times read of the architecture, besides the plan and the PE array's stages."""


def simulate_layer(work: LayerWork, arch: Arch, table: EnergyTable, *, engine: Engine = "events") -> LayerResult:
    """Simulate one layer under one method on `arch` and price it with `table` (see the module docstring)."""
    if engine not in ENGINES:
        raise ConfigError(f"simulate_layer: engine must be one of {ENGINES}, got {engine!r}")
    plan = plan_layer(work, arch)
    traffic = layer_traffic(work, plan, PLAN.key(arch), arch)
    compute = pass_compute(work, plan, arch)
    timing_arch = TIMING.view(arch)
    input_cycles, output_cycles = transform_cycles(work, traffic, timing_arch)
    bandwidth = timing_arch.memory.dram_bandwidth_bytes_per_cycle
    timing = PassTiming(
        read_cycles=traffic.read_cycles(bandwidth),
        input_transform_cycles=input_cycles,
        compute_cycles=compute.makespan_cycles.tolist(),
        output_transform_cycles=output_cycles,
        write_cycles=traffic.write_cycles(bandwidth),
        has_transforms=work.domain == "winograd",
    )
    timeline = solve_layer(timing) if engine == "recurrence" else run_layer(simpy.Environment(), timing)
    stats = LayerStats(
        **pipeline_stats(timeline, int(compute.work_cycles.sum()), arch.pe_array.pe_count, timing.has_transforms),
        passes=plan.passes,
        **pe_array_stats(work, arch, timeline.total_cycles),
        **transform_stats(work, traffic),
        **traffic.stats(),
    )
    return LayerResult(count=count_operands(work), stats=stats, energy=energy_breakdown(stats, arch, table))
