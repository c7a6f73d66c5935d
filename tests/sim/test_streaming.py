"""A run's first and last pass go through the pipeline row by row (`winosim.sim.streaming`).

Invariants: a streamed pass has one item per row, its rows move exactly its bytes and take its makespan and,
together, the room of one whole pass; the passes in between are single items. Closed form: a compute-bound layer of one
pass shows only its first row's reads and its last row's writes on top of its compute. The per-cycle
reference (tests/sim/test_sim_reference.py) checks the timing of the items against its own streaming.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from sim_helpers import small_arch

from winosim.archio import apply_overrides
from winosim.energy import energy_table
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.integers import ceil_div
from winosim.sim.layer import simulate_layer
from winosim.sim.pe_array import pass_compute
from winosim.sim.plan import PLAN, plan_layer
from winosim.sim.residency import LayerMemory, pass_bytes
from winosim.sim.streaming import pass_row_span, proportional_steps, row_bytes, run_timing
from winosim.sim.traffic import layer_traffic
from winosim.sim.transforms import transform_cycles
from winosim.synthetic import synthetic_trace
from winosim.trace import Trace
from winosim.workload import LayerWork, lower


def test_steps_add_up_to_the_whole() -> None:
    assert proportional_steps(10, [1, 2, 3]) == [3, 3, 4]
    assert sum(proportional_steps(1001, [2, 3, 5, 9, 9, 12])) == 1001
    assert proportional_steps(0, [1, 2]) == [0, 0]


def _timing(work: LayerWork, arch_fields: Mapping[str, object]) -> tuple[Any, ...]:
    arch = apply_overrides(small_arch(), arch_fields)
    plan = plan_layer(work, arch)
    traffic = layer_traffic(work, plan, PLAN.key(arch), arch)
    compute = pass_compute(work, plan, arch)
    its, ots = transform_cycles(work, traffic, arch)
    moved = pass_bytes(plan, traffic, LayerMemory.alone(work.images))
    bandwidth = arch.memory.dram_bandwidth_bytes_per_cycle
    makespans = compute.makespan_cycles[moved.order]
    it_a = np.asarray(its, dtype=np.int64)[moved.order]
    ot_a = np.asarray(ots, dtype=np.int64)[moved.order]
    timings = [run_timing(work, plan, moved, span, arch, makespans, it_a, ot_a) for span in moved.runs]
    return arch, plan, moved, bandwidth, makespans, it_a, ot_a, timings


SMALL_SLOW = {"memory.global_buffer_bytes": 3072, "memory.dram_bandwidth_bytes_per_cycle": 1}


@pytest.mark.parametrize("fields", [{}, SMALL_SLOW], ids=["small", "small-buffer-slow-dram"])
def test_items_add_up_to_their_passes(tiny_trace: Trace, fields: dict[str, object]) -> None:
    """Streamed rows move exactly their pass's bytes (each row a transfer of its own: ceil per row), take
    the pass's makespan, and together the room of one pass; passes in between are single items."""
    streamed_passes = 0
    for work in lower(tiny_trace).works:
        _, plan, moved, bandwidth, makespans, _, _, timings = _timing(work, fields)
        (timing,) = timings
        first, end = moved.runs[0]
        spans = {p: pass_row_span(work, plan, int(moved.order[p])) for p in (first, end - 1)}
        streamed = {p: r1 - r0 for p, (r0, r1) in spans.items() if r1 - r0 > 1}
        assert len(timing.compute_cycles) == plan.passes + sum(r - 1 for r in streamed.values())
        assert sum(timing.compute_cycles) == int(makespans.sum())
        assert sum(timing.units()) == plan.passes * timing.pass_units
        streamed_passes += len(streamed)
        item = 0
        for p in range(first, end):
            weight, inputs = int(moved.read_weight_bytes[p]), int(moved.read_input_bytes[p])
            writes = int(moved.write_bytes[p])
            rows = streamed.get(p, 1)
            reads = list(timing.read_cycles[item : item + rows])
            written = list(timing.write_cycles[item : item + rows])
            if rows == 1:
                assert (reads, written) == ([ceil_div(weight + inputs, bandwidth)], [ceil_div(writes, bandwidth)])
            else:
                moves = row_bytes(work, spans[p], weight, inputs, writes, inputs_by_row=p == first)
                assert sum(moves.read_bytes) == weight + inputs and sum(moves.write_bytes) == writes
                assert moves.read_bytes[0] >= weight
                assert reads == [ceil_div(b, bandwidth) for b in moves.read_bytes]
                assert written == [ceil_div(b, bandwidth) for b in moves.write_bytes]
            item += rows
        assert item == len(timing.compute_cycles)
    assert streamed_passes  # the tiny network has streamed passes (else this test would check nothing)


def test_a_compute_bound_single_pass_exposes_one_row_at_each_end() -> None:
    geometry = NetworkGeometry("one", 2, 2, 10, (LayerGeometry("conv", "spatial", "conv", 8, 32, 12, 12, 3, 1, 1),))
    trace = synthetic_trace(geometry, images=1, seed=2)
    (work,) = [w for w in lower(trace).works if w.method == "dense_spatial"]
    fields = {"memory.global_buffer_bytes": 1 << 20, "memory.dram_bandwidth_bytes_per_cycle": 16}
    arch, plan, _, _, _, _, _, (timing,) = _timing(work, fields)
    assert plan.passes == 1 and len(timing.compute_cycles) == 12  # one pass, streamed as its 12 rows
    reads, computes, writes = timing.read_cycles, timing.compute_cycles, timing.write_cycles
    # compute-bound: every later row's reads hide under the row before, every row's writes under the next
    assert all(r <= c for r, c in zip(reads[1:], computes, strict=False))
    assert all(w <= c for w, c in zip(writes, computes[1:], strict=False))
    stats = simulate_layer(work, arch, energy_table(arch.energy_table)).stats
    assert stats.cycles == reads[0] + sum(computes) + writes[-1]
    whole = sum(reads) + sum(computes) + sum(writes)  # a whole pass: read, then computed, then written
    assert stats.cycles < whole


def test_an_outline_lowering_gives_the_same_footprint_and_refuses_the_pe_array(tiny_trace: Trace) -> None:
    """`simulate` decides the buffer from every layer's footprint before it runs the first; it takes them
    from a lowering without the activation counts (`segments=False`), which must size the layer exactly as
    the full one and cannot be simulated or counted by mistake."""
    from winosim.simulate import _footprint
    from winosim.workload import lower_layer, work_items

    arch = small_arch()
    outlined = 0
    for index, name, variant in work_items(tiny_trace):
        full = lower_layer(tiny_trace, index, name, variant)
        outline = lower_layer(tiny_trace, index, name, variant, segments=False)
        a, b = _footprint(outline, arch), _footprint(full, arch)
        assert (a.name, a.pass_io_bytes, a.reserves_input) == (b.name, b.pass_io_bytes, b.reserves_input)
        assert np.array_equal(a.input_bytes, b.input_bytes) and np.array_equal(a.weight_bytes, b.weight_bytes)
        if not full.dense:
            outlined += 1
            with pytest.raises(ValueError, match="lowered without"):
                simulate_layer(outline, arch, energy_table(arch.energy_table))
            with pytest.raises(ValueError, match="lowered without"):
                outline.pair_counts()
    assert outlined
