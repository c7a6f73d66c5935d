"""The discrete-event model of one layer: a process per hardware block, bounded buffers, a shared DRAM.

Passes (winosim.sim.plan) flow through a pipeline of blocks, each a simpy process working on one pass at a
time, in order:

    loader --[fetched]--> input transform --[transformed]--> PE array --[accumulated]-->
        output transform --[finished]--> writer

(Spatial-domain work has no transform stages: loader --> PE array --> writer.) Every buffer between two
blocks holds two passes (double buffering): a block takes room in its output buffer before it starts a
pass and frees its room in its input buffer when it has finished with the pass. An item that is one row of
a pass streamed by rows (`winosim.sim.streaming`) takes its share of a pass's room (`PassTiming.item_units`).
The loader and the writer move the pass's bytes through the one DRAM channel; the channel serves one transfer at a time,
ceil(bytes / bandwidth) cycles each, and when it is free it picks, among the transfers requested up to
that cycle, writes before reads (there is never more than one of each pending).

Time is in integer cycles. Each block records its busy time, the time it waited for input (starved), for
room in its output buffer (blocked), for the DRAM channel, and its idle time after its last pass; these add up to the
layer's total cycles. The PE array's cycles are attributed (docs/simulator.md): compute (the balanced part
of the work: ceil(PE-cycles / P)), imbalance (the rest of the array's busy time), and, when the array is
not computing, waiting on a transform unit (when the transform unit it waits for is busy) or on DRAM (otherwise).

Two evaluations of the same model, both parametrised by the stages between the loader and the writer
(`PassTiming.stages`): `run_layer` is the simpy event model (a process per block, events per pass and
block), the definition and `winosim.simulate`'s default (`engine="events"`); `solve_layer` computes the same
timeline from the model's recurrences, with no event queue, several times faster (`engine="recurrence"`,
what sweeps use). Their agreement, interval by interval, is tested (tests/sim/test_golden_results.py), as
is the event model's agreement with a per-cycle reference (tests/sim/test_sim_reference.py). simpy is used
through its public API only.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import operator
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy

from winosim.integers import ceil_div

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
    item_units: Sequence[int] | None = None
    """The room each pass takes in a buffer, in units of which a whole pass takes `pass_units` (a buffer
    holds `BUFFER_SLOTS` whole passes); None: every pass is whole."""
    pass_units: int = 1

    def units(self) -> list[int]:
        """`item_units`, or a whole pass's units for every pass."""
        if self.item_units is None:
            return [self.pass_units] * len(self.compute_cycles)
        return list(self.item_units)

    def room_needed(self) -> list[int]:
        """For each pass i, the pass whose release by the next block leaves room for it (every pass
        between it and i still holds its room; the release of `i - 2` when every pass is whole), -1 when the
        room is there from the start: the smallest x with units(x + 1 .. i) <= the buffer's capacity."""
        units, capacity = self.units(), BUFFER_SLOTS * self.pass_units
        needed, held, x = [], 0, -1
        for size in units:
            held += size
            while held > capacity:
                x += 1
                held -= units[x]
            needed.append(x)
        return needed

    def service_cycles(self) -> tuple[Sequence[int], ...]:
        """Every block's service times, loader first, writer last (with the transforms' even when spatial)."""
        return (
            self.read_cycles,
            self.input_transform_cycles,
            self.compute_cycles,
            self.output_transform_cycles,
            self.write_cycles,
        )

    def stages(self) -> tuple[tuple[str, Sequence[int]], ...]:
        """The blocks between the loader and the writer, in order, with their service times."""
        if self.has_transforms:
            return (
                ("input_transform", self.input_transform_cycles),
                ("pe_array", self.compute_cycles),
                ("output_transform", self.output_transform_cycles),
            )
        return (("pe_array", self.compute_cycles),)


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


