"""Tiling a layer into passes through the global buffer, and what each pass moves.

A layer runs as a sequence of *passes*. A pass is one block of output channels (a k-block) times one group
of columns of one image (a `RowGroup`: whole rows of output tiles for Winograd-domain work, or of output
pixels otherwise; or, when one row does not fit, a strip of segments of one row), over all input channels,
so a pass's outputs are complete when it ends. Passes run k-block by k-block, group by group.

Sizing (deterministic, docs/simulator.md):
1. k-blocks: as many output channels as their stored weights fit in half the global buffer (largest
   channel x count). With the `output_channels` partition the count is rounded down to a multiple of the
   PE count when at least P channels fit; when fewer fit, with `memory.weight_buffer_share: pe_fill`, P
   channels if their weights and the passes of step 2 fit in the whole buffer (the weights then take more
   than half), otherwise those that fit, and the other PEs idle. When not even one
   channel's weights fit, the k-block (one channel per PE) is *streamed*: its weights are fetched again
   for every group. With the `tiles` partition a PE holds one segment of the k-block's partial sums in
   its accumulators, which bounds the k-block further.
2. groups: the largest number of rows whose input rows and the outputs of the largest k-block any PE count
   could get (the channels that fit in half the buffer, or all K when streamed), double-buffered, fit in
   the other half of the buffer (worst-case, all-non-zero sizes, halo included); if not even one row fits,
   the largest strip of segments of one row that does. Groups do not depend on the PE count, so neither
   do the units of work. With the `output_channels` partition a PE goes through its unit in chunks of
   columns whose partial sums fit in its accumulators (`chunk_columns`), re-reading its weights per chunk.
3. the input map stays resident across k-blocks when all of it fits beside the weights' half and the
   double-buffered outputs; otherwise it is fetched again for every k-block (re-fetch).
A layer that cannot be tiled (one segment's inputs and outputs do not fit in half the buffer, one column's
or one segment's partial sums do not fit in the accumulators) raises ConfigError naming the parameter.

A plan depends on the architecture only through the fields the `PLAN` stage declares (`winosim.memo`);
`plan_layer` keeps it in the work's memo under that stage's key, so design points that differ in anything
else (DRAM bandwidth, assignment, zero handling, transform units) share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from winosim.arch import Arch
from winosim.errors import ConfigError
from winosim.memo import MemoKey, Stage
from winosim.sim.formats import Footprint, footprint, footprint_bytes
from winosim.workload import SEGMENT_COLUMNS, LayerWork

IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class RowGroup:
    """The columns of one pass: rows [row0, row1) of one image, and of each row the segments
    [segment0, segment1) (all of them, unless one row does not fit in the buffer: then a pass is a strip of
    segments of a single row)."""

    image: int
    row0: int
    row1: int
    segment0: int
    segment1: int

    def columns(self, work: LayerWork) -> tuple[int, int]:
        """Columns [col0, col1) of each row in this group."""
        return self.segment0 * SEGMENT_COLUMNS, min(self.segment1 * SEGMENT_COLUMNS, work.columns_per_row)

    def column_count(self, work: LayerWork) -> int:
        col0, col1 = self.columns(work)
        return col1 - col0

    def first_segment(self, work: LayerWork) -> int:
        """Index of the group's first segment among all segments of the layer (row-major)."""
        return (self.image * work.rows_per_image + self.row0) * work.segments_per_row + self.segment0

    def segment_count(self, work: LayerWork) -> int:
        """Segments in the group (contiguous in row-major order)."""
        return (self.row1 - self.row0 - 1) * work.segments_per_row + self.segment1 - self.segment0


@dataclass(frozen=True, eq=False)
class LayerPlan:
    """How one layer is cut into passes: `kblocks` are (first k, end k), `groups` the columns of each pass;
    passes run k-block-major. With the `output_channels` partition a PE works through its output channel of
    a pass in chunks of `chunk_columns` columns whose partial sums fit in its accumulators, reading the
    channel's weights from the buffer again for every chunk."""

    @property
    def whole_rows(self) -> bool:
        """Whether every pass covers whole rows (no strips)."""
        return all(g.segment0 == 0 for g in self.groups) and len({g.segment1 for g in self.groups}) == 1

    kblocks: tuple[tuple[int, int], ...]
    groups: tuple[RowGroup, ...]
    input_resident: bool
    weights_resident: bool
    chunk_columns: int
    weight_format: str
    activation_format: str
    group_rows: int
    """Rows per group (the last group of an image may have fewer); 1 for strips."""
    group_segments: int
    """Segments of each row in a group: all of them, or the width of a strip (the last strip of a row may be
    narrower). With `group_rows`, this determines `groups` for a given work."""

    @property
    def passes(self) -> int:
        return len(self.kblocks) * len(self.groups)


