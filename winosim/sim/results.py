"""Simulation results: frozen, additive records of counts, and the energy they cost.

`LayerStats` holds integer counts for one layer under one method on one architecture: cycles and their
attribution, busy and stall cycles of every block, multiplies in Sparseloop's vocabulary (algorithmic =
actual + gated + skipped; issued = actual + gated), adds, and bytes per memory level and tensor (metadata
included). Stats add field by field, so a network total is a sum of layers. `EnergyBreakdown` holds the
picojoules of each component (counts x an energy table, `winosim.sim.cost`). `SimResult` gathers the rows of a
run and turns them into a tidy pandas DataFrame with `to_frame()` (pandas is imported only there).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from winosim.arch import Arch
from winosim.counts import LayerCount

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class LayerStats:
    """Integer counts of one layer (or a sum of layers). Every `*_cycles` of a block: busy + stall = cycles."""

    cycles: int = 0
    compute_cycles: int = 0
    imbalance_idle_cycles: int = 0
    transform_stall_cycles: int = 0
    dram_stall_cycles: int = 0
    passes: int = 0
    multiplier_cycles: int = 0
    pe_array_busy_cycles: int = 0
    pe_array_stall_cycles: int = 0
    input_transform_busy_cycles: int = 0
    input_transform_stall_cycles: int = 0
    output_transform_busy_cycles: int = 0
    output_transform_stall_cycles: int = 0
    dram_channel_busy_cycles: int = 0
    dram_channel_stall_cycles: int = 0
    multiplies_algorithmic: int = 0
    multiplies_actual: int = 0
    multiplies_gated: int = 0
    multiplies_skipped: int = 0
    accumulation_adds: int = 0
    input_transform_adds: int = 0
    output_transform_adds: int = 0
    relu_compares: int = 0
    dram_weight_read_bytes: int = 0
    dram_input_read_bytes: int = 0
    dram_output_write_bytes: int = 0
    dram_metadata_bytes: int = 0
    buffer_fill_bytes: int = 0
    buffer_weight_read_bytes: int = 0
    buffer_input_read_bytes: int = 0
    buffer_output_bytes: int = 0
    rf_access_bytes: int = 0
    accumulator_access_bytes: int = 0
    boundary_stall_cycles: int = 0
    """Of the PE array's stall: the cycles before its first pass and after its last (per run of passes)."""
    buffer_kept_input_bytes: int = 0
    """Input bytes the passes read from the buffer, kept there by an earlier layer, instead of from DRAM."""
    buffer_kept_output_bytes: int = 0
    """Output bytes kept in the buffer for the next layers instead of written to DRAM."""
    dram_spill_write_bytes: int = 0
    """With `activation_residency: buffer`, the output bytes written to DRAM because they did not fit."""
    dram_prefetch_weight_bytes: int = 0
    """Of `dram_weight_read_bytes`: those loaded during the previous layer (weight prefetch)."""

    def __post_init__(self) -> None:
        for name in _STATS_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"LayerStats: {name} must be an integer >= 0, got {value!r}")

    def __add__(self, other: LayerStats) -> LayerStats:
        if not isinstance(other, LayerStats):
            return NotImplemented
        return LayerStats(**{name: getattr(self, name) + getattr(other, name) for name in _STATS_FIELDS})

    @property
    def multiplies(self) -> int:
        """The paper's metric: multiplies actually performed (= the exact zero-skipping count when both
        operands skip or gate zeros)."""
        return self.multiplies_actual

    @property
    def multiplies_issued(self) -> int:
        return self.multiplies_actual + self.multiplies_gated

    @property
    def utilisation(self) -> float:
        """Fraction of multiplier-cycles that issued a multiply."""
        return self.multiplies_issued / self.multiplier_cycles if self.multiplier_cycles else 0.0

    @property
    def dram_bytes(self) -> int:
        return self.dram_weight_read_bytes + self.dram_input_read_bytes + self.dram_output_write_bytes

    @property
    def buffer_bytes(self) -> int:
        return (
            self.buffer_fill_bytes
            + self.buffer_weight_read_bytes
            + self.buffer_input_read_bytes
            + self.buffer_output_bytes
        )

    def as_dict(self) -> dict[str, int]:
        """Every count by field name, in field order."""
        return {name: getattr(self, name) for name in _STATS_FIELDS}

    @staticmethod
    def field_names() -> tuple[str, ...]:
        """The counts' names, in field order."""
        return _STATS_FIELDS


