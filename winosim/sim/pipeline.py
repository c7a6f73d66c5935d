"""The discrete-event model of one layer: a process per hardware block, bounded buffers, a shared DRAM.

Passes (winosim.sim.plan) flow through a pipeline of blocks, each a simpy process working on one pass at a
time, in order:

    loader --[fetched]--> input transform --[transformed]--> PE array --[accumulated]-->
        output transform --[finished]--> writer

(Spatial-domain work has no transform stages: loader --> PE array --> writer.) Every buffer between two
blocks has two slots (double buffering): a block takes a free slot of its output buffer before it starts a
pass and frees the slot of its input buffer when it has finished with the pass. The loader and the writer
move the pass's bytes through the one DRAM channel; the channel serves one transfer at a time,
ceil(bytes / bandwidth) cycles each, and when it is free it picks, among the transfers requested up to
that cycle, writes before reads (there is never more than one of each pending).

Time is in integer cycles. Each block records its busy time, the time it waited for input (starved), for
an output slot (blocked), for the DRAM channel, and its idle time after its last pass; these add up to the
layer's total cycles. The PE array's cycles are attributed (docs/simulator.md): compute (the balanced part
of the work: ceil(PE-cycles / P)), imbalance (the rest of the array's busy time), and, when the array is
not computing, waiting on a transform unit (when the transform unit it waits for is busy) or on DRAM (otherwise).

Two evaluations of the same model: `run_layer` is the simpy event model (a process per block, events per
pass and block), the definition; `solve_layer` computes the same timeline from the model's recurrences, with
no event queue, several times faster, and is what `winosim.simulate` uses by default. Their agreement,
interval by interval, is tested (tests/sim/test_golden_results.py), as is the event model's agreement with
a per-cycle reference (tests/sim/test_sim_reference.py).
"""

from __future__ import annotations

import heapq
import itertools
import operator
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy
from simpy.events import NORMAL, EventPriority

from winosim.integers import ceil_div

SETTLE_PRIORITY = EventPriority(2)
"""Event priority after simpy's URGENT (0) and NORMAL (1): runs once everything else of the cycle has."""

BUFFER_SLOTS = 2
WRITE_PRIORITY = 0
READ_PRIORITY = 1


@dataclass(frozen=True)
class PassTiming:
    """Per-pass service times of the blocks, in pass order (cycles; all of equal length). A block with 0 cycles
    for a pass hands it on at once (a spatial layer's transforms, a pass that fetches nothing)."""

    read_cycles: Sequence[int]
    input_transform_cycles: Sequence[int]
    compute_cycles: Sequence[int]
    output_transform_cycles: Sequence[int]
    write_cycles: Sequence[int]
    has_transforms: bool


@dataclass
class BlockLog:
    """What one block did (mutable while the simulation runs; read after)."""

    busy_cycles: int = 0
    starved_cycles: int = 0
    blocked_cycles: int = 0
    dram_wait_cycles: int = 0
    last_finish: int = 0
    busy_intervals: list[tuple[int, int]] = field(default_factory=list)
    starved_intervals: list[tuple[int, int]] = field(default_factory=list)
    blocked_intervals: list[tuple[int, int]] = field(default_factory=list)

    def stall_cycles(self, total_cycles: int) -> int:
        """Cycles not busy, as measured: starved + blocked + waiting for DRAM + idle after the last pass."""
        return self.starved_cycles + self.blocked_cycles + self.dram_wait_cycles + (total_cycles - self.last_finish)


@dataclass(frozen=True)
class LayerTimeline:
    """Result of one layer's run: total cycles and the logs of the blocks (busy + stall = total for each)."""

    total_cycles: int
    loader: BlockLog
    input_transform: BlockLog
    pe_array: BlockLog
    output_transform: BlockLog
    writer: BlockLog
    dram_busy_cycles: int
    dram_idle_cycles: int


def _fire_at(env: simpy.Environment, event: simpy.Event, delay: int, priority: EventPriority) -> None:
    """Trigger `event` (successfully, no value) `delay` cycles from now at `priority`."""
    event._ok = True
    event._value = None
    env.schedule(event, priority=priority, delay=delay)


