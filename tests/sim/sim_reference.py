"""A deliberately simple per-cycle reference model of one layer, written independently of `winosim.sim`.

It shares only the tiling decision (`plan_layer`: which k-blocks and row groups) with the event model, and
recomputes everything else the slow, obvious way:
- per-unit multiplies (units: one output channel of a pass, or a segment of `SEGMENT_COLUMNS` columns of a
  row) by brute force from the raw masks (explicit im2col for spatial layers), with the
  zero handling applied by replacing a skipped operand's mask by itself and every other by ones;
- the PE array cycle by cycle: every cycle, free PEs take units (static: only their own, j mod P; dynamic:
  the next unit goes to the lowest-numbered free PE), then every busy PE does one cycle of work;
- the pipeline cycle by cycle: blocks start a pass when its input is there and an output slot is free
  (repeating until nothing changes within the cycle), then the DRAM channel, if idle, takes the pending
  write before the pending read, then every busy block and the channel do one cycle of work; the first
  and the last pass of each run go through it as one item per row (`items`, written from the definition in
  docs/simulator.md, not from `winosim.sim.streaming`), each taking 1/R of a pass's room in the buffers,
  which hold two whole passes.
Storage is dense (the tests that use this model set dense formats). For small layers only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from winosim.arch import Arch
from winosim.sim.plan import plan_layer
from winosim.sim.residency import LayerMemory
from winosim.trace import Trace
from winosim.workload import SEGMENT_COLUMNS, lower_layer


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _operands(trace: Trace, index: int, method: str, variant_name: str | None):
    """(weights, activations, domain) as bool arrays in the multiply domain; dense methods are all ones."""
    layer = trace.layers[index]
    winograd = method in ("dense_winograd", "native_winograd", "winograd_relu") and layer.kind == "winograd"
    if variant_name is None:
        n, m = trace.images, trace.winograd_m
        if winograd:
            th, tw = _cdiv(layer.out_height, m), _cdiv(layer.out_width, m)
            p = (m + 2) ** 2
            return (
                np.ones((layer.out_channels, layer.in_channels, p), bool),
                np.ones((n, layer.in_channels, th, tw, p), bool),
                "winograd",
            )
        return (
            np.ones((layer.out_channels, layer.in_channels, layer.kernel, layer.kernel), bool),
            np.ones((n, layer.in_channels, layer.in_height, layer.in_width), bool),
            "spatial",
        )
    masks = trace.variant(variant_name).masks[index]
    return masks.weight, masks.activation, ("winograd" if winograd else "spatial")


def _im2col(act: np.ndarray, kernel: int, stride: int, padding: int, out_h: int, out_w: int) -> np.ndarray:
    """(N, C, H, W) -> (N, OH, OW, C, R, S), zero padding included (as False)."""
    n, c, _, _ = act.shape
    padded = np.pad(act, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.zeros((n, out_h, out_w, c, kernel, kernel), bool)
    for oy in range(out_h):
        for ox in range(out_w):
            cols[:, oy, ox] = padded[:, :, oy * stride : oy * stride + kernel, ox * stride : ox * stride + kernel]
    return cols


def unit_cycles_reference(trace: Trace, index: int, method: str, variant: str | None, arch: Arch):
    """Per pass (k-block-major), the list of its units' cycles, and the plan."""
    pe = arch.pe_array
    work = lower_layer(trace, index, method, None if variant is None else trace.variant(variant))
    plan = plan_layer(work, arch)
    layer = trace.layers[index]
    weight, act, domain = _operands(trace, index, method, variant)
    dense = variant is None
    skip_w = pe.weight_zeros == "skip" and not dense
    skip_a = pe.activation_zeros == "skip" and not dense
    if domain == "spatial":
        act = _im2col(act, layer.kernel, layer.stride, layer.padding, layer.out_height, layer.out_width)
        # act: (N, rows=OH, cols=OW, C, R, S); weight: (K, C, R, S)
        weight = weight.reshape(layer.out_channels, -1)
        act = act.reshape(*act.shape[:3], -1)
    else:
        # act: (N, C, TH, TW, P) -> (N, TH, TW, C*P); weight (K, C*P)
        act = act.transpose(0, 2, 3, 1, 4).reshape(*act.shape[:1], act.shape[2], act.shape[3], -1)
        weight = weight.reshape(layer.out_channels, -1)
    w_eff = weight if skip_w else np.ones_like(weight)
    a_eff = act if skip_a else np.ones_like(act)
    cartesian = pe.pe_kind == "cartesian" and domain == "winograd"
    multipliers = pe.multipliers_per_pe
    passes: list[list[int]] = []
    for k0, k1 in plan.kblocks:
        for group in plan.groups:
            n, r0, r1 = group.image, group.row0, group.row1
            c_lo = group.segment0 * SEGMENT_COLUMNS
            c_hi = min(group.segment1 * SEGMENT_COLUMNS, a_eff.shape[2])
            units: list[int] = []
            if pe.partition == "output_channels":
                for k in range(k0, k1):
                    issued = int((w_eff[k][None, None, :] & a_eff[n, r0:r1, c_lo:c_hi]).sum())
                    units.append(_cdiv(issued, multipliers))
            else:
                for row in range(r0, r1):
                    for c0 in range(c_lo, c_hi, SEGMENT_COLUMNS):
                        segment = a_eff[n, row, c0 : min(c0 + SEGMENT_COLUMNS, c_hi)]  # (columns, Q)
                        if cartesian:
                            f_q = w_eff[k0:k1].sum(axis=0)
                            i_q = segment.sum(axis=0)
                            cycles = sum(
                                _cdiv(int(f), pe.cartesian_weights) * _cdiv(int(i), pe.cartesian_activations)
                                for f, i in zip(f_q, i_q, strict=True)
                            )
                            units.append(int(cycles))
                        else:
                            issued = int((w_eff[k0:k1][:, None, :] & segment[None, :, :]).sum())
                            units.append(_cdiv(issued, multipliers))
            passes.append(units)
    return passes, plan, work


