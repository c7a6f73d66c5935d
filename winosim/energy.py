"""Energy tables: the cost of one operation or one access, as cited data, kept apart from the simulator.

An `EnergyTable` is a named list of `EnergyEntry` records; every entry states its value in picojoules, what
it is per (an operation, a 64-bit access, a bit), the bit width, the technology node and its source. Entries
not in the source are marked `derived` and say how they were derived. `winosim.sim.cost` multiplies the
simulator's counts by a table; changing the table re-costs a result without re-simulating it.

Two presets:
- `horowitz45`: M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
  45 nm, 0.9 V: integer add and multiply, SRAM reads, DRAM (paper.md section 6).
- `mobile_lpddr4`: the same 45 nm logic and SRAM with an LPDDR4-class mobile DRAM at about 8 pJ/bit.

SRAM energy between and beyond the three Horowitz sizes (8 KB, 32 KB, 1 MB) is interpolated log-log
(derived; stated on the entry). Register files and accumulators are costed as small SRAMs of their size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from winosim.errors import ConfigError

Per = Literal["operation", "64-bit access", "bit"]
HOROWITZ = "Horowitz, ISSCC 2014, 'Computing's energy problem', 45 nm 0.9 V"
_KIB = 1024


@dataclass(frozen=True)
class EnergyEntry:
    """One energy figure: `energy_pj` per `per`, at `bit_width` bits and `node`, from `source`."""

    name: str
    energy_pj: float
    per: Per
    bit_width: int
    node: str
    source: str
    derived: bool = False
    derivation: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.energy_pj, int | float) and math.isfinite(self.energy_pj) and self.energy_pj >= 0):
            raise ConfigError(
                f"EnergyEntry {self.name!r}: energy_pj must be a finite number >= 0, got {self.energy_pj!r}"
            )
        if self.bit_width < 1:
            raise ConfigError(f"EnergyEntry {self.name!r}: bit_width must be >= 1, got {self.bit_width}")
        if self.derived and not self.derivation:
            raise ConfigError(f"EnergyEntry {self.name!r}: a derived entry must say how it was derived")


@dataclass(frozen=True)
class EnergyTable:
    """A named set of entries. Lookups by name; `multiply_pj`/`add_pj` by data width."""

    name: str
    description: str
    entries: tuple[EnergyEntry, ...]

    def __post_init__(self) -> None:
        names = [e.name for e in self.entries]
        if len(set(names)) != len(names):
            raise ConfigError(f"EnergyTable {self.name!r}: duplicate entry names")

    def entry(self, name: str) -> EnergyEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise ConfigError(f"EnergyTable {self.name!r}: no entry {name!r}")

    def multiply_pj(self, bits: int) -> float:
        """Energy of one integer multiply of `bits`-bit operands."""
        return self.entry(f"int_mult_{bits}").energy_pj

    def add_pj(self, bits: int) -> float:
        """Energy of one integer add of `bits`-bit operands."""
        return self.entry(f"int_add_{bits}").energy_pj

    def dram_pj_per_byte(self) -> float:
        return self.entry("dram").energy_pj * 8

    def sram_pj_per_byte(self, capacity_bytes: int) -> float:
        """Energy per byte read or written in an SRAM of `capacity_bytes`, interpolated log-log between the
        table's 64-bit SRAM reads (8 KB, 32 KB, 1 MB) and extrapolated beyond them (derived)."""
        if capacity_bytes < 1:
            raise ConfigError(f"sram_pj_per_byte: capacity_bytes must be >= 1, got {capacity_bytes}")
        points = sorted(
            (_sram_capacity(e.name), e.energy_pj / (e.bit_width / 64))
            for e in self.entries
            if e.name.startswith("sram_")
        )
        if len(points) < 2:
            raise ConfigError(f"EnergyTable {self.name!r}: needs at least two sram_* entries")
        x = math.log(capacity_bytes)
        xs = [math.log(c) for c, _ in points]
        ys = [math.log(v) for _, v in points]
        segment = 0
        while segment < len(xs) - 2 and x > xs[segment + 1]:
            segment += 1
        slope = (ys[segment + 1] - ys[segment]) / (xs[segment + 1] - xs[segment])
        per_access = math.exp(ys[segment] + slope * (x - xs[segment]))
        return per_access / 8  # a 64-bit access moves 8 bytes