class DramChannel:
    """The one DRAM channel shared by every transfer: `yield from channel.transfer(cycles, priority)` moves
    one pass's bytes and returns when they are moved.

    A requester takes the channel when it is free and its request is the first pending one (writes before
    reads, then in order of request); otherwise it waits until the transfer in progress ends, and the
    requester that ends it hands the channel on. Before a read starts, everything else of the cycle happens
    first (`_settle`), so that a write requested later in that cycle still goes first.
    """

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.pending: list[list[Any]] = []  # heap of [priority, sequence, waiting event or None]
        self.sequence = 0
        self.in_use = False
        self.busy_cycles = 0
        self.idle_cycles = 0
        self.last_busy_end = 0

    def transfer(self, cycles: int, priority: int) -> Generator[simpy.Event, Any, None]:
        env = self.env
        request: list[Any] = [priority, self.sequence, None]
        self.sequence += 1
        heapq.heappush(self.pending, request)
        while True:
            if not self.in_use and self.pending[0] is request:
                if priority == WRITE_PRIORITY:
                    break
                yield from self._settle()  # a write requested later in this same cycle still goes first
                if not self.in_use and self.pending[0] is request:
                    break
            request[2] = env.event()
            yield request[2]
        heapq.heappop(self.pending)
        self.in_use = True
        self.idle_cycles += int(env.now) - self.last_busy_end
        yield env.timeout(cycles)
        self.in_use = False
        self.busy_cycles += cycles
        self.last_busy_end = int(env.now)
        if self.pending and self.pending[0][2] is not None:
            waiting, self.pending[0][2] = self.pending[0][2], None
            waiting.succeed()

    def _settle(self) -> Generator[simpy.Event, Any, None]:
        """Wait, without advancing time, until nothing else is scheduled in this cycle."""
        env = self.env
        while env.peek() == env.now:
            yield env.timeout(0)


class Buffer:
    """A buffer between one producer block and one consumer block, with room for `capacity` units.

    The producer takes a pass's room before it starts the pass and hands the pass over when done; the
    consumer takes the oldest finished pass and frees its room when done with it. `None` from
    `take_room`/`take_pass` means no wait; otherwise the returned event fires (in this or a later cycle) when
    the wait is over.
    """

    def __init__(self, env: simpy.Environment, capacity: int) -> None:
        self.env = env
        self.free_units = capacity
        self.ready_passes = 0
        self.room_waiter: simpy.Event | None = None
        self.room_wanted = 0
        self.pass_waiter: simpy.Event | None = None

    def take_room(self, units: int) -> simpy.Event | None:
        if self.free_units >= units:
            self.free_units -= units
            return None
        self.room_waiter, self.room_wanted = simpy.Event(self.env), units
        return self.room_waiter

    def free_room(self, units: int) -> None:
        self.free_units += units
        if self.room_waiter is not None and self.free_units >= self.room_wanted:
            waiter, self.room_waiter = self.room_waiter, None
            self.free_units -= self.room_wanted
            waiter.succeed()

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
    units: Sequence[int],
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
            wait = sink.take_room(units[index])
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
                yield from dram.transfer(cycles, dram_priority)
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
            source.free_room(units[index])


