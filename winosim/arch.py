"""The architecture description: a frozen, validated record of the simulated accelerator.

An `Arch` describes one design point of a mobile CNN accelerator (docs/simulator.md):

- `PEArray`: P processing elements, each with some multipliers and an accumulator buffer; how each operand's
  zeros are handled (`none`: multiplied like any value; `gate`: the multiplier slot is spent but the
  multiply is clock-gated, saving energy, not time; `skip`: the zero is never issued, saving both); how work
  is split across PEs (`output_channels` or `tiles`) and assigned (`static` round-robin or `dynamic`
  greedy); a scalar PE or an SCNN-style Cartesian-product PE (F non-zero weights x I non-zero activations
  per cycle) for the Winograd element-wise stage.
- `TransformUnit`: an input (B^T d B, then ReLU and zero compression for Winograd-ReLU) or output (A^T M A)
  transform block: how many units, and how many tiles each finishes per cycle. Adds per tile come from
  `winosim.winograd`, not from here.
- `Memory`: DRAM bandwidth, the global buffer and per-PE register file capacities, the storage format of
  weights and activations (dense, bitmask, or CSR with its index bits), and what happens between layers:
  where activations live, the order of the batch, weight prefetch.
- `Arch`: the above plus the data width, the clock and the name of the energy table used for costing.

Every quantity carries its unit in its name and every field is checked on construction; an impossible value
raises `ConfigError` naming the record, the field and the value. Counts and sizes are integers between 1 and
the documented bound of their field (`MAXIMUM`): far beyond any buildable accelerator, and low enough that
every product the simulator forms stays inside int64; the clock is a finite number of Hz from `MIN_CLOCK_HZ`
to `MAX_CLOCK_HZ` (so latencies stay finite). No field accepts NaN, infinity, a boolean or a number that only
looks integral. The records have no default values: the default architecture exists in one place, the shipped preset
`winosim/presets/default.yaml` (where each number comes from is documented there), which
`winosim.archio.default_arch()` loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from winosim.errors import ConfigError

ZeroHandling = Literal["none", "gate", "skip"]
Partition = Literal["output_channels", "tiles"]
Assignment = Literal["static", "dynamic"]
PEKind = Literal["scalar", "cartesian"]
StorageFormat = Literal["dense", "bitmask", "csr"]
Residency = Literal["dram", "buffer"]
BatchOrder = Literal["layer", "image"]
WeightPrefetch = Literal["none", "next_layer"]
WeightBufferShare = Literal["half", "pe_fill"]

ZERO_HANDLING: tuple[str, ...] = ("none", "gate", "skip")
PARTITIONS: tuple[str, ...] = ("output_channels", "tiles")
ASSIGNMENTS: tuple[str, ...] = ("static", "dynamic")
PE_KINDS: tuple[str, ...] = ("scalar", "cartesian")
STORAGE_FORMATS: tuple[str, ...] = ("dense", "bitmask", "csr")
RESIDENCIES: tuple[str, ...] = ("dram", "buffer")
BATCH_ORDERS: tuple[str, ...] = ("layer", "image")
WEIGHT_PREFETCHES: tuple[str, ...] = ("none", "next_layer")
WEIGHT_BUFFER_SHARES: tuple[str, ...] = ("half", "pe_fill")
DATA_WIDTHS_BITS: tuple[int, ...] = (8, 16, 32)
ENERGY_TABLES: tuple[str, ...] = ("horowitz45", "mobile_lpddr4")


MAXIMUM: dict[tuple[str, str], int] = {
    ("PEArray", "pe_count"): 2**20,
    ("PEArray", "multipliers_per_pe"): 2**12,
    ("PEArray", "accumulator_entries"): 2**30,
    ("PEArray", "cartesian_weights"): 2**6,
    ("PEArray", "cartesian_activations"): 2**6,
    ("TransformUnit", "count"): 2**20,
    ("TransformUnit", "tiles_per_cycle"): 2**12,
    ("Memory", "dram_bandwidth_bytes_per_cycle"): 2**30,
    ("Memory", "global_buffer_bytes"): 2**40,
    ("Memory", "register_file_bytes"): 2**30,
}
"""The largest value of every integer field, by (record, field): 1 Mi PEs of up to 4096 multipliers, 1 GiB per
cycle of DRAM bandwidth, a 1 TiB global buffer. Far beyond any buildable mobile accelerator, and small enough
that counts, cycles and bytes stay exact in int64."""

MIN_CLOCK_HZ = 1.0
MAX_CLOCK_HZ = 1e12
"""The clock's bounds: 1 Hz to 1 THz."""


