"""`simulate(trace, arch)`: the network loop, every layer of a trace under every method on one architecture.

For each layer and (method, variant) of the trace's workload (`winosim.workload.lower`, computed once and
reusable across design points), `winosim.sim.layer.simulate_layer` runs the layer on the machine (plan,
traffic, PE array, pipeline, stats; see `winosim.sim`) and prices it with the architecture's energy table.
Layers run one after another: a layer starts when the previous one has written its last output, so the
network's cycles are the sum of its layers'.

`engine` selects the pipeline's evaluation: the simpy event model (`"events"`, the default) or its exact
recurrences (`"recurrence"`, identical results to the cycle, as tests/sim/test_golden_results.py checks,
several times faster; sweeps use it). A sweep that passes one `workload` to every point reuses what each
layer's memo holds (`winosim.memo`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from winosim.arch import Arch
from winosim.energy import energy_table
from winosim.errors import ConfigError
from winosim.methods import available, check_methods
from winosim.sim.cost import Prices
from winosim.sim.layer import ENGINES, Engine, simulate_layer
from winosim.sim.results import LayerResult, SimResult
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
    works: Iterable[LayerWork]
    if workload is None:
        items = tuple(work_items(trace, selected))
        total = len(items)
        works = (lower_layer(trace, index, name, variant) for index, name, variant in items)
    else:
        if workload.network != trace.network or workload.images != trace.images:
            raise ConfigError("simulate: the workload was not lowered from this trace")
        works = workload.select(selected)
        total = len(works)
        if selected is not None:
            lowered = {w.method for w in works}
            absent = [m for m in selected if m not in lowered]
            if absent:
                raise ConfigError(f"simulate: the workload was lowered without method(s) {', '.join(absent)}")
    table = energy_table(arch.energy_table)
    prices = Prices.of(arch, table)
    rows: list[LayerResult] = []
    for done, work in enumerate(works, start=1):
        rows.append(simulate_layer(work, arch, prices, engine=engine))
        if progress is not None:
            progress(done, total)
    logger.debug("simulated %d layer-method rows of %s on %s", len(rows), trace.network, arch.name)
    return SimResult(network=trace.network, arch=arch, energy_table=table.name, rows=tuple(rows))
