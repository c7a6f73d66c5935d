"""What goes through the pipeline: whole passes, with each run's fill and drain streamed row by row.

The pipeline (`winosim.sim.pipeline`) double-buffers its items: while the PE array works on one, the loader
fetches the next and the writer drains the previous. With whole passes as items, a layer's first pass is
read entirely before any multiply and its last pass is written entirely after the last one, so a layer
that fits in one pass (or one image's passes, in image order) shows all its DRAM time on top of its compute,
which hardware that streams its buffers never does (analyses/out/validation-zigzag.md, where ZigZag
overlaps at the granularity of its loop tiles).

So the first and the last pass of every run go through the pipeline as their rows, one item per row of
the pass's group (a strip of one row is a single item), each taking 1/R of the room a whole pass takes in
the pipeline's buffers (`PassTiming.item_units`: the buffers still hold two passes' worth). Item j of a
pass of R rows (group rows row0 + j) is a pass of its own for every block:

- the loader reads the pass's weights with row 0; the run's first pass reads, with row j, the input rows
  that row j adds to those of the rows before it (halo included, `plan.input_rows`), any other streamed
  pass (the run's last) all its inputs with row 0, as it would unstreamed;
- the transform units transform the row's tiles: ceil(C x columns / input rate) and ceil(K_block x columns
  / output rate) cycles, as for a pass of one row (`winosim.sim.transforms`);
- the PE array spends floor((j + 1) X / R) - floor(j X / R) of the pass's makespan X (the pass's units are
  not split by row; its time is spread evenly over its rows and its total kept);
- the writer writes the output rows of row j (`plan.output_rows`).

Input and output bytes are shared among the rows in proportion to the map rows each covers (exact for dense
maps; for compressed maps a proportional share of the pass's actual bytes), so the rows move exactly the
pass's bytes; each row's transfer takes ceil(bytes / bandwidth) cycles, like any transfer. The passes in
between stay whole: double-buffered passes already hide each other's transfers, and keeping them whole
keeps a sweep's timing at a few items per pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from winosim.arch import Arch
from winosim.integers import ceil_div
from winosim.sim.pipeline import PassTiming
from winosim.sim.plan import LayerPlan, input_rows, output_rows
from winosim.sim.residency import PassBytes
from winosim.workload import IntArray, LayerWork


def proportional_steps(total: int, cumulative: Sequence[int]) -> list[int]:
    """`total` split over steps whose running weights are `cumulative` (non-decreasing, last > 0): step j
    gets floor(total c_j / c_last) - floor(total c_(j-1) / c_last), so the steps add up to `total`."""
    last = cumulative[-1]
    running = [total * c // last for c in cumulative]
    return [running[0], *(b - a for a, b in itertools.pairwise(running))]


def pass_row_span(work: LayerWork, plan: LayerPlan, index: int) -> tuple[int, int]:
    """Rows [row0, row1) the pass at `index` (k-block-major plan order) streams through: its group's rows,
    or a single row for a strip (a strip is one item)."""
    group = plan.groups[index % len(plan.groups)]
    if group.segment0 != 0 or group.segment1 != work.segments_per_row:
        return group.row0, group.row0 + 1
    return group.row0, group.row1


@dataclass(frozen=True)
class RowBytes:
    """The DRAM bytes of a streamed pass's rows, in row order: they add up to the pass's."""

    read_bytes: list[int]
    write_bytes: list[int]


def row_bytes(
    work: LayerWork, span: tuple[int, int], weight: int, inputs: int, writes: int, inputs_by_row: bool
) -> RowBytes:
    """The bytes a pass of rows `span` moves with each row: its `weight` bytes with row 0; its `inputs` by the
    input rows each row adds (`inputs_by_row`) or all with row 0; its `writes` by the output rows of each."""
    row0, row1 = span
    ends = range(row0 + 1, row1 + 1)
    if inputs_by_row:
        read = proportional_steps(inputs, [_length(input_rows(work, row0, end)) for end in ends])
    else:
        read = [inputs] + [0] * (row1 - row0 - 1)
    read[0] += weight
    return RowBytes(read, proportional_steps(writes, [output_rows(work, row0, end) for end in ends]))


def run_timing(
    work: LayerWork,
    plan: LayerPlan,
    moved: PassBytes,
    run: tuple[int, int],
    arch: Arch,
    compute: IntArray,
    input_transform: IntArray,
    output_transform: IntArray,
) -> PassTiming:
    """The pipeline items of the passes [first, end) of `moved` (in run order; `compute` and the transform
    times in the same order): whole passes, the first and the last streamed by rows (module docstring)."""
    first, end = run
    bandwidth = arch.memory.dram_bandwidth_bytes_per_cycle
    spans = {p: pass_row_span(work, plan, int(moved.order[p])) for p in (first, end - 1)}
    pass_units = math.lcm(*(_length(span) for span in spans.values()))
    # every pass whole first (one array operation per block), then the streamed passes' rows spliced in
    run_passes = slice(first, end)
    columns: list[list[int]] = [  # reads, 3 stages, writes, units
        ceil_div(moved.read_weight_bytes[run_passes] + moved.read_input_bytes[run_passes], bandwidth).tolist(),
        input_transform[run_passes].tolist(),
        compute[run_passes].tolist(),
        output_transform[run_passes].tolist(),
        ceil_div(moved.write_bytes[run_passes], bandwidth).tolist(),
        [pass_units] * (end - first),
    ]
    for position in sorted(spans, reverse=True):  # the last pass first: splicing it leaves the first in place
        span = spans[position]
        rows = _length(span)
        if rows == 1:
            continue
        moves = row_bytes(
            work,
            span,
            int(moved.read_weight_bytes[position]),
            int(moved.read_input_bytes[position]),
            int(moved.write_bytes[position]),
            inputs_by_row=position == first,
        )
        it, ot = _row_transform_cycles(work, plan, int(moved.order[position]), arch)
        items = (
            [ceil_div(b, bandwidth) for b in moves.read_bytes],
            [it] * rows,
            proportional_steps(int(compute[position]), list(range(1, rows + 1))),
            [ot] * rows,
            [ceil_div(b, bandwidth) for b in moves.write_bytes],
            [pass_units // rows] * rows,
        )
        at = position - first
        for column, values in zip(columns, items, strict=True):
            column[at : at + 1] = values
    reads, its, pes, ots, written, units = columns
    return PassTiming(
        read_cycles=reads,
        input_transform_cycles=its,
        compute_cycles=pes,
        output_transform_cycles=ots,
        write_cycles=written,
        has_transforms=work.domain == "winograd",
        item_units=units,
        pass_units=pass_units,
    )


def _row_transform_cycles(work: LayerWork, plan: LayerPlan, index: int, arch: Arch) -> tuple[int, int]:
    """Input and output transform cycles of one row of the pass at `index` (0 and 0 when spatial)."""
    if work.domain != "winograd":
        return 0, 0
    columns = plan.groups[index % len(plan.groups)].column_count(work)
    k0, k1 = plan.kblocks[index // len(plan.groups)]
    return (
        ceil_div(work.in_channels * columns, arch.input_transform.tiles_per_cycle_total),
        ceil_div((k1 - k0) * columns, arch.output_transform.tiles_per_cycle_total),
    )


def _length(span: tuple[int, int]) -> int:
    """Length of [start, end)."""
    return span[1] - span[0]
