"""The PE array: how long each pass keeps the multipliers busy, from the per-unit work and the assignment.

Units of work (docs/simulator.md):
- `output_channels` partition: a unit is one output channel of one pass (all its group's columns, all
  input channels); the pass's units are the k-block's channels in order.
- `tiles` partition: a unit is one segment (`SEGMENT_COLUMNS` consecutive output tiles or pixels of a row)
  of the pass's group, for all the k-block's channels; the pass's units are its segments in order.

A PE works on one unit at a time. A scalar PE with M multipliers finishes a unit that issues w multiplies in
ceil(w / M) cycles (a unit with nothing to issue takes no cycle). A Cartesian-product PE (Winograd domain,
`tiles` partition) takes, for every (input channel, position) q, ceil(f_q / F) * ceil(i_q / I) cycles, where
f_q are the k-block's weights and i_q the unit's activations at q that it issues. What is issued depends on
the zero handling: a `skip`ped operand issues only its non-zeros; `none` and `gate` issue every element.

`static` assignment gives unit j of a pass to PE j mod P; `dynamic` gives each unit, in order, to the PE
that becomes free first (the lowest-numbered one on a tie): greedy list scheduling. A pass lasts until its
last PE finishes (its makespan); the PEs that finish earlier idle: load imbalance.

The units' cycles do not depend on the PE count or the assignment: `unit_cycles` keeps them in the work's
memo, keyed by the parameters they do depend on (the `UNITS` stage), so a sweep over PE counts computes them
once. The array also reports its own accesses (`pe_array_stats`): multiplies, accumulations, register-file
and accumulator bytes.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from winosim.arch import Arch, PEArray
from winosim.integers import ceil_div
from winosim.memo import MemoKey, Stage
from winosim.sim.plan import LayerPlan
from winosim.workload import LayerWork

IntArray = NDArray[np.int64]

ACCUMULATOR_BITS = 32
"""Width of a partial sum in the accumulators."""


@dataclass(frozen=True, eq=False)
class PassCompute:
    """Per pass (k-block-major order): `makespan_cycles` of the array and `work_cycles`, the sum of its
    units' cycles over all PEs (PE-cycles spent multiplying)."""

    makespan_cycles: IntArray
    work_cycles: IntArray


def zero_handling(work: LayerWork, pe: PEArray) -> tuple[str, str]:
    """(weights, activations) zero handling in effect: dense baselines run with skipping off."""
    return ("none", "none") if work.dense else (pe.weight_zeros, pe.activation_zeros)


@dataclass(frozen=True)
class Multiplies:
    """A layer's multiplies in Sparseloop's vocabulary: algorithmic = actual + gated + skipped."""

    algorithmic: int
    actual: int
    gated: int
    skipped: int


def multiply_counts(work: LayerWork, pe: PEArray) -> Multiplies:
    """The multiplies of `work` under the array's zero handling (from the lowering's pair counts)."""
    weights_mode, acts_mode = zero_handling(work, pe)
    pairs = work.pair_counts()
    algorithmic = pairs[(False, False)]
    issued = pairs[(weights_mode == "skip", acts_mode == "skip")]
    actual = pairs[(weights_mode != "none", acts_mode != "none")]
    return Multiplies(algorithmic, actual, issued - actual, algorithmic - issued)