def _shown(value: object) -> str:
    """A value for an error message: huge integers in scientific notation, not hundreds of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"{float(value):.3g}"
    return repr(value)


def _positive_int(record: str, name: str, value: object) -> None:
    maximum = MAXIMUM[(record, name)]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise ConfigError(f"{record}: {name} must be an integer in [1, {maximum}], got {_shown(value)}")


def _choice(record: str, name: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{record}: {name} must be one of {', '.join(map(str, choices))}, got {value!r}")


@dataclass(frozen=True)
class PEArray:
    """The multiplier array: `pe_count` PEs with `multipliers_per_pe` multipliers and an accumulator buffer
    of `accumulator_entries` partial sums each.

    A `cartesian` PE multiplies `cartesian_weights` (F) non-zero weights by `cartesian_activations` (I)
    non-zero activations of the same (channel, Winograd position) per cycle, so it needs
    `multipliers_per_pe == F * I` and the `tiles` partition (each PE owns a set of tiles and sees every
    weight, as in SCNN). On spatial layers it works as a scalar PE with F x I multipliers.
    """

    pe_count: int
    multipliers_per_pe: int
    accumulator_entries: int
    weight_zeros: ZeroHandling
    activation_zeros: ZeroHandling
    partition: Partition
    assignment: Assignment
    pe_kind: PEKind
    cartesian_weights: int
    cartesian_activations: int

    def __post_init__(self) -> None:
        record = "PEArray"
        for name in (
            "pe_count",
            "multipliers_per_pe",
            "accumulator_entries",
            "cartesian_weights",
            "cartesian_activations",
        ):
            _positive_int(record, name, getattr(self, name))
        _choice(record, "weight_zeros", self.weight_zeros, ZERO_HANDLING)
        _choice(record, "activation_zeros", self.activation_zeros, ZERO_HANDLING)
        _choice(record, "partition", self.partition, PARTITIONS)
        _choice(record, "assignment", self.assignment, ASSIGNMENTS)
        _choice(record, "pe_kind", self.pe_kind, PE_KINDS)
        if self.pe_kind == "cartesian":
            product = self.cartesian_weights * self.cartesian_activations
            if self.multipliers_per_pe != product:
                raise ConfigError(
                    f"PEArray: a cartesian PE needs multipliers_per_pe == cartesian_weights x "
                    f"cartesian_activations ({product}), got {self.multipliers_per_pe}"
                )
            if self.partition != "tiles":
                raise ConfigError(f"PEArray: a cartesian PE needs partition 'tiles', got {self.partition!r}")

    @property
    def multipliers(self) -> int:
        """Multipliers in the whole array."""
        return self.pe_count * self.multipliers_per_pe


@dataclass(frozen=True)
class TransformUnit:
    """`count` identical transform units, each finishing `tiles_per_cycle` tiles (one channel each) per cycle."""

    count: int
    tiles_per_cycle: int

    def __post_init__(self) -> None:
        _positive_int("TransformUnit", "count", self.count)
        _positive_int("TransformUnit", "tiles_per_cycle", self.tiles_per_cycle)

    @property
    def tiles_per_cycle_total(self) -> int:
        return self.count * self.tiles_per_cycle


@dataclass(frozen=True)
class Memory:
    """DRAM, the shared global buffer, the per-PE register files and the storage formats.

    `csr` stores, per row (one output channel and input channel of the weights, one channel row of the
    activation map), its non-zero count in ceil(log2(columns + 1)) bits and per non-zero value its column
    index in ceil(log2(columns)) bits. `bitmask` stores one bit per element plus the non-zero values.

    Between layers (`winosim.sim.residency`): `activation_residency` `dram` writes every layer's output to
    DRAM and reads it back; `buffer` keeps what fits in the global buffer beside what the running layers
    need (the rest spills to DRAM). `batch_order` `layer` runs all the trace's images through a layer before
    the next (weights fetched once per layer); `image` runs one image through the whole network at a time
    (weights fetched once per image unless the buffer holds every layer's weights). `weight_prefetch`
    `next_layer` loads the next layer's first weights in the DRAM channel's idle cycles of the current
    layer when the buffer has room; `none` loads them when the layer starts.

    `weight_buffer_share` `half` gives a layer's k-block of weights half the buffer; `pe_fill` lets a
    k-block take more when fewer output channels than PEs fit in half, so that every PE gets one, provided
    the passes' double-buffered inputs and outputs still fit beside it (`winosim.sim.plan`).
    """

    dram_bandwidth_bytes_per_cycle: int
    global_buffer_bytes: int
    register_file_bytes: int
    weight_format: StorageFormat
    activation_format: StorageFormat
    activation_residency: Residency
    batch_order: BatchOrder
    weight_prefetch: WeightPrefetch
    weight_buffer_share: WeightBufferShare

    def __post_init__(self) -> None:
        _positive_int("Memory", "dram_bandwidth_bytes_per_cycle", self.dram_bandwidth_bytes_per_cycle)
        _positive_int("Memory", "global_buffer_bytes", self.global_buffer_bytes)
        _positive_int("Memory", "register_file_bytes", self.register_file_bytes)
        _choice("Memory", "weight_format", self.weight_format, STORAGE_FORMATS)
        _choice("Memory", "activation_format", self.activation_format, STORAGE_FORMATS)
        _choice("Memory", "activation_residency", self.activation_residency, RESIDENCIES)
        _choice("Memory", "batch_order", self.batch_order, BATCH_ORDERS)
        _choice("Memory", "weight_prefetch", self.weight_prefetch, WEIGHT_PREFETCHES)
        _choice("Memory", "weight_buffer_share", self.weight_buffer_share, WEIGHT_BUFFER_SHARES)


@dataclass(frozen=True)
class Arch:
    """One design point. Build it with `winosim.archio.default_arch()`, `winosim.archio.load_arch(path)`,
    `winosim.archio.resolve_arch(...)` or directly (every field given)."""

    pe_array: PEArray
    input_transform: TransformUnit
    output_transform: TransformUnit
    memory: Memory
    data_width_bits: int
    clock_hz: float
    energy_table: str
    name: str

    def __post_init__(self) -> None:
        for attr, kind in (
            ("pe_array", PEArray),
            ("input_transform", TransformUnit),
            ("output_transform", TransformUnit),
            ("memory", Memory),
        ):
            if not isinstance(getattr(self, attr), kind):
                raise ConfigError(f"Arch: {attr} must be a {kind.__name__}, got {type(getattr(self, attr)).__name__}")
        _choice("Arch", "data_width_bits", self.data_width_bits, DATA_WIDTHS_BITS)
        if (
            not isinstance(self.clock_hz, int | float)
            or isinstance(self.clock_hz, bool)
            or not math.isfinite(self.clock_hz)
            or not MIN_CLOCK_HZ <= self.clock_hz <= MAX_CLOCK_HZ
        ):
            raise ConfigError(
                f"Arch: clock_hz must be a finite number in [{MIN_CLOCK_HZ:g}, {MAX_CLOCK_HZ:g}], got {self.clock_hz!r}"
            )
        _choice("Arch", "energy_table", self.energy_table, ENERGY_TABLES)
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"Arch: name must be a non-empty string, got {self.name!r}")
        smallest_tile_bytes = 16 * self.data_width_bits // 8
        if self.memory.global_buffer_bytes < 2 * smallest_tile_bytes:
            raise ConfigError(
                f"Memory: global_buffer_bytes must hold at least one 4x4 input tile and one weight tile "
                f"({2 * smallest_tile_bytes} bytes at {self.data_width_bits} bits), "
                f"got {self.memory.global_buffer_bytes}"
            )

    @property
    def data_width_bytes(self) -> int:
        return self.data_width_bits // 8
