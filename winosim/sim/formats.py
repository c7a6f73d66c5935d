"""Storage formats: how many bits a tensor occupies in memory, values plus metadata.

- `dense`: every element at the data width, no metadata.
- `bitmask`: one presence bit per element, then the non-zero values.
- `csr` (the index-based format): per row, its non-zero count in ceil(log2(columns + 1)) bits; per non-zero
  value, its column index in ceil(log2(columns)) bits.

A tensor is described by its number of rows, columns per row and non-zero elements; the functions are pure
and vectorise over numpy arrays of non-zero counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from winosim.integers import ceil_div


def index_bits(columns: int) -> int:
    """Bits of a column index among `columns` (0 for a single column)."""
    return math.ceil(math.log2(columns)) if columns > 1 else 0


@dataclass(frozen=True)
class Footprint:
    """Size of a stored tensor: `value_bits` of non-zero (or all, for dense) values and `metadata_bits`."""

    value_bits: int
    metadata_bits: int

    @property
    def bits(self) -> int:
        return self.value_bits + self.metadata_bits

    @property
    def bytes(self) -> int:
        """Whole bytes, rounded up."""
        return ceil_div(self.bits, 8)

    @property
    def metadata_bytes(self) -> int:
        """Bytes of metadata: the part of `bytes` that is not value bits."""
        return self.bytes - self.value_bits // 8


def footprint(fmt: str, rows: int, columns: int, nonzero: int, width_bits: int) -> Footprint:
    """Footprint of a (rows x columns) tensor with `nonzero` non-zero elements stored in format `fmt`."""
    elements = rows * columns
    if fmt == "dense":
        return Footprint(elements * width_bits, 0)
    if fmt == "bitmask":
        return Footprint(nonzero * width_bits, elements)
    if fmt == "csr":
        return Footprint(nonzero * width_bits, rows * index_bits(columns + 1) + nonzero * index_bits(columns))
    raise ValueError(f"unknown storage format {fmt!r}")  # Memory validates formats; unreachable from an Arch


def footprint_bytes(
    fmt: str, rows: int, columns: int, nonzero: NDArray[np.int64], width_bits: int
) -> NDArray[np.int64]:
    """`footprint(...).bytes` for an array of non-zero counts (same rows and columns for each)."""
    elements = rows * columns
    if fmt == "dense":
        bits = np.full_like(nonzero, elements * width_bits)
    elif fmt == "bitmask":
        bits = nonzero * width_bits + elements
    elif fmt == "csr":
        bits = nonzero * (width_bits + index_bits(columns)) + rows * index_bits(columns + 1)
    else:
        raise ValueError(f"unknown storage format {fmt!r}")
    return ceil_div(bits, 8)