def _sram_capacity(name: str) -> int:
    size = name.removeprefix("sram_")
    if size.endswith("kb"):
        return int(size[:-2]) * _KIB
    if size.endswith("mb"):
        return int(size[:-2]) * _KIB * _KIB
    raise ConfigError(f"energy entry {name!r}: cannot read an SRAM size from its name")


def _logic_and_sram() -> tuple[EnergyEntry, ...]:
    node = "45 nm"
    return (
        EnergyEntry("int_add_8", 0.03, "operation", 8, node, HOROWITZ),
        EnergyEntry(
            "int_add_16",
            0.03 + (0.1 - 0.03) * (16 - 8) / (32 - 8),
            "operation",
            16,
            node,
            HOROWITZ,
            derived=True,
            derivation="linear in bit width between Horowitz's 8-bit (0.03 pJ) and 32-bit (0.1 pJ) adds: 0.0533 pJ",
        ),
        EnergyEntry("int_add_32", 0.1, "operation", 32, node, HOROWITZ),
        EnergyEntry("int_mult_8", 0.2, "operation", 8, node, HOROWITZ),
        EnergyEntry(
            "int_mult_16",
            0.2 * (16 / 8) ** 2,
            "operation",
            16,
            node,
            HOROWITZ,
            derived=True,
            derivation=(
                "array-multiplier energy grows with the square of the width: 0.2 pJ x (16/8)^2 = 0.8 pJ; the same "
                "rule gives 3.2 pJ at 32 bits against Horowitz's 3.1 pJ, and the geometric mean of the 8- and "
                "32-bit entries is 0.79 pJ"
            ),
        ),
        EnergyEntry("int_mult_32", 3.1, "operation", 32, node, HOROWITZ),
        EnergyEntry("sram_8kb", 10.0, "64-bit access", 64, node, HOROWITZ),
        EnergyEntry("sram_32kb", 20.0, "64-bit access", 64, node, HOROWITZ),
        EnergyEntry("sram_1mb", 100.0, "64-bit access", 64, node, HOROWITZ),
    )


def horowitz45() -> EnergyTable:
    """Horowitz ISSCC 2014, 45 nm: logic, SRAM and (DDR3-class) DRAM."""
    dram = EnergyEntry(
        "dram",
        (1300.0 + 2600.0) / 2 / 64,
        "bit",
        64,
        "DDR3-class",
        HOROWITZ,
        derived=True,
        derivation="midpoint of Horowitz's 1.3-2.6 nJ per 64-bit DRAM access, divided by 64 bits: 30.5 pJ/bit",
    )
    return EnergyTable("horowitz45", "Horowitz ISSCC 2014, 45 nm, 0.9 V", (*_logic_and_sram(), dram))


def mobile_lpddr4() -> EnergyTable:
    """Horowitz 45 nm logic and SRAM with an LPDDR4-class mobile DRAM (about 8 pJ/bit)."""
    dram = EnergyEntry(
        "dram",
        8.0,
        "bit",
        32,
        "LPDDR4",
        "LPDDR4-class mobile DRAM, about 8 pJ/bit including I/O (paper.md section 6)",
    )
    return EnergyTable(
        "mobile_lpddr4", "Horowitz ISSCC 2014 45 nm logic and SRAM; LPDDR4 mobile DRAM", (*_logic_and_sram(), dram)
    )


ENERGY_TABLES = {"horowitz45": horowitz45, "mobile_lpddr4": mobile_lpddr4}


def energy_table(name: str) -> EnergyTable:
    """A preset table by name."""
    try:
        return ENERGY_TABLES[name]()
    except KeyError:
        raise ConfigError(f"unknown energy table {name!r}; known: {', '.join(sorted(ENERGY_TABLES))}") from None