def accumulator_positions(work: LayerWork) -> int:
    """Partial sums per output column and output channel: the p*p Winograd positions, or 1."""
    return work.positions if work.domain == "winograd" else 1


def _input_span(
    domain: str, m: int, layer_pad: int, kernel: int, stride: int, first: int, end: int, size: int
) -> tuple[int, int]:
    if domain == "winograd":
        lo, hi = m * first - layer_pad, m * (end - 1) - layer_pad + m + kernel - 1
    else:
        lo, hi = first * stride - layer_pad, (end - 1) * stride - layer_pad + kernel
    return max(lo, 0), min(hi, size)


def input_rows(work: LayerWork, row0: int, row1: int) -> tuple[int, int]:
    """Input-map rows [h0, h1) that the output rows [row0, row1) of one image read (halo included)."""
    layer = work.layer
    return _input_span(
        work.domain, work.winograd_m, layer.padding, layer.kernel, layer.stride, row0, row1, layer.in_height
    )


def input_columns(work: LayerWork, col0: int, col1: int) -> tuple[int, int]:
    """Input-map columns [w0, w1) that the output columns [col0, col1) read (halo included)."""
    layer = work.layer
    return _input_span(
        work.domain, work.winograd_m, layer.padding, layer.kernel, layer.stride, col0, col1, layer.in_width
    )


def output_rows(work: LayerWork, row0: int, row1: int) -> int:
    """Output-map rows produced by rows [row0, row1) of one image."""
    if work.domain == "winograd":
        m = work.winograd_m
        return min(m * row1, work.layer.out_height) - m * row0
    return row1 - row0


def output_columns(work: LayerWork, col0: int, col1: int) -> int:
    """Output-map columns produced by columns [col0, col1) of a row."""
    if work.domain == "winograd":
        m = work.winograd_m
        return min(m * col1, work.layer.out_width) - m * col0
    return col1 - col0


def weight_footprint(
    work: LayerWork, fmt: str, width_bits: int, k0: int, k1: int, worst_case: bool = False
) -> Footprint:
    """Footprint of the weights of output channels [k0, k1)."""
    rows = (k1 - k0) * work.in_channels
    elements = (k1 - k0) * work.q
    nonzero = elements if (worst_case or work.weight_nnz_k is None) else int(work.weight_nnz_k[k0:k1].sum())
    return footprint(fmt, rows, work.positions, nonzero, width_bits)


def input_footprint(
    work: LayerWork,
    fmt: str,
    width_bits: int,
    image: int,
    rows: tuple[int, int],
    columns: tuple[int, int],
    worst_case: bool = False,
) -> Footprint:
    """Footprint of the input-map window rows x columns ([h0, h1) x [w0, w1)) of one image, all channels;
    a CSR row is one channel's part of one map row."""
    (h0, h1), (w0, w1) = rows, columns
    channel_rows = work.in_channels * (h1 - h0)
    elements = channel_rows * (w1 - w0)
    counts = work.input_nnz_hw
    nonzero = elements if worst_case or counts is None else int(counts[image, h0:h1, w0:w1].sum())
    return footprint(fmt, channel_rows, w1 - w0, nonzero, width_bits)


PLAN = Stage(
    "plan",
    reads=(
        "pe_array.partition",
        "pe_array.pe_count",
        "pe_array.accumulator_entries",
        "memory.global_buffer_bytes",
        "memory.weight_format",
        "memory.activation_format",
        "memory.weight_buffer_share",
        "data_width_bits",
    ),
    reads_when={"pe_array.pe_count": ("pe_array.partition", "output_channels")},
)
"""What a plan reads of the architecture. (The PE count only sizes the `output_channels` partition's
k-blocks: a `tiles` plan does not depend on it, and is shared across PE counts.)"""


