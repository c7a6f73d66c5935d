"""Energy tables are cited data and costing is counts x table.

Every entry states its bit width, node and source; the 16-bit integer multiply (absent from Horowitz's
table) is marked derived and says how. Energy = counts x table for every component, and re-costing a result
with another table changes only the energy, never the counts.
"""

from __future__ import annotations

import pytest
from sim_helpers import small_arch

from winosim import simulate
from winosim.energy import ENERGY_TABLES, EnergyEntry, energy_table, horowitz45, mobile_lpddr4
from winosim.errors import ConfigError
from winosim.sim.cost import energy_breakdown, recost
from winosim.sim.pe_array import ACCUMULATOR_BITS
from winosim.trace import Trace


@pytest.mark.parametrize("name", sorted(ENERGY_TABLES))
def test_every_entry_is_cited(name: str) -> None:
    table = energy_table(name)
    assert table.name == name
    for entry in table.entries:
        assert entry.bit_width >= 1 and entry.node and entry.source
        assert entry.energy_pj > 0
        assert entry.derived == bool(entry.derivation)
    for bits in (8, 16, 32):
        assert table.multiply_pj(bits) > 0 and table.add_pj(bits) > 0


def test_horowitz_values_and_the_derived_16_bit_multiply() -> None:
    """Horowitz, ISSCC 2014, 45 nm (paper.md section 6), exact values."""
    table = horowitz45()
    assert table.multiply_pj(8) == 0.2 and table.multiply_pj(32) == 3.1
    assert table.add_pj(8) == 0.03 and table.add_pj(32) == 0.1
    mult16 = table.entry("int_mult_16")
    assert mult16.derived
    assert "square" in mult16.derivation
    assert table.multiply_pj(8) < mult16.energy_pj < table.multiply_pj(32)
    assert not table.entry("int_mult_8").derived
    assert table.sram_pj_per_byte(8 * 1024) * 8 == pytest.approx(10.0)
    assert table.sram_pj_per_byte(32 * 1024) * 8 == pytest.approx(20.0)
    assert table.sram_pj_per_byte(1024 * 1024) * 8 == pytest.approx(100.0)
    assert table.sram_pj_per_byte(512) < table.sram_pj_per_byte(8 * 1024) < table.sram_pj_per_byte(1 << 22)


def test_mobile_table_differs_only_in_dram() -> None:
    mobile, server = mobile_lpddr4(), horowitz45()
    assert mobile.dram_pj_per_byte() == 8 * 8.0
    assert mobile.dram_pj_per_byte() < server.dram_pj_per_byte()
    assert mobile.multiply_pj(16) == server.multiply_pj(16)


def test_entries_validate() -> None:
    with pytest.raises(ConfigError, match="derived entry must say how"):
        EnergyEntry("x", 1.0, "operation", 8, "45 nm", "me", derived=True)
    with pytest.raises(ConfigError, match="energy_pj"):
        EnergyEntry("x", -1.0, "operation", 8, "45 nm", "me")
    with pytest.raises(ConfigError, match="unknown energy table"):
        energy_table("nope")


def test_energy_is_counts_times_table(tiny_trace: Trace) -> None:
    arch = small_arch()
    table = energy_table(arch.energy_table)
    result = simulate(tiny_trace, arch)
    for row in result.rows:
        s, e = row.stats, row.energy
        assert e.multiply_pj == pytest.approx(s.multiplies_actual * table.multiply_pj(16))
        assert e.add_pj == pytest.approx(
            s.accumulation_adds * table.add_pj(ACCUMULATOR_BITS)
            + (s.input_transform_adds + s.output_transform_adds + s.relu_compares) * table.add_pj(16)
        )
        assert e.dram_pj == pytest.approx(s.dram_bytes * table.dram_pj_per_byte())
        assert e.buffer_pj == pytest.approx(s.buffer_bytes * table.sram_pj_per_byte(arch.memory.global_buffer_bytes))
        assert e.energy_pj == pytest.approx(
            e.multiply_pj + e.add_pj + e.register_file_pj + e.accumulator_pj + e.buffer_pj + e.dram_pj
        )
        assert e == energy_breakdown(s, arch, table)


def test_recosting_changes_energy_not_counts(tiny_trace: Trace) -> None:
    result = simulate(tiny_trace, small_arch())
    other = recost(result, "horowitz45")
    assert other.energy_table == "horowitz45"
    for a, b in zip(result.rows, other.rows, strict=True):
        assert a.stats == b.stats
        assert b.energy.dram_pj == pytest.approx(a.energy.dram_pj * horowitz45().dram_pj_per_byte() / 64.0)
        assert b.energy.multiply_pj == a.energy.multiply_pj
    assert recost(other, mobile_lpddr4()) == result