def pe_array_stats(work: LayerWork, arch: Arch, total_cycles: int) -> dict[str, int]:
    """The array's counts over a layer of `total_cycles` cycles, as `LayerStats` fields: multiplier-cycles,
    multiplies, accumulation adds and the register-file and accumulator accesses (each actual multiply reads
    two operands and reads and writes one partial sum)."""
    pe = arch.pe_array
    multiplies = multiply_counts(work, pe)
    return {
        "multiplier_cycles": pe.multipliers * total_cycles,
        "multiplies_algorithmic": multiplies.algorithmic,
        "multiplies_actual": multiplies.actual,
        "multiplies_gated": multiplies.gated,
        "multiplies_skipped": multiplies.skipped,
        "accumulation_adds": multiplies.actual,
        "rf_access_bytes": 2 * arch.data_width_bytes * multiplies.actual,
        "accumulator_access_bytes": 2 * (ACCUMULATOR_BITS // 8) * multiplies.actual,
    }


def count_product(left: NDArray[np.generic], right: NDArray[np.generic], bound: int) -> IntArray:
    """Exact integer matrix product of non-negative counts: float32 when every result is below 2**24 (`bound`
    is an upper bound on the results), float64 (exact below 2**53) otherwise.

    numpy's own einsum loop, not BLAS: a multi-threaded BLAS spins its threads after every call, which on a
    busy machine costs more than the products themselves (measured in benchmarks/bench_sim.py).
    """
    dtype = np.float32 if bound < 2**24 else np.float64
    product = np.einsum("ij,jk->ik", np.asarray(left, dtype=dtype), np.asarray(right, dtype=dtype), optimize=False)
    return np.rint(product).astype(np.int64)


def _range_sums(values: NDArray[np.generic], starts: IntArray, dtype: type[np.signedinteger]) -> IntArray:
    """Sums of the rows [starts[i], starts[i + 1]) of `values` (the last range to the end): what
    `np.add.reduceat(values, starts, axis=0, dtype=dtype)` gives for increasing `starts`, several times faster
    (reduceat casts element by element)."""
    ends = [*starts[1:].tolist(), len(values)]
    sums = np.empty((len(starts), values.shape[1]), dtype=dtype)
    for i, (start, end) in enumerate(zip(starts.tolist(), ends, strict=True)):
        values[start:end].sum(axis=0, dtype=dtype, out=sums[i])
    return sums


def _group_segments(work: LayerWork, plan: LayerPlan) -> tuple[IntArray, IntArray]:
    """First segment (row-major over the layer) and segment count of every group."""
    starts = np.array([g.first_segment(work) for g in plan.groups], dtype=np.int64)
    counts = np.array([g.segment_count(work) for g in plan.groups], dtype=np.int64)
    return starts, counts


UNITS = Stage(
    "units",
    reads=(
        "pe_array.partition",
        "pe_array.weight_zeros",
        "pe_array.activation_zeros",
        "pe_array.multipliers_per_pe",
        "pe_array.pe_kind",
        "pe_array.cartesian_weights",
        "pe_array.cartesian_activations",
    ),
    reads_when={
        "pe_array.cartesian_weights": ("pe_array.pe_kind", "cartesian"),
        "pe_array.cartesian_activations": ("pe_array.pe_kind", "cartesian"),
    },
)
"""What the units' cycles read of the architecture (besides the plan's tiling: the groups with the
`output_channels` partition, the k-blocks with `tiles`)."""

PASSES = Stage("passes", reads=("pe_array.partition",))
"""The units arranged into passes (besides the units and the plan's k-blocks and groups)."""

MAKESPANS = Stage("makespans", reads=("pe_array.pe_count", "pe_array.assignment"))
"""The passes' makespans (besides the passes)."""


def _units_key(plan: LayerPlan, arch: Arch) -> MemoKey:
    tiling: tuple[int, int] | tuple[tuple[int, int], ...]
    by_groups = arch.pe_array.partition == "output_channels"
    tiling = (plan.group_rows, plan.group_segments) if by_groups else plan.kblocks
    return UNITS.key(arch, tiling)


def unit_cycles(work: LayerWork, plan: LayerPlan, arch: Arch) -> IntArray:
    """Cycles of every unit: (K, groups) for `output_channels`, (segments, k-blocks) for `tiles` (read-only).

    Kept in `work.memo` under the `UNITS` stage's key."""
    if not work.dense and work.act_sq is None:
        raise ValueError(f"layer {work.layer.name!r} ({work.method}) was lowered without its segment counts")
    return work.memo.get(
        _units_key(plan, arch), lambda: _read_only(_unit_cycles(work, plan, UNITS.view(arch).pe_array))
    )


def _read_only(values: IntArray) -> IntArray:
    values.setflags(write=False)
    return values


def _unit_cycles(work: LayerWork, plan: LayerPlan, pe: PEArray) -> IntArray:
    weights_mode, acts_mode = zero_handling(work, pe)
    skip_w, skip_a = weights_mode == "skip", acts_mode == "skip"
    q, cpr = work.q, work.columns_per_row
    k_total = work.out_channels
    if pe.partition == "output_channels":
        source: NDArray[np.int32] | NDArray[np.uint8] | None
        if plan.whole_rows:
            starts = np.array([g.image * work.rows_per_image + g.row0 for g in plan.groups], dtype=np.int64)
            columns = np.array([g.row1 - g.row0 for g in plan.groups], dtype=np.int64) * cpr
            source = work.act_rq  # (rows, Q): sums of whole rows
        else:
            starts, _ = _group_segments(work, plan)
            columns = np.array([g.column_count(work) for g in plan.groups], dtype=np.int64)
            source = work.act_sq  # (segments, Q): a strip of one row per group
        if skip_a:
            assert source is not None
            act_gq = _range_sums(source, starts, np.int32)  # (G, Q)
        if skip_w and skip_a:
            assert work.weight_kq is not None
            issued = count_product(work.weight_kq, act_gq.T, q * int(columns.max()))
        elif skip_w:
            assert work.weight_nnz_k is not None
            issued = np.outer(work.weight_nnz_k, columns)
        elif skip_a:
            issued = np.broadcast_to(act_gq.sum(axis=1, dtype=np.int64), (k_total, len(starts)))
        else:
            issued = np.broadcast_to(q * columns, (k_total, len(starts)))
        return ceil_div(issued, pe.multipliers_per_pe)

    kstarts = np.array([k0 for k0, _ in plan.kblocks], dtype=np.int64)
    ksizes = np.array([k1 - k0 for k0, k1 in plan.kblocks], dtype=np.int64)
    widths = np.tile(work.segment_widths(), work.rows)  # columns of every segment, (segments,)
    if skip_w:
        assert work.weight_kq is not None
        weight_bq = _range_sums(work.weight_kq.view(np.uint8), kstarts, np.int64)  # (B, Q)
    act_sq = work.act_sq
    if pe.pe_kind == "cartesian" and work.domain == "winograd":
        f, i = pe.cartesian_weights, pe.cartesian_activations
        w_steps = ceil_div(weight_bq, f) if skip_w else None  # (B, Q)
        if skip_a:
            assert act_sq is not None
            a_steps = ceil_div(act_sq.astype(np.int64), i)  # (S, Q)
            if w_steps is not None:
                return count_product(a_steps, w_steps.T, q * int(a_steps.max(initial=0)) * int(w_steps.max(initial=0)))
            return np.outer(a_steps.sum(axis=1, dtype=np.int64), ceil_div(ksizes, f))
        a_const = ceil_div(widths, i)  # (S,)
        if w_steps is not None:
            return np.outer(a_const, w_steps.sum(axis=1))
        return np.outer(a_const, q * ceil_div(ksizes, f))
    if skip_w and skip_a:
        assert act_sq is not None
        issued = count_product(act_sq, weight_bq.T, q * int(widths.max()) * int(ksizes.max()))
    elif skip_w:
        issued = np.outer(widths, weight_bq.sum(axis=1))
    elif skip_a:
        assert act_sq is not None
        issued = np.outer(act_sq.sum(axis=1, dtype=np.int64), ksizes)
    else:
        issued = np.outer(widths, q * ksizes)
    return ceil_div(issued, pe.multipliers_per_pe)


def greedy_makespan(units: list[int], pe_count: int) -> int:
    """Makespan of greedy list scheduling: each unit, in order, to the PE free first (lowest index on ties)."""
    if len(units) <= pe_count:
        return max(units, default=0)
    # A unit of 0 cycles changes no PE's load: leave those out. While some PE has no load, the next unit goes
    # to the lowest-numbered such PE, so the first P units go to PEs 0..P-1 in order.
    positive = [cycles for cycles in units if cycles]
    if len(positive) <= pe_count:
        return max(positive, default=0)
    # one integer per PE, load * P + index: the heap's minimum is the least-loaded, lowest-numbered PE
    heap = [cycles * pe_count + pe for pe, cycles in enumerate(positive[:pe_count])]
    heapq.heapify(heap)
    for cycles in positive[pe_count:]:
        heapq.heapreplace(heap, heap[0] + cycles * pe_count)
    return max(heap) // pe_count


def _makespans(units_by_pass: IntArray, pe: PEArray, uniform: NDArray[np.bool_] | None = None) -> IntArray:
    """Makespans of passes whose units (in order) are the rows of `units_by_pass` (passes, units).

    `uniform` (optional) marks the rows whose units are all equal: greedy list scheduling of n equal units
    is round-robin, with makespan ceil(n / P) units, so those rows need no heap."""
    passes, count = units_by_pass.shape
    if count <= pe.pe_count:
        return units_by_pass.max(axis=1, initial=0)
    if pe.assignment == "static":
        padded = np.zeros((passes, ceil_div(count, pe.pe_count) * pe.pe_count), dtype=np.int64)
        padded[:, :count] = units_by_pass
        return padded.reshape(passes, -1, pe.pe_count).sum(axis=1).max(axis=1)
    if uniform is None:
        uniform = np.zeros(passes, dtype=bool)
    rounds = ceil_div(count, pe.pe_count)
    return np.array(
        [
            rounds * int(row[0]) if equal else greedy_makespan(row.tolist(), pe.pe_count)
            for row, equal in zip(units_by_pass, uniform.tolist(), strict=True)
        ],
        dtype=np.int64,
    )


@dataclass(frozen=True, eq=False)
class _PassUnits:
    """The units of every pass, k-block by k-block: `blocks[b]` is (groups, units) in assignment order,
    `uniform[b]` marks its rows whose units are all equal, `work_cycles` is the PE-cycles of every pass.
    Independent of the PE count and the assignment (read-only arrays, kept in the work's memo)."""

    blocks: tuple[IntArray, ...]
    uniform: tuple[NDArray[np.bool_], ...]
    work_cycles: IntArray


def _pass_units(work: LayerWork, plan: LayerPlan, pe: PEArray, cycles: IntArray) -> _PassUnits:
    blocks: list[IntArray] = []
    if pe.partition == "output_channels":
        for k0, k1 in plan.kblocks:
            blocks.append(np.ascontiguousarray(cycles[k0:k1, :].T))  # (G, units)
    else:
        starts, counts = _group_segments(work, plan)  # a group's units: its segments, in row-major order
        width = int(counts.max())
        offsets = np.arange(width, dtype=np.int64)
        valid = offsets[None, :] < counts[:, None]
        index = np.where(valid, starts[:, None] + offsets[None, :], 0)
        for b in range(len(plan.kblocks)):
            blocks.append(np.where(valid, cycles[index, b], 0))  # (G, units)
    uniform = [block.min(axis=1) == block.max(axis=1) if block.size else np.ones(len(block), bool) for block in blocks]
    work_cycles = np.concatenate([block.sum(axis=1) for block in blocks])
    for array in (*blocks, *uniform, work_cycles):
        array.setflags(write=False)
    return _PassUnits(tuple(blocks), tuple(uniform), work_cycles)


def pass_compute(work: LayerWork, plan: LayerPlan, arch: Arch, cycles: IntArray | None = None) -> PassCompute:
    """Makespan and PE-cycles of every pass (k-block-major).

    Without `cycles`, the units are `unit_cycles(work, plan, arch)`; their arrangement into passes (which
    does not depend on the PE count or the assignment) and the result (which depends on nothing else) are
    kept in the work's memo. The result's arrays are read-only."""
    if cycles is not None:
        return _pass_compute(_pass_units(work, plan, arch.pe_array, cycles), arch.pe_array)
    key = PASSES.key(arch, _units_key(plan, arch), plan.kblocks, plan.group_rows, plan.group_segments)
    units = work.memo.get(
        key, lambda: _pass_units(work, plan, PASSES.view(arch).pe_array, unit_cycles(work, plan, arch))
    )
    return work.memo.get(MAKESPANS.key(arch, key), lambda: _pass_compute(units, MAKESPANS.view(arch).pe_array))


def _pass_compute(units: _PassUnits, pe: PEArray) -> PassCompute:
    blocks = zip(units.blocks, units.uniform, strict=True)
    makespans = np.concatenate([_makespans(block, pe, uniform) for block, uniform in blocks])
    makespans.setflags(write=False)
    return PassCompute(makespans, units.work_cycles)