def makespan_reference(units: list[int], pe_count: int, dynamic: bool) -> int:
    """Run one pass's units on the PEs cycle by cycle; return the cycles until the last one finishes."""
    remaining = [0] * pe_count
    own = [[c for j, c in enumerate(units) if j % pe_count == p] for p in range(pe_count)]
    shared = list(units)
    cycle = 0
    while True:
        for p in range(pe_count):  # free PEs take work, lowest index first; a zero-cycle unit ends at once
            queue = shared if dynamic else own[p]
            while remaining[p] == 0 and queue:
                remaining[p] = queue.pop(0)
        if not any(remaining):
            return cycle
        remaining = [max(r - 1, 0) for r in remaining]
        cycle += 1


@dataclass
class _Block:
    name: str
    service: list[int]
    source: int | None
    sink: int | None
    dram: str | None  # "read" / "write" / None
    index: int = 0
    remaining: int = 0
    state: str = "idle"  # idle | requesting | busy | done
    busy_cycles: int = 0


@dataclass
class ReferenceResult:
    total_cycles: int
    compute_cycles: int
    imbalance_idle_cycles: int
    transform_stall_cycles: int
    dram_stall_cycles: int
    busy: dict[str, int]
    makespans: list[int]


def simulate_layer_reference(
    trace: Trace,
    index: int,
    method: str,
    variant: str | None,
    arch: Arch,
    memory: LayerMemory | None = None,
    prefetched: int = 0,
) -> ReferenceResult:
    """Total cycles and their attribution for one layer, cycle by cycle.

    With `memory` (what the network decided, `winosim.sim.residency`): of every pass's input and output
    bytes the kept fraction of its image moves through the buffer, not DRAM; in image order the passes run
    image by image (each image's passes k-block by k-block, as a separate run of the pipeline) and, with
    several weight fetches, every image's first group of a k-block fetches its weights; `prefetched` bytes
    come off the first weight fetch of each run, in order."""
    pe = arch.pe_array
    passes, plan, work = unit_cycles_reference(trace, index, method, variant, arch)
    makespans = [makespan_reference(u, pe.pe_count, pe.assignment == "dynamic") for u in passes]
    layer = trace.layers[index]
    wb = arch.data_width_bytes
    bw = arch.memory.dram_bandwidth_bytes_per_cycle
    winograd = work.domain == "winograd"
    m = trace.winograd_m
    reads, writes, its, ots, images, blocks_of, rows, row_shape = [], [], [], [], [], [], [], []
    kept_in = memory.input_kept if memory is not None else None
    kept_out = memory.output_kept if memory is not None else None
    refetch = memory is not None and memory.weight_fetches > 1

    def span(first: int, end: int, size: int) -> tuple[int, int]:  # input rows or columns read, halo included
        if winograd:
            return max(m * first - 1, 0), min(m * (end - 1) - 1 + m + 2, size)
        lo = first * layer.stride - layer.padding
        return max(lo, 0), min((end - 1) * layer.stride - layer.padding + layer.kernel, size)

    for b, (k0, k1) in enumerate(plan.kblocks):
        for g, group in enumerate(plan.groups):
            r0, r1 = group.row0, group.row1
            c0 = group.segment0 * SEGMENT_COLUMNS
            c1 = min(group.segment1 * SEGMENT_COLUMNS, work.columns_per_row)
            kb = k1 - k0
            first_of_image = g == 0 or plan.groups[g - 1].image != group.image
            fetch = g == 0 or not plan.weights_resident or (refetch and first_of_image)
            weights = kb * work.q * wb if fetch else 0
            (h0, h1), (w0, w1) = span(r0, r1, layer.in_height), span(c0, c1, layer.in_width)
            if winograd:
                out_rows = min(m * r1, layer.out_height) - m * r0
                out_cols = min(m * c1, layer.out_width) - m * c0
            else:
                out_rows, out_cols = r1 - r0, c1 - c0
            inputs = layer.in_channels * (h1 - h0) * (w1 - w0) * wb if (b == 0 or not plan.input_resident) else 0
            outputs = kb * out_rows * out_cols * wb
            if kept_in is not None and kept_out is not None:
                f_in, f_out = kept_in[group.image], kept_out[group.image]
                inputs -= inputs * f_in.numerator // f_in.denominator
                outputs -= outputs * f_out.numerator // f_out.denominator
            reads.append([weights, inputs])
            writes.append(outputs)
            whole = group.segment0 == 0 and group.segment1 == work.segments_per_row
            rows.append((r0, r1 if whole else r0 + 1))
            row_shape.append((kb, c1 - c0))
            images.append(group.image)
            blocks_of.append(b)
            tiles = (r1 - r0) * (c1 - c0)
            its.append(
                _cdiv(layer.in_channels * tiles, arch.input_transform.count * arch.input_transform.tiles_per_cycle)
            )
            ots.append(_cdiv(kb * tiles, arch.output_transform.count * arch.output_transform.tiles_per_cycle))

    order = list(range(len(makespans)))
    if memory is not None and memory.image_order:
        order.sort(key=lambda p: (images[p], blocks_of[p], p))
    runs: list[list[int]] = []
    for p in order:
        if not runs or (memory is not None and memory.image_order and images[runs[-1][-1]] != images[p]):
            runs.append([])
        runs[-1].append(p)
    left = prefetched
    for run in runs:
        taken = min(left, reads[run[0]][0])
        reads[run[0]][0] -= taken
        left -= taken

    def map_rows_out(r0: int, r1: int) -> int:
        return min(m * r1, layer.out_height) - m * r0 if winograd else r1 - r0

    def items(p: int, streamed: bool, first: bool) -> list[list[int]]:
        """The pipeline items of pass p: itself, or (streamed) one per row, each a transfer of its own: row j
        reads the weights (j = 0) and, for the run's first pass, its share of the input bytes, by input rows
        it adds (any other pass reads all its inputs with row 0); transforms its own tiles; computes 1/R of
        the pass's makespan; writes its share of the output bytes, by output rows."""
        weights, inputs = reads[p]
        r0, r1 = rows[p]
        count = r1 - r0
        if not streamed or count == 1:
            return [[_cdiv(weights + inputs, bw)], [its[p]], [makespans[p]], [ots[p]], [_cdiv(writes[p], bw)]]
        h0, h_all = span(r0, r1, layer.in_height)
        kb, columns = row_shape[p]
        it_row = _cdiv(layer.in_channels * columns, arch.input_transform.count * arch.input_transform.tiles_per_cycle)
        ot_row = _cdiv(kb * columns, arch.output_transform.count * arch.output_transform.tiles_per_cycle)
        result: list[list[int]] = [[], [], [], [], []]
        read_before = write_before = 0
        for j in range(count):
            _, h_end = span(r0, r0 + j + 1, layer.in_height)
            read_now = weights + (inputs * (h_end - h0) // (h_all - h0) if first else inputs)
            write_now = writes[p] * map_rows_out(r0, r0 + j + 1) // map_rows_out(r0, r1)
            result[0].append(_cdiv(read_now - read_before, bw))
            result[4].append(_cdiv(write_now - write_before, bw))
            read_before, write_before = read_now, write_now
            result[1].append(it_row if winograd else 0)
            result[2].append(makespans[p] * (j + 1) // count - makespans[p] * j // count)
            result[3].append(ot_row if winograd else 0)
        return result

    total = _Counts()
    for run in runs:
        columns: list[list[int]] = [[], [], [], [], []]
        ends = {p: rows[p][1] - rows[p][0] for p in (run[0], run[-1])}
        whole = math.lcm(*ends.values())  # a whole pass's room; a streamed row takes 1/R of it
        units: list[int] = []
        for p in run:
            parts = items(p, p in ends, p == run[0])
            units += [whole // len(parts[0])] * len(parts[0])
            for column, values in zip(columns, parts, strict=True):
                column.extend(values)
        reads_, its_, pes_, ots_, writes_ = columns
        total.add(_run_pipeline(reads_, its_, pes_, ots_, writes_, winograd, units, 2 * whole))
    compute = _cdiv(sum(sum(u) for u in passes), pe.pe_count)  # a perfectly balanced array's cycles
    return ReferenceResult(
        total.cycle, compute, total.pe_cycles - compute, total.transform, total.dram_stall, total.busy or {}, makespans
    )


@dataclass
class _Counts:
    cycle: int = 0
    pe_cycles: int = 0
    transform: int = 0
    dram_stall: int = 0
    busy: dict[str, int] | None = None

    def add(self, other: _Counts) -> None:
        self.cycle += other.cycle
        self.pe_cycles += other.pe_cycles
        self.transform += other.transform
        self.dram_stall += other.dram_stall
        busy = dict(self.busy or {})
        for name, value in (other.busy or {}).items():
            busy[name] = busy.get(name, 0) + value
        self.busy = busy


def _run_pipeline(
    reads: list[int],
    its: list[int],
    makespans: list[int],
    ots: list[int],
    writes: list[int],
    winograd: bool,
    units: list[int],
    capacity: int,
) -> _Counts:
    """One run of items through the pipeline, cycle by cycle; item i takes units[i] of a buffer's room."""
    if winograd:
        blocks = [
            _Block("loader", reads, None, 0, "read"),
            _Block("input_transform", its, 0, 1, None),
            _Block("pe_array", makespans, 1, 2, None),
            _Block("output_transform", ots, 2, 3, None),
            _Block("writer", writes, 3, None, "write"),
        ]
        buffers = 4
    else:
        blocks = [
            _Block("loader", reads, None, 0, "read"),
            _Block("pe_array", makespans, 0, 1, None),
            _Block("writer", writes, 1, None, "write"),
        ]
        buffers = 2
    free = [capacity] * buffers
    ready = [0] * buffers
    count = len(makespans)
    by_name = {blk.name: blk for blk in blocks}
    pe_block = by_name["pe_array"]
    dram_busy: _Block | None = None
    dram_remaining = 0
    pe_cycles = transform = dram_stall = 0
    cycle = 0

    def finish(blk: _Block) -> None:
        if blk.sink is not None:
            ready[blk.sink] += 1
        if blk.source is not None:
            free[blk.source] += units[blk.index]
        blk.index += 1
        blk.state = "done" if blk.index == count else "idle"

    while True:
        changed = True
        while changed:  # everything that can happen in this cycle without time passing
            changed = False
            for blk in blocks:
                if blk.state != "idle":
                    continue
                has_input = blk.source is None or ready[blk.source] > 0
                has_slot = blk.sink is None or free[blk.sink] >= units[blk.index]
                if not (has_input and has_slot):
                    continue
                if blk.source is not None:
                    ready[blk.source] -= 1
                if blk.sink is not None:
                    free[blk.sink] -= units[blk.index]
                changed = True
                service = blk.service[blk.index]
                if service == 0:
                    finish(blk)
                elif blk.dram is not None:
                    blk.state = "requesting"
                    blk.remaining = service
                else:
                    blk.state = "busy"
                    blk.remaining = service
        if dram_busy is None:
            waiting = [b for b in blocks if b.state == "requesting"]
            if waiting:
                chosen = min(waiting, key=lambda b: 0 if b.dram == "write" else 1)
                chosen.state = "busy"
                dram_busy, dram_remaining = chosen, chosen.remaining
        if all(b.state == "done" for b in blocks):
            break
        # attribute this cycle from the PE array's point of view
        it_busy = winograd and by_name["input_transform"].state == "busy"
        ot_busy = winograd and by_name["output_transform"].state == "busy"
        if pe_block.state == "busy":
            pe_cycles += 1
        elif pe_block.state == "idle" and pe_block.source is not None and ready[pe_block.source] == 0:
            if it_busy:
                transform += 1
            else:
                dram_stall += 1
        elif ot_busy:
            transform += 1
        else:
            dram_stall += 1
        # one cycle of work
        for blk in blocks:
            if blk.state == "busy":
                blk.busy_cycles += 1
                blk.remaining -= 1
        if dram_busy is not None:
            dram_remaining -= 1
        cycle += 1
        for blk in blocks:
            if blk.state == "busy" and blk.remaining == 0:
                if blk.dram is not None:
                    dram_busy = None
                finish(blk)
    busy = {blk.name: blk.busy_cycles for blk in blocks}
    return _Counts(cycle, pe_cycles, transform, dram_stall, busy)
