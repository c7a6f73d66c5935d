"""`simulate(trace, arch)`: the network loop, every layer of a trace under every method on one architecture.

For each layer and (method, variant) of the trace's workload (`winosim.workload.lower`, computed once and
reusable across design points), `winosim.sim.layer.simulate_layer` runs the layer on the machine (plan,
traffic, PE array, pipeline, stats; see `winosim.sim`) and prices it with the architecture's energy table.
Layers run one after another: a layer starts when the previous one has written its last output, so the
network's cycles are the sum of its layers'. Between layers, `winosim.sim.residency` decides per method
what stays in the global buffer (activations, with `memory.activation_residency: buffer`), the order of the
batch (`memory.batch_order`) and how much of a layer's first weights the previous layer's idle DRAM
cycles prefetch (`memory.weight_prefetch`).

`engine` selects the pipeline's evaluation: the simpy event model (`"events"`, the default) or its exact
recurrences (`"recurrence"`, identical results to the cycle, as tests/sim/test_golden_results.py checks,
several times faster; sweeps use it). A sweep that passes one `workload` to every point reuses what each
layer's memo holds (`winosim.memo`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from winosim.arch import Arch
from winosim.energy import energy_table
from winosim.errors import ConfigError
from winosim.methods import available, check_methods
from winosim.sim.cost import Prices
from winosim.sim.layer import ENGINES, Engine, simulate_layer
from winosim.sim.plan import PLAN, plan_layer
from winosim.sim.residency import LayerFootprint, LayerMemory, layer_footprint, network_memory
from winosim.sim.results import LayerResult, SimResult
from winosim.sim.traffic import layer_traffic
from winosim.trace import Trace
from winosim.workload import LayerWork, Workload, lower_layer, work_items

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


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

    Without a `workload`, layers are lowered one at a time and released once simulated (memory follows
    one layer, not the network). Pass a `workload` from `winosim.workload.lower(trace)` to reuse the
    mask-derived work across design points. `progress(done, total)` is called after each (layer, method,
    variant). `engine` selects the simpy event model ("events", default) or its exact recurrences
    ("recurrence", for sweeps); results are identical.
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
    # Each method's network runs layer after layer (the buffer is shared across layer boundaries), so the
    # rows are grouped by (method, variant); without a workload, one group is lowered at a time.
    lowered: Callable[[int], LayerWork]
    outline: Callable[[int], LayerWork]
    sequences: dict[tuple[str, str | None], list[int]] = {}
    if workload is None:
        items = tuple(work_items(trace, selected))
        for index, (_, name, variant) in enumerate(items):
            sequences.setdefault((name, None if variant is None else variant.name), []).append(index)

        def lowered(index: int) -> LayerWork:
            return lower_layer(trace, *items[index])

        def outline(index: int) -> LayerWork:  # enough for the footprint, without the PE array's counts
            return lower_layer(trace, *items[index], segments=False)

        total = len(items)
    else:
        if workload.network != trace.network or workload.images != trace.images:
            raise ConfigError("simulate: the workload was not lowered from this trace")
        works = workload.select(selected)
        if selected is not None:
            present = {w.method for w in works}
            absent = [m for m in selected if m not in present]
            if absent:
                raise ConfigError(f"simulate: the workload was lowered without method(s) {', '.join(absent)}")
        for index, work in enumerate(works):
            sequences.setdefault((work.method, work.variant), []).append(index)
        lowered = outline = works.__getitem__
        total = len(works)
    table = energy_table(arch.energy_table)
    prices = Prices.of(arch, table)
    results: dict[int, LayerResult] = {}
    done = 0
    for indices in sequences.values():  # each method's network, layer after layer
        # two passes when streaming: the layers' small footprints first (the buffer's decisions need the
        # whole network; a lowering without the PE array's counts), then each layer lowered and simulated,
        # so memory stays flat in the layers
        memories = network_memory([_footprint(outline(i), arch) for i in indices], arch)
        previous: LayerResult | None = None
        for memory, index in zip(memories, indices, strict=True):
            work = lowered(index)
            prefetched = _prefetched_bytes(work, arch, memory, previous)
            previous = simulate_layer(work, arch, prices, engine=engine, memory=memory, prefetched_bytes=prefetched)
            results[index] = previous
            done += 1
            if progress is not None:
                progress(done, total)
    rows = [results[i] for i in range(total)]
    logger.debug("simulated %d layer-method rows of %s on %s", len(rows), trace.network, arch.name)
    return SimResult(network=trace.network, arch=arch, energy_table=table.name, rows=tuple(rows))


def _footprint(work: LayerWork, arch: Arch) -> LayerFootprint:
    """What the network's buffer decisions need of one layer (`winosim.sim.residency.LayerFootprint`)."""
    key = PLAN.key(arch)
    plan = plan_layer(work, arch, key)
    return layer_footprint(work, plan, layer_traffic(work, plan, key, arch), arch)


def _prefetched_bytes(work: LayerWork, arch: Arch, memory: LayerMemory, previous: LayerResult | None) -> int:
    """Bytes of the layer's first weight fetches loaded during the previous layer: what the previous layer's
    idle DRAM channel cycles carry, at most the first k-block's weights per fetch (0 without room or
    prefetch)."""
    if previous is None or not memory.prefetch_room:
        return 0
    plan = plan_layer(work, arch)
    first = int(layer_traffic(work, plan, PLAN.key(arch), arch).read_weight_bytes[0])
    idle = previous.stats.dram_channel_stall_cycles * arch.memory.dram_bandwidth_bytes_per_cycle
    return min(idle, first * memory.weight_fetches)
