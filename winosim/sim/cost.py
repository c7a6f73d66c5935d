"""Costing: energy = the simulator's counts x an energy table, so re-costing never re-simulates.

For one layer's `LayerStats` on an `Arch` with data width b bits:

- multiplies: actual multiplies x int multiply(b); gated and skipped multiplies cost nothing (leakage and
  the gating logic are not modelled);
- adds: accumulation adds x int add(32) (partial sums are 32 bits wide) + transform adds and ReLU compares
  x int add(b);
- register files: operand bytes x SRAM energy per byte at the per-PE register file size;
- accumulators: accumulator bytes x SRAM energy per byte at the accumulator size (entries x 4 bytes);
- global buffer: every byte written into or read from it x SRAM energy per byte at its capacity;
- DRAM: bytes read and written x the table's DRAM energy per byte.
"""

from __future__ import annotations

import dataclasses

from winosim.arch import Arch
from winosim.energy import EnergyTable, energy_table
from winosim.sim.pe_array import ACCUMULATOR_BITS
from winosim.sim.results import EnergyBreakdown, LayerStats, SimResult


def energy_breakdown(stats: LayerStats, arch: Arch, table: EnergyTable) -> EnergyBreakdown:
    """Picojoules of each component for `stats` on `arch`, priced with `table`."""
    width = arch.data_width_bits
    return EnergyBreakdown(
        multiply_pj=stats.multiplies_actual * table.multiply_pj(width),
        add_pj=stats.accumulation_adds * table.add_pj(ACCUMULATOR_BITS)
        + (stats.input_transform_adds + stats.output_transform_adds + stats.relu_compares) * table.add_pj(width),
        register_file_pj=stats.rf_access_bytes * table.sram_pj_per_byte(arch.memory.register_file_bytes),
        accumulator_pj=stats.accumulator_access_bytes
        * table.sram_pj_per_byte(arch.pe_array.accumulator_entries * ACCUMULATOR_BITS // 8),
        buffer_pj=stats.buffer_bytes * table.sram_pj_per_byte(arch.memory.global_buffer_bytes),
        dram_pj=stats.dram_bytes * table.dram_pj_per_byte(),
    )


def recost(result: SimResult, table: EnergyTable | str) -> SimResult:
    """The same result priced with another energy table (no re-simulation)."""
    priced = energy_table(table) if isinstance(table, str) else table
    rows = tuple(
        dataclasses.replace(row, energy=energy_breakdown(row.stats, result.arch, priced)) for row in result.rows
    )
    return dataclasses.replace(result, rows=rows, energy_table=priced.name)