def run_layer(env: simpy.Environment, timing: PassTiming) -> LayerTimeline:
    """Simulate one layer's passes in `env` (a fresh Environment) and return its timeline."""
    passes = len(timing.compute_cycles)
    dram = DramChannel(env)
    logs = {name: BlockLog() for name in ("loader", "input_transform", "pe_array", "output_transform", "writer")}
    stages = timing.stages()
    units = timing.units()
    buffers = [Buffer(env, BUFFER_SLOTS * timing.pass_units) for _ in range(len(stages) + 1)]
    loader, writer = logs["loader"], logs["writer"]
    env.process(_block(env, loader, passes, timing.read_cycles, units, None, buffers[0], dram, READ_PRIORITY))
    for (name, service), source, sink in zip(stages, buffers, buffers[1:], strict=False):
        env.process(_block(env, logs[name], passes, service, units, source, sink))
    env.process(_block(env, writer, passes, timing.write_cycles, units, buffers[-1], None, dram, WRITE_PRIORITY))
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

    The event model is a chain of blocks with buffers of bounded room, so its times follow from a recurrence. For
    block j and pass i, with f(j, i) the time the block finishes the pass:

    - it is done with pass i - 1 at a = f(j, i - 1) (0 for the first pass);
    - it has its input at b = max(a, f(j - 1, i)) (starved from a to b; the loader has no input buffer);
    - it has room in its output buffer at c = max(b, f(j + 1, x)) (blocked from b to c: x is the pass whose
      release makes room for pass i, `PassTiming.room_needed`, i - 2 when every pass is whole; none, and no
      wait, while the room is there from the start; the writer has no output buffer);
    - a transform unit or the PE array finishes at f = c + service; a loader or writer with something to move
      requests the DRAM channel at c and finishes when its transfer does (a pass that moves nothing finishes
      at c, without a transfer).

    The DRAM channel serves one transfer at a time: when it is free (at `free`) and a transfer is requested,
    it decides at t = max(free, earliest request) and takes the write if it was requested by t, otherwise the
    read (the event model's settle priority). The solver advances every block as far as its inputs and
    room allows, then lets the channel serve one transfer, and repeats. A request that cannot be computed
    yet when the channel decides depends on a transfer not yet served, which ends after t: it cannot have
    been made by t, so the other request goes first, as in the event model. Same timeline as `run_layer`, bit
    for bit (tests/sim/test_golden_results.py checks it against the event model), in a fraction of the time.
    """
    return _solve(timing)


def _length(intervals: list[tuple[int, int]]) -> int:
    """Total length of intervals [start, end)."""
    return -sum(itertools.starmap(operator.sub, intervals))


def _solve(timing: PassTiming) -> LayerTimeline:
    """`solve_layer`: block 0 is the loader, blocks 1..S the stages of `timing.stages()`, block S + 1 the
    writer. For each block: `done` passes finished, `ready` when it was done with its previous pass, `finish`
    times, interval logs; `read` and `write` are the pending DRAM requests (when the loader / writer asked;
    -1: none) and `free` when the channel is next free. Every block advances as far as its inputs and room
    allow (a written pass frees room: that round goes backwards through the stages), then the DRAM channel
    serves one transfer; until the writer has written every pass. One loop over local variables, no call
    per block and round: this is the hot path of a sweep."""
    stage_names = timing.stages()
    services = [timing.read_cycles, *(service for _, service in stage_names), timing.write_cycles]
    passes, last = len(timing.compute_cycles), len(services) - 1
    finish = [[0] * passes for _ in services]
    done, ready = [0] * (last + 1), [0] * (last + 1)
    busy: list[list[tuple[int, int]]] = [[] for _ in services]
    starved: list[list[tuple[int, int]]] = [[] for _ in services]
    blocked: list[list[tuple[int, int]]] = [[] for _ in services]
    needed = timing.room_needed()  # pass x whose release makes room for pass i (-1: none)
    # reach[d]: how many passes a block can have started once the next block has released d of them
    reach = [bisect.bisect_left(needed, d) for d in range(passes + 1)]
    stages = [
        (b - 1, services[b], finish[b], finish[b - 1], finish[b + 1 - (b == last)], starved[b], blocked[b], busy[b])
        for b in range(last)
    ]
    forward, backward = range(1, last), range(last - 1, 0, -1)
    order = forward
    reads, writes, loaded, written = services[0], services[last], finish[0], finish[last]
    first_after, last_before = finish[1], finish[last - 1]
    loader_blocked, writer_starved = blocked[0], starved[last]
    n_load = n_write = t_load = t_write = 0  # the loader's and the writer's `done` and `ready`
    read = write = -1
    free = read_wait = write_wait = 0
    while True:
        again = True
        while again:  # rounds until no block can advance
            again = False
            if read < 0:  # the loader: until it requests a transfer or has no room
                limit = reach[done[1]]
                first = n_load
                while n_load < limit:
                    x = needed[n_load]
                    if x >= 0 and first_after[x] > t_load:
                        loader_blocked.append((t_load, first_after[x]))
                        t_load = first_after[x]
                    if reads[n_load]:
                        read = t_load
                        break
                    loaded[n_load] = t_load  # nothing to fetch: no transfer
                    n_load += 1
                if n_load > first:
                    done[0] = n_load
                    again = True
            for block in order:  # a transform unit or the PE array, as far as its inputs and room allow
                first, limit, cap = done[block], done[block - 1], reach[done[block + 1]]
                if first >= limit or first >= cap:
                    continue
                _below, service, own, before, after, idle, stuck, working = stages[block]
                n = first
                if limit > cap:
                    limit = cap
                t_ready = ready[block]
                while n < limit:
                    t = before[n]
                    if t > t_ready:
                        idle.append((t_ready, t))
                        t_ready = t
                    x = needed[n]
                    if x >= 0:
                        t = after[x]
                        if t > t_ready:
                            stuck.append((t_ready, t))
                            t_ready = t
                    cycles = service[n]
                    if cycles:
                        t = t_ready + cycles
                        working.append((t_ready, t))
                        t_ready = t
                    own[n] = t_ready
                    n += 1
                done[block], ready[block] = n, t_ready
                again = True
            if write < 0:  # the writer: until it requests a transfer or has no pass to write
                limit, first = done[last - 1], n_write
                while n_write < limit:
                    if last_before[n_write] > t_write:
                        writer_starved.append((t_write, last_before[n_write]))
                        t_write = last_before[n_write]
                    if writes[n_write]:
                        write = t_write
                        break
                    written[n_write] = t_write
                    n_write += 1
                if n_write > first:
                    done[last] = n_write
                    again = True
            order = forward
        if n_write == passes:
            break
        # one DRAM transfer: the write if it was requested by the time the channel decides, else the read
        if write >= 0 and (read < 0 or write <= free or write <= read):
            start = free if free > write else write
            write_wait += start - write
            free = t_write = written[n_write] = start + writes[n_write]
            busy[last].append((start, free))
            n_write += 1
            done[last] = n_write
            write = -1
            order = backward  # a written pass frees room: let it ripple back through the stages
        elif read >= 0:
            start = free if free > read else read
            read_wait += start - read
            free = t_load = loaded[n_load] = start + reads[n_load]
            busy[0].append((start, free))
            n_load += 1
            done[0] = n_load
            read = -1
        else:
            raise RuntimeError("solve_layer: the pipeline cannot progress")  # unreachable (see solve_layer)
    logs = [
        BlockLog(
            busy_cycles=sum(services[block]),
            starved_cycles=_length(starved[block]),
            blocked_cycles=_length(blocked[block]),
            dram_wait_cycles=read_wait if block == 0 else write_wait if block == last else 0,
            last_finish=finish[block][-1] if passes else 0,
            busy_intervals=busy[block],
            starved_intervals=starved[block],
            blocked_intervals=blocked[block],
        )
        for block in range(last + 1)
    ]
    by_name = {name: logs[block] for block, (name, _) in enumerate(stage_names, start=1)}
    it, pe, ot = (by_name.get(name) or BlockLog() for name in ("input_transform", "pe_array", "output_transform"))
    loader, writer = logs[0], logs[last]
    total = max(loader.last_finish, it.last_finish, pe.last_finish, ot.last_finish, writer.last_finish)
    dram_busy = loader.busy_cycles + writer.busy_cycles
    return LayerTimeline(total, loader, it, pe, ot, writer, dram_busy, total - dram_busy)


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


def timeline_stats(timeline: LayerTimeline, has_transforms: bool) -> dict[str, int]:
    """What the pipeline reports of itself, as `LayerStats` fields: the layer's cycles, every block's busy and
    stall cycles, and the cycles the PE array waits on a transform unit: when the array is not busy, a cycle
    waits on a transform unit if the unit the array waits for (input transform when starved, output
    transform when blocked or after its last pass) is busy, and on DRAM otherwise. A function of the passes'
    service times alone; `pipeline_stats` adds the split that depends on the array's work. The array's
    cycles before its first pass and after its last (`boundary_stall_cycles`) are the layer-boundary bubble:
    part of its stall, not a separate term of the attribution."""
    pe, total = timeline.pe_array, timeline.total_cycles
    transform = 0
    if has_transforms:
        transform += overlap_cycles(pe.starved_intervals, timeline.input_transform.busy_intervals)
        after = [*pe.blocked_intervals, (pe.last_finish, total)]
        transform += overlap_cycles(after, timeline.output_transform.busy_intervals)
    first_start = pe.busy_intervals[0][0] if pe.busy_intervals else pe.last_finish
    return {
        "cycles": total,
        "transform_stall_cycles": transform,
        "boundary_stall_cycles": first_start + total - pe.last_finish,
        "pe_array_busy_cycles": pe.busy_cycles,
        "pe_array_stall_cycles": pe.stall_cycles(total),
        "input_transform_busy_cycles": timeline.input_transform.busy_cycles,
        "input_transform_stall_cycles": timeline.input_transform.stall_cycles(total),
        "output_transform_busy_cycles": timeline.output_transform.busy_cycles,
        "output_transform_stall_cycles": timeline.output_transform.stall_cycles(total),
        "dram_channel_busy_cycles": timeline.dram_busy_cycles,
        "dram_channel_stall_cycles": timeline.dram_idle_cycles,
    }


def pipeline_stats(timeline: Mapping[str, int], work_cycles: int, pe_count: int) -> dict[str, int]:
    """`timeline_stats` and the attribution of the layer's cycles, as `LayerStats` fields: compute is what a
    perfectly balanced array would need for the same work, ceil(PE-cycles / P); the rest of the array's busy
    time is imbalance; of the cycles it is not busy, those not waiting on a transform unit wait on DRAM. The
    four parts sum to the total."""
    compute = ceil_div(work_cycles, pe_count)
    waiting = timeline["cycles"] - timeline["pe_array_busy_cycles"]
    return {
        **timeline,
        "compute_cycles": compute,
        "imbalance_idle_cycles": timeline["pe_array_busy_cycles"] - compute,
        "dram_stall_cycles": waiting - timeline["transform_stall_cycles"],
    }