@dataclass(frozen=True)
class EnergyBreakdown:
    """Picojoules per component; `energy_pj` is their sum."""

    multiply_pj: float = 0.0
    add_pj: float = 0.0
    register_file_pj: float = 0.0
    accumulator_pj: float = 0.0
    buffer_pj: float = 0.0
    dram_pj: float = 0.0

    def __add__(self, other: EnergyBreakdown) -> EnergyBreakdown:
        if not isinstance(other, EnergyBreakdown):
            return NotImplemented
        return EnergyBreakdown(**{name: getattr(self, name) + getattr(other, name) for name in _ENERGY_FIELDS})

    @property
    def energy_pj(self) -> float:
        return (
            self.multiply_pj + self.add_pj + self.register_file_pj + self.accumulator_pj + self.buffer_pj + self.dram_pj
        )

    def as_dict(self) -> dict[str, float]:
        """Every component by field name, in field order."""
        return {name: getattr(self, name) for name in _ENERGY_FIELDS}


_STATS_FIELDS = tuple(f.name for f in dataclasses.fields(LayerStats))
_ENERGY_FIELDS = tuple(f.name for f in dataclasses.fields(EnergyBreakdown))


@dataclass(frozen=True)
class LayerResult:
    """One row: a layer under a method (and the variant that supplied its masks) on the run's architecture:
    its exact counts (`winosim.counts`, from the same lowering; they also name the row), the simulated counts
    and their energy."""

    count: LayerCount
    stats: LayerStats
    energy: EnergyBreakdown

    @property
    def layer(self) -> str:
        return self.count.layer

    @property
    def layer_index(self) -> int:
        return self.count.layer_index

    @property
    def method(self) -> str:
        return self.count.method

    @property
    def variant(self) -> str | None:
        return self.count.variant

    @property
    def domain(self) -> str:
        return self.count.domain

    @property
    def images(self) -> int:
        return self.count.images


@dataclass(frozen=True)
class SimResult:
    """All rows of one `simulate` call, in layer order then method order, with the architecture used."""

    network: str
    arch: Arch
    energy_table: str
    rows: tuple[LayerResult, ...]

    def methods(self) -> tuple[tuple[str, str | None], ...]:
        """The (method, variant) pairs present, in first-seen order."""
        seen: dict[tuple[str, str | None], None] = {}
        for row in self.rows:
            seen.setdefault((row.method, row.variant), None)
        return tuple(seen)

    def total(self, method: str, variant: str | None = None) -> tuple[LayerStats, EnergyBreakdown]:
        """Network totals of one method (the first variant of it when `variant` is None)."""
        if variant is None:
            variant = next((v for m, v in self.methods() if m == method), None)
        stats, energy = LayerStats(), EnergyBreakdown()
        found = False
        for row in self.rows:
            if row.method == method and row.variant == variant:
                stats, energy, found = stats + row.stats, energy + row.energy, True
        if not found:
            raise KeyError(f"no rows for method {method!r} variant {variant!r}")
        return stats, energy

    def latency_s(self, cycles: int) -> float:
        return cycles / self.arch.clock_hz

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per row: identity, `multiplies`, `cycles`, `latency_s`, `utilisation`, every count,
        `energy_pj` and its breakdown. Stable column order."""
        out: list[dict[str, Any]] = []
        for row in self.rows:
            stats, count = row.stats, row.count
            record: dict[str, Any] = {
                "layer": count.layer,
                "layer_index": count.layer_index,
                "method": count.method,
                "variant": count.variant,
                "domain": count.domain,
                "images": count.images,
                "multiplies": stats.multiplies,
                "cycles": stats.cycles,
                "latency_s": self.latency_s(stats.cycles),
                "energy_pj": row.energy.energy_pj,
                "utilisation": stats.utilisation,
                "multiplies_issued": stats.multiplies_issued,
                "dram_bytes": stats.dram_bytes,
            }
            record.update(stats.as_dict())
            record.update(row.energy.as_dict())
            out.append(record)
        return out

    def to_frame(self) -> pd.DataFrame:
        """A tidy DataFrame, one row per (layer, method, variant); see `records` for the columns."""
        import pandas as pd

        return pd.DataFrame.from_records(self.records())