def plan_layer(work: LayerWork, arch: Arch, key: MemoKey | None = None) -> LayerPlan:
    """Cut `work` into passes for `arch` (see the module docstring); raises ConfigError if it cannot.

    Kept in `work.memo` under `PLAN.key(arch)` (pass it as `key` when it is at hand)."""
    return work.memo.get(key or PLAN.key(arch), lambda: _plan_layer(work, PLAN.view(arch)))


@dataclass(frozen=True)
class _Sizing:
    """What the plan's steps share: the formats in effect, the buffer's halves, the largest stored channel."""

    where: str
    weight_format: str
    activation_format: str
    capacity: int
    half: int
    per_k: IntArray
    fit: int
    """Output channels whose weights fit in half the buffer (0: not even one)."""


def _sizing(work: LayerWork, arch: Arch) -> _Sizing:
    mem = arch.memory
    sparse_storage = not work.dense
    weight_format = mem.weight_format if sparse_storage else "dense"
    activation_format = mem.activation_format if (sparse_storage and work.input_nnz_hw is not None) else "dense"
    nonzero_k = work.weight_nnz_k if work.weight_nnz_k is not None else np.full(work.out_channels, work.q, np.int64)
    per_k = footprint_bytes(weight_format, work.in_channels, work.positions, nonzero_k, arch.data_width_bits)
    half = mem.global_buffer_bytes // 2
    return _Sizing(
        where=f"layer {work.layer.name!r} ({work.method})",
        weight_format=weight_format,
        activation_format=activation_format,
        capacity=mem.global_buffer_bytes,
        half=half,
        per_k=per_k,
        fit=half // int(per_k.max()),
    )


def _plan_layer(work: LayerWork, arch: Arch) -> LayerPlan:
    sizing = _sizing(work, arch)
    # the outputs are sized for the largest k-block any PE count could get, so that the units of work do
    # not depend on P
    k_outputs = min(work.out_channels, sizing.fit) if sizing.fit >= 1 else work.out_channels
    group, segments = _group_size(work, arch, sizing, k_outputs)
    kblocks, weight_room = _kblocks(work, arch, sizing, group, segments)
    weights_resident = max(int(sizing.per_k[s:e].sum()) for s, e in kblocks) <= weight_room
    chunk_columns = _chunk_columns(work, arch, sizing, group)
    per_row, rows_per_image = work.segments_per_row, work.rows_per_image
    if segments == per_row:
        groups = tuple(
            RowGroup(n, r0, min(r0 + group, rows_per_image), 0, per_row)
            for n in range(work.images)
            for r0 in range(0, rows_per_image, group)
        )
    else:
        groups = tuple(
            RowGroup(n, r, r + 1, s0, min(s0 + segments, per_row))
            for n in range(work.images)
            for r in range(rows_per_image)
            for s0 in range(0, per_row, segments)
        )
    k_largest = max(k_outputs, max(e - s for s, e in kblocks))
    resident = len(kblocks) == 1 or _input_fits_beside(work, arch, sizing, weight_room, k_largest, group, segments)
    return LayerPlan(
        tuple(kblocks),
        groups,
        resident,
        weights_resident,
        chunk_columns,
        sizing.weight_format,
        sizing.activation_format,
        group_rows=group,
        group_segments=segments,
    )


