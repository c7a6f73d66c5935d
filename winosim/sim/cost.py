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
from dataclasses import dataclass

from winosim.arch import Arch
from winosim.energy import EnergyTable, energy_table
from winosim.sim.pe_array import ACCUMULATOR_BITS
from winosim.sim.results import EnergyBreakdown, LayerStats, SimResult


@dataclass(frozen=True)
class Prices:
    """An energy table's prices for one architecture: picojoules per operation and per byte of each level
    (computed once per design point, then applied to every layer's counts)."""

    multiply_pj: float
    accumulate_pj: float
    add_pj: float
    register_file_pj_per_byte: float
    accumulator_pj_per_byte: float
    buffer_pj_per_byte: float
    dram_pj_per_byte: float

    @classmethod
    def of(cls, arch: Arch, table: EnergyTable) -> Prices:
        width = arch.data_width_bits
        return cls(
            multiply_pj=table.multiply_pj(width),
            accumulate_pj=table.add_pj(ACCUMULATOR_BITS),
            add_pj=table.add_pj(width),
            register_file_pj_per_byte=table.sram_pj_per_byte(arch.memory.register_file_bytes),
            accumulator_pj_per_byte=table.sram_pj_per_byte(arch.pe_array.accumulator_entries * ACCUMULATOR_BITS // 8),
            buffer_pj_per_byte=table.sram_pj_per_byte(arch.memory.global_buffer_bytes),
            dram_pj_per_byte=table.dram_pj_per_byte(),
        )

    def energy(self, stats: LayerStats) -> EnergyBreakdown:
        """Picojoules of each component for `stats`."""
        return EnergyBreakdown(
            multiply_pj=stats.multiplies_actual * self.multiply_pj,
            add_pj=stats.accumulation_adds * self.accumulate_pj
            + (stats.input_transform_adds + stats.output_transform_adds + stats.relu_compares) * self.add_pj,
            register_file_pj=stats.rf_access_bytes * self.register_file_pj_per_byte,
            accumulator_pj=stats.accumulator_access_bytes * self.accumulator_pj_per_byte,
            buffer_pj=stats.buffer_bytes * self.buffer_pj_per_byte,
            dram_pj=stats.dram_bytes * self.dram_pj_per_byte,
        )


def energy_breakdown(stats: LayerStats, arch: Arch, table: EnergyTable) -> EnergyBreakdown:
    """Picojoules of each component for `stats` on `arch`, priced with `table`."""
    return Prices.of(arch, table).energy(stats)


def recost(result: SimResult, table: EnergyTable | str) -> SimResult:
    """The same result priced with another energy table (no re-simulation)."""
    priced = energy_table(table) if isinstance(table, str) else table
    prices = Prices.of(result.arch, priced)
    rows = tuple(dataclasses.replace(row, energy=prices.energy(row.stats)) for row in result.rows)
    return dataclasses.replace(result, rows=rows, energy_table=priced.name)
