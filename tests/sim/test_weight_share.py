"""`memory.weight_buffer_share: pe_fill`: a k-block may take more than half of the global buffer so that every
PE gets an output channel (the ZigZag comparison, analyses/out/validation-zigzag.md, found 56 channels for
64 PEs in ResNet-18's layer4 with `half`). The plan must still fit the buffer, the units of work must not
change (they do not depend on the PE count), and the event model must agree with the per-cycle reference."""

from __future__ import annotations

import pytest
from sim_helpers import small_arch
from sim_reference import simulate_layer_reference

from winosim.archio import apply_overrides
from winosim.energy import energy_table
from winosim.errors import ConfigError
from winosim.sim.layer import simulate_layer
from winosim.sim.plan import PLAN, _pass_bytes, _sizing, plan_layer
from winosim.sim.traffic import layer_traffic
from winosim.trace import Trace
from winosim.workload import lower


@pytest.mark.parametrize(("pe_count", "buffer_bytes"), [(4, 2048), (8, 2048), (8, 3072), (8, 4096)])
def test_pe_fill_gives_every_pe_a_channel(tiny_trace: Trace, pe_count: int, buffer_bytes: int) -> None:
    half = apply_overrides(
        small_arch(pe_count=pe_count),
        {"memory.global_buffer_bytes": buffer_bytes, "memory.weight_buffer_share": "half"},
    )
    fill = apply_overrides(half, {"memory.weight_buffer_share": "pe_fill"})
    table = energy_table(fill.energy_table)
    changed = 0
    for work in lower(tiny_trace).works:
        try:
            before, after = plan_layer(work, half), plan_layer(work, fill)
        except ConfigError:  # a layer this buffer cannot tile
            continue
        assert after.groups == before.groups  # the units of work do not change
        if after.kblocks == before.kblocks:
            continue
        changed += 1
        assert max(e - s for s, e in after.kblocks) == min(work.out_channels, pe_count)
        assert max(e - s for s, e in after.kblocks) > max(e - s for s, e in before.kblocks)
        traffic = layer_traffic(work, after, PLAN.key(fill), fill)
        weights = traffic.read_weight_bytes.reshape(len(after.kblocks), -1)[:, 0].max()
        sizing = _sizing(work, fill)  # by the plan's own sizing of a pass (worst case, first row group)
        kb = max(e - s for s, e in after.kblocks)
        assert weights + _pass_bytes(work, fill, sizing, kb, after.group_rows, after.group_segments) <= buffer_bytes
        layer_index = [layer.name for layer in tiny_trace.layers].index(work.layer.name)
        stats = simulate_layer(work, fill, table).stats
        ref = simulate_layer_reference(tiny_trace, layer_index, work.method, work.variant, fill)
        assert (stats.cycles, stats.dram_stall_cycles) == (ref.total_cycles, ref.dram_stall_cycles)
        assert stats.pe_array_busy_cycles == ref.busy["pe_array"]
    assert changed > 0