def _kblocks(
    work: LayerWork, arch: Arch, sizing: _Sizing, group: int, segments: int
) -> tuple[list[tuple[int, int]], int]:
    """Step 1: as many output channels as fit in half the buffer (a multiple of the PE count with the
    output_channels partition, so that every PE has a unit), at least one per PE (then streamed); with
    `weight_buffer_share: pe_fill`, one per PE when fewer fit in half but one per PE and the passes of
    `group` rows of `segments` segments fit in the whole buffer. Also the bytes the weights may take."""
    pe = arch.pe_array
    k_total, fit = work.out_channels, sizing.fit
    room = sizing.half
    if pe.partition == "output_channels":
        fill = min(k_total, pe.pe_count)
        passes = _pass_bytes(work, arch, sizing, fill, group, segments)
        if fit >= pe.pe_count:
            kb = min(k_total, fit - fit % pe.pe_count)  # every PE gets the same number of channels
        elif (
            fit >= 1
            and arch.memory.weight_buffer_share == "pe_fill"
            and fill * int(sizing.per_k.max()) + passes <= sizing.capacity
        ):
            kb, room = fill, sizing.capacity - passes  # every PE gets a channel: the weights take more than half
        elif fit >= 1:
            kb = min(k_total, fit)  # resident weights, some PEs idle
        else:
            kb = min(k_total, pe.pe_count)  # not even one channel fits: stream, one channel per PE
    else:
        segment_partials = min(SEGMENT_COLUMNS, work.columns_per_row) * accumulator_positions(work)
        kb = min(k_total, max(fit, 1), pe.accumulator_entries // segment_partials)
        if kb < 1:
            raise ConfigError(
                f"pe_array.accumulator_entries = {pe.accumulator_entries} is too small for {sizing.where}: one "
                f"segment of one output channel needs {segment_partials} partial sums"
            )
    return [(k0, min(k0 + kb, k_total)) for k0 in range(0, k_total, kb)], room


def _pass_bytes(work: LayerWork, arch: Arch, sizing: _Sizing, k_outputs: int, rows: int, segments: int) -> int:
    """Double-buffered worst-case inputs and outputs of a pass of `rows` rows of `segments` segments."""
    col1 = min(segments * SEGMENT_COLUMNS, work.columns_per_row)
    in_cols = input_columns(work, 0, col1) if segments < work.segments_per_row else (0, work.layer.in_width)
    inputs = input_footprint(
        work, sizing.activation_format, arch.data_width_bits, 0, input_rows(work, 0, rows), in_cols, worst_case=True
    ).bytes
    outputs = k_outputs * output_rows(work, 0, rows) * output_columns(work, 0, col1) * arch.data_width_bytes
    return 2 * (inputs + outputs)


def _group_size(work: LayerWork, arch: Arch, sizing: _Sizing, k_outputs: int) -> tuple[int, int]:
    """Step 2: (rows, segments per row) of a group: the most rows whose double-buffered inputs and outputs
    fit in the other half of the buffer; if not even one row fits, the widest strip of one row that does."""
    rest = sizing.capacity - sizing.half
    per_row = work.segments_per_row
    group = segments = 0
    for g in range(1, work.rows_per_image + 1):
        if _pass_bytes(work, arch, sizing, k_outputs, g, per_row) > rest:
            break
        group, segments = g, per_row
    if group == 0:  # not even one row: strips of segments of one row
        for t in range(per_row - 1, 0, -1):
            if _pass_bytes(work, arch, sizing, k_outputs, 1, t) <= rest:
                group, segments = 1, t
                break
    if group == 0:
        raise ConfigError(
            f"memory.global_buffer_bytes = {sizing.capacity} is too small for {sizing.where}: one segment of "
            f"{SEGMENT_COLUMNS} columns needs {_pass_bytes(work, arch, sizing, k_outputs, 1, 1)} bytes of "
            f"double-buffered inputs and outputs, half the buffer is {rest}"
        )
    return group, segments


def _chunk_columns(work: LayerWork, arch: Arch, sizing: _Sizing, group: int) -> int:
    """Columns a PE works through per chunk: with the output_channels partition, as many as its accumulators
    hold the partial sums of; otherwise a whole group's."""
    pe = arch.pe_array
    if pe.partition != "output_channels":
        return group * work.columns_per_row
    acc_per_column = accumulator_positions(work)
    chunk_columns = pe.accumulator_entries // acc_per_column
    if chunk_columns < 1:
        raise ConfigError(
            f"pe_array.accumulator_entries = {pe.accumulator_entries} is too small for {sizing.where}: one column "
            f"of one output channel needs {acc_per_column} partial sums"
        )
    return chunk_columns


def _input_fits_beside(
    work: LayerWork, arch: Arch, sizing: _Sizing, weight_room: int, k_outputs: int, rows: int, segments: int
) -> bool:
    """Step 3: whether the whole input map fits beside the weights' room and two passes' outputs."""
    whole = input_footprint(
        work,
        sizing.activation_format,
        arch.data_width_bits,
        0,
        (0, work.layer.in_height),
        (0, work.layer.in_width),
        worst_case=True,
    ).bytes
    col1 = min(segments * SEGMENT_COLUMNS, work.columns_per_row)
    outputs = 2 * k_outputs * output_rows(work, 0, rows) * output_columns(work, 0, col1) * arch.data_width_bytes
    return work.images * whole + weight_room + outputs <= sizing.capacity
