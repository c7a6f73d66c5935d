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
"""

from __future__ import annotations

import heapq
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy
from simpy.events import NORMAL, EventPriority

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
    compute = -(-work_cycles // pe_count)
    imbalance = pe.busy_cycles - compute
    waiting = timeline.total_cycles - pe.busy_cycles
    transform = 0
    if has_transforms:
        transform += overlap_cycles(pe.starved_intervals, timeline.input_transform.busy_intervals)
        after = [*pe.blocked_intervals, (pe.last_finish, timeline.total_cycles)]
        transform += overlap_cycles(after, timeline.output_transform.busy_intervals)
    return Attribution(compute, imbalance, transform, waiting - transform)