class DramChannel:
    """The one DRAM channel shared by every transfer. `transfer` returns an event that fires when done.

    The arbiter is a process that sleeps while nothing is pending. A request wakes it in the same cycle; a
    read wakes it only after everything else of the cycle (settle priority), so that a write requested later
    in that cycle still goes first. The requester's event fires when its transfer ends.
    """

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.pending: list[tuple[int, int, int, simpy.Event]] = []
        self.sequence = 0
        self.wake: simpy.Event | None = None
        self.busy_cycles = 0
        self.idle_cycles = 0
        self.last_busy_end = 0
        env.process(self.run())

    def transfer(self, cycles: int, priority: int) -> simpy.Event:
        done = simpy.Event(self.env)
        heapq.heappush(self.pending, (priority, self.sequence, cycles, done))
        self.sequence += 1
        if self.wake is not None:
            wake, self.wake = self.wake, None
            _fire_at(self.env, wake, 0, NORMAL if priority == WRITE_PRIORITY else SETTLE_PRIORITY)
        return done

    def run(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        while True:
            if self.pending:
                if self.pending[0][0] != WRITE_PRIORITY:
                    settle = simpy.Event(env)
                    _fire_at(env, settle, 0, SETTLE_PRIORITY)
                    yield settle  # a write requested later in this same cycle still goes first
            else:
                self.wake = simpy.Event(env)
                yield self.wake  # fires at settle priority for a read (see `transfer`)
            _, _, cycles, done = heapq.heappop(self.pending)
            self.idle_cycles += int(env.now) - self.last_busy_end
            _fire_at(env, done, cycles, NORMAL)
            yield done
            self.busy_cycles += cycles
            self.last_busy_end = int(env.now)


class Buffer:
    """A two-slot buffer between one producer block and one consumer block.

    The producer takes a free slot before it starts a pass and hands the pass over when done; the consumer
    takes the oldest finished pass and frees its slot when done with it. `None` from `take_slot`/`take_pass`
    means no wait; otherwise the returned event fires (in this or a later cycle) when the wait is over.
    """

    def __init__(self, env: simpy.Environment, slots: int = BUFFER_SLOTS) -> None:
        self.env = env
        self.free_slots = slots
        self.ready_passes = 0
        self.slot_waiter: simpy.Event | None = None
        self.pass_waiter: simpy.Event | None = None

    def take_slot(self) -> simpy.Event | None:
        if self.free_slots:
            self.free_slots -= 1
            return None
        self.slot_waiter = simpy.Event(self.env)
        return self.slot_waiter

    def free_slot(self) -> None:
        if self.slot_waiter is not None:
            waiter, self.slot_waiter = self.slot_waiter, None
            waiter.succeed()
        else:
            self.free_slots += 1

    def take_pass(self) -> simpy.Event | None:
        if self.ready_passes:
            self.ready_passes -= 1
            return None
        self.pass_waiter = simpy.Event(self.env)
        return self.pass_waiter

    def hand_over(self) -> None:
        if self.pass_waiter is not None:
            waiter, self.pass_waiter = self.pass_waiter, None
            waiter.succeed()
        else:
            self.ready_passes += 1


def _block(
    env: simpy.Environment,
    log: BlockLog,
    passes: int,
    service: Sequence[int],
    source: Buffer | None,
    sink: Buffer | None,
    dram: DramChannel | None = None,
    dram_priority: int = 0,
) -> Generator[simpy.Event, Any, None]:
    for index in range(passes):
        if source is not None:
            wait = source.take_pass()
            if wait is not None:
                t0 = int(env.now)
                yield wait
                if int(env.now) > t0:
                    log.starved_cycles += int(env.now) - t0
                    log.starved_intervals.append((t0, int(env.now)))
        if sink is not None:
            wait = sink.take_slot()
            if wait is not None:
                t1 = int(env.now)
                yield wait
                if int(env.now) > t1:
                    log.blocked_cycles += int(env.now) - t1
                    log.blocked_intervals.append((t1, int(env.now)))
        cycles = service[index]
        if cycles:
            if dram is not None:
                t2 = int(env.now)
                yield dram.transfer(cycles, dram_priority)
                log.dram_wait_cycles += int(env.now) - t2 - cycles
                start = int(env.now) - cycles
            else:
                start = int(env.now)
                yield env.timeout(cycles)
            log.busy_cycles += cycles
            log.busy_intervals.append((start, int(env.now)))
        log.last_finish = int(env.now)
        if sink is not None:
            sink.hand_over()
        if source is not None:
            source.free_slot()


def run_layer(env: simpy.Environment, timing: PassTiming) -> LayerTimeline:
    """Simulate one layer's passes in `env` (a fresh Environment) and return its timeline."""
    passes = len(timing.compute_cycles)
    dram = DramChannel(env)
    logs = {name: BlockLog() for name in ("loader", "input_transform", "pe_array", "output_transform", "writer")}
    fetched = Buffer(env)
    accumulated = Buffer(env)
    if timing.has_transforms:
        transformed, finished = Buffer(env), Buffer(env)
        env.process(_block(env, logs["loader"], passes, timing.read_cycles, None, fetched, dram, READ_PRIORITY))
        env.process(_block(env, logs["input_transform"], passes, timing.input_transform_cycles, fetched, transformed))
        env.process(_block(env, logs["pe_array"], passes, timing.compute_cycles, transformed, accumulated))
        env.process(
            _block(env, logs["output_transform"], passes, timing.output_transform_cycles, accumulated, finished)
        )
        env.process(_block(env, logs["writer"], passes, timing.write_cycles, finished, None, dram, WRITE_PRIORITY))
    else:
        env.process(_block(env, logs["loader"], passes, timing.read_cycles, None, fetched, dram, READ_PRIORITY))
        env.process(_block(env, logs["pe_array"], passes, timing.compute_cycles, fetched, accumulated))
        env.process(_block(env, logs["writer"], passes, timing.write_cycles, accumulated, None, dram, WRITE_PRIORITY))
    env.run()
    total = int(env.now)
    dram.idle_cycles += total - dram.last_busy_end
    return LayerTimeline(
        total_cycles=total,
        loader=logs["loader"],
        input_transform=logs["input_transform"],
        pe_array=logs["pe_array"],
        output_transform=logs["output_transform"],
        writer=logs["writer"],
        dram_busy_cycles=dram.busy_cycles,
        dram_idle_cycles=dram.idle_cycles,
    )


def solve_layer(timing: PassTiming) -> LayerTimeline:
    """The timeline that `run_layer` computes, evaluated directly from the pipeline's recurrences.

    The event model is a chain of blocks with two-slot buffers, so its times follow from a recurrence. For
    block j and pass i, with f(j, i) the time the block finishes the pass:

    - it is done with pass i - 1 at a = f(j, i - 1) (0 for the first pass);
    - it has its input at b = max(a, f(j - 1, i)) (starved from a to b; the loader has no input buffer);
    - it has an output slot at c = max(b, f(j + 1, i - 2)) (blocked from b to c: the slot of pass i is the one
      pass i - 2 used, freed when the next block finishes pass i - 2; the writer has no output buffer);
    - a transform unit or the PE array finishes at f = c + service; a loader or writer with something to move
      requests the DRAM channel at c and finishes when its transfer does (a pass that moves nothing finishes
      at c, without a transfer).

    The DRAM channel serves one transfer at a time: when it is free (at `free`) and a transfer is requested,
    it decides at t = max(free, earliest request) and takes the write if it was requested by t, otherwise the
    read (the event model's settle priority). The solver advances every block as far as its inputs and
    slots allow, then lets the channel serve one transfer, and repeats. A request that cannot be computed
    yet when the channel decides depends on a transfer not yet served, which ends after t: it cannot have
    been made by t, so the other request goes first, as in the event model. Same timeline as `run_layer`, bit
    for bit (tests/sim/test_golden_results.py checks it against the event model), in a fraction of the time.
    """
    if timing.has_transforms:
        return _solve_with_transforms(timing)
    return _solve_spatial(timing)


def _length(intervals: list[tuple[int, int]]) -> int:
    """Total length of intervals [start, end)."""
    return -sum(itertools.starmap(operator.sub, intervals))


def _log(
    service: Sequence[int],
    finish: list[int],
    busy: list[tuple[int, int]],
    starved: list[tuple[int, int]],
    blocked: list[tuple[int, int]],
    dram_wait: int = 0,
) -> BlockLog:
    return BlockLog(
        busy_cycles=sum(service),
        starved_cycles=_length(starved),
        blocked_cycles=_length(blocked),
        dram_wait_cycles=dram_wait,
        last_finish=finish[-1] if finish else 0,
        busy_intervals=busy,
        starved_intervals=starved,
        blocked_intervals=blocked,
    )


def _timeline(loader: BlockLog, it: BlockLog, pe: BlockLog, ot: BlockLog, writer: BlockLog) -> LayerTimeline:
    total = max(loader.last_finish, it.last_finish, pe.last_finish, ot.last_finish, writer.last_finish)
    dram_busy = loader.busy_cycles + writer.busy_cycles
    return LayerTimeline(total, loader, it, pe, ot, writer, dram_busy, total - dram_busy)


def _solve_with_transforms(timing: PassTiming) -> LayerTimeline:
    """`solve_layer` for loader (L) -> input transform (A) -> PE array (B) -> output transform (C) -> writer
    (W). For each block: `n*` passes finished, `t*` when it was done with its previous pass, `f*` finish
    times, interval logs; `read` and `write` are the pending DRAM requests (-1: none)."""
    reads, feeds, computes = timing.read_cycles, timing.input_transform_cycles, timing.compute_cycles
    drains, writes = timing.output_transform_cycles, timing.write_cycles
    n = len(computes)
    fl, fa, fb, fc, fw = [0] * n, [0] * n, [0] * n, [0] * n, [0] * n
    nl = na = nb = nc = nw = 0
    tl = ta = tb = tc = tw = 0
    l_blocked: list[tuple[int, int]] = []
    l_busy: list[tuple[int, int]] = []
    a_starved: list[tuple[int, int]] = []
    a_blocked: list[tuple[int, int]] = []
    a_busy: list[tuple[int, int]] = []
    b_starved: list[tuple[int, int]] = []
    b_blocked: list[tuple[int, int]] = []
    b_busy: list[tuple[int, int]] = []
    c_starved: list[tuple[int, int]] = []
    c_blocked: list[tuple[int, int]] = []
    c_busy: list[tuple[int, int]] = []
    w_starved: list[tuple[int, int]] = []
    w_busy: list[tuple[int, int]] = []
    l_wait = w_wait = 0
    read = write = -1
    free = 0
    while True:
        progress = True
        while progress:
            progress = False
            if read < 0:
                while nl < n and nl < na + 2:
                    if nl >= 2:
                        t = fa[nl - 2]
                        if t > tl:
                            l_blocked.append((tl, t))
                            tl = t
                    if reads[nl]:
                        read = tl
                        break
                    fl[nl] = tl  # nothing to fetch: no transfer
                    nl += 1
                    progress = True
            while na < nl and na < nb + 2:
                t = fl[na]
                if t > ta:
                    a_starved.append((ta, t))
                    ta = t
                if na >= 2:
                    t = fb[na - 2]
                    if t > ta:
                        a_blocked.append((ta, t))
                        ta = t
                cycles = feeds[na]
                if cycles:
                    t = ta + cycles
                    a_busy.append((ta, t))
                    ta = t
                fa[na] = ta
                na += 1
                progress = True
            while nb < na and nb < nc + 2:
                t = fa[nb]
                if t > tb:
                    b_starved.append((tb, t))
                    tb = t
                if nb >= 2:
                    t = fc[nb - 2]
                    if t > tb:
                        b_blocked.append((tb, t))
                        tb = t
                cycles = computes[nb]
                if cycles:
                    t = tb + cycles
                    b_busy.append((tb, t))
                    tb = t
                fb[nb] = tb
                nb += 1
                progress = True
            while nc < nb and nc < nw + 2:
                t = fb[nc]
                if t > tc:
                    c_starved.append((tc, t))
                    tc = t
                if nc >= 2:
                    t = fw[nc - 2]
                    if t > tc:
                        c_blocked.append((tc, t))
                        tc = t
                cycles = drains[nc]
                if cycles:
                    t = tc + cycles
                    c_busy.append((tc, t))
                    tc = t
                fc[nc] = tc
                nc += 1
                progress = True
            if write < 0:
                while nw < nc:
                    t = fc[nw]
                    if t > tw:
                        w_starved.append((tw, t))
                        tw = t
                    if writes[nw]:
                        write = tw
                        break
                    fw[nw] = tw
                    nw += 1
                    progress = True
        if nw == n:
            break
        # one DRAM transfer: the write if it was requested by the time the channel decides, else the read
        if write >= 0 and (read < 0 or write <= free or write <= read):
            start = free if free > write else write
            w_wait += start - write
            free = tw = fw[nw] = start + writes[nw]
            w_busy.append((start, free))
            nw += 1
            write = -1
        elif read >= 0:
            start = free if free > read else read
            l_wait += start - read
            free = tl = fl[nl] = start + reads[nl]
            l_busy.append((start, free))
            nl += 1
            read = -1
        else:
            raise RuntimeError("solve_layer: the pipeline cannot progress")  # unreachable (see solve_layer)
    return _timeline(
        _log(reads, fl, l_busy, [], l_blocked, l_wait),
        _log(feeds, fa, a_busy, a_starved, a_blocked),
        _log(computes, fb, b_busy, b_starved, b_blocked),
        _log(drains, fc, c_busy, c_starved, c_blocked),
        _log(writes, fw, w_busy, w_starved, [], w_wait),
    )


def _solve_spatial(timing: PassTiming) -> LayerTimeline:
    """`solve_layer` for loader (L) -> PE array (B) -> writer (W); names as in `_solve_with_transforms`."""
    reads, computes, writes = timing.read_cycles, timing.compute_cycles, timing.write_cycles
    n = len(computes)
    fl, fb, fw = [0] * n, [0] * n, [0] * n
    nl = nb = nw = 0
    tl = tb = tw = 0
    l_blocked: list[tuple[int, int]] = []
    l_busy: list[tuple[int, int]] = []
    b_starved: list[tuple[int, int]] = []
    b_blocked: list[tuple[int, int]] = []
    b_busy: list[tuple[int, int]] = []
    w_starved: list[tuple[int, int]] = []
    w_busy: list[tuple[int, int]] = []
    l_wait = w_wait = 0
    read = write = -1
    free = 0
    while True:
        progress = True
        while progress:
            progress = False
            if read < 0:
                while nl < n and nl < nb + 2:
                    if nl >= 2:
                        t = fb[nl - 2]
                        if t > tl:
                            l_blocked.append((tl, t))
                            tl = t
                    if reads[nl]:
                        read = tl
                        break
                    fl[nl] = tl
                    nl += 1
                    progress = True
            while nb < nl and nb < nw + 2:
                t = fl[nb]
                if t > tb:
                    b_starved.append((tb, t))
                    tb = t
                if nb >= 2:
                    t = fw[nb - 2]
                    if t > tb:
                        b_blocked.append((tb, t))
                        tb = t
                cycles = computes[nb]
                if cycles:
                    t = tb + cycles
                    b_busy.append((tb, t))
                    tb = t
                fb[nb] = tb
                nb += 1
                progress = True
            if write < 0:
                while nw < nb:
                    t = fb[nw]
                    if t > tw:
                        w_starved.append((tw, t))
                        tw = t
                    if writes[nw]:
                        write = tw
                        break
                    fw[nw] = tw
                    nw += 1
                    progress = True
        if nw == n:
            break
        if write >= 0 and (read < 0 or write <= free or write <= read):
            start = free if free > write else write
            w_wait += start - write
            free = tw = fw[nw] = start + writes[nw]
            w_busy.append((start, free))
            nw += 1
            write = -1
        elif read >= 0:
            start = free if free > read else read
            l_wait += start - read
            free = tl = fl[nl] = start + reads[nl]
            l_busy.append((start, free))
            nl += 1
            read = -1
        else:
            raise RuntimeError("solve_layer: the pipeline cannot progress")  # unreachable (see solve_layer)
    return _timeline(
        _log(reads, fl, l_busy, [], l_blocked, l_wait),
        BlockLog(),
        _log(computes, fb, b_busy, b_starved, b_blocked),
        BlockLog(),
        _log(writes, fw, w_busy, w_starved, [], w_wait),
    )


def overlap_cycles(intervals: Sequence[tuple[int, int]], busy: Sequence[tuple[int, int]]) -> int:
    """Total length of the intersection of two sets of disjoint, sorted intervals [start, end)."""
    total = 0
    j = 0
    for start, end in intervals:
        while j < len(busy) and busy[j][1] <= start:
            j += 1
        k = j
        while k < len(busy) and busy[k][0] < end:
            total += max(0, min(end, busy[k][1]) - max(start, busy[k][0]))
            k += 1
    return total


@dataclass(frozen=True)
class Attribution:
    """The layer's cycles from the PE array's point of view; the four parts sum to the total."""

    compute_cycles: int
    imbalance_idle_cycles: int
    transform_stall_cycles: int
    dram_stall_cycles: int


def attribute(timeline: LayerTimeline, work_cycles: int, pe_count: int, has_transforms: bool) -> Attribution:
    """Split the layer's cycles into compute / imbalance / waiting on a transform unit / waiting on DRAM.

    Compute is what a perfectly balanced array would need for the same work: ceil(PE-cycles / P); the rest
    of the array's busy time is imbalance. When the array is not busy, a cycle waits on a transform unit if
    the unit the array waits for (input transform when starved, output transform when blocked or after its
    last pass) is busy, and on DRAM otherwise.
    """
    pe = timeline.pe_array
    compute = ceil_div(work_cycles, pe_count)
    imbalance = pe.busy_cycles - compute
    waiting = timeline.total_cycles - pe.busy_cycles
    transform = 0
    if has_transforms:
        transform += overlap_cycles(pe.starved_intervals, timeline.input_transform.busy_intervals)
        after = [*pe.blocked_intervals, (pe.last_finish, timeline.total_cycles)]
        transform += overlap_cycles(after, timeline.output_transform.busy_intervals)
    return Attribution(compute, imbalance, transform, waiting - transform)
