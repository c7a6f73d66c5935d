"""Benchmark: simulate the paper's ImageNet ResNet-18 (synthetic masks, 8 images), all five methods, 64 PEs.

Targets (issue 3): simulate (lowering included) in <= 3 s and <= 3x the exact-count floor
(`winosim.counts.count_trace` on the same trace, measured in the same run), peak memory <= 2 GB.

Then a small design-space sweep (`--points` design points: PE counts x both partitions, one lowered
workload): CPU seconds per point of `simulate(trace, arch, workload=workload)` (recurrence timing, the
workload's memo reused across points) against, as the baseline measured in the same run, the same points
with the simpy event model and nothing reused (`simulate_layer(..., engine="events")` on fresh copies of
the works), and a check that both give identical rows.

Run as a script: `python benchmarks/bench_sim.py [--images N] [--repeat R] [--points P]`. Prints the
timings, their ratios and the peak memory; exits 1 when a target is missed or the two paths disagree.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from winosim import simulate  # noqa: E402  (after making the checkout importable)
from winosim.archio import apply_overrides, default_arch  # noqa: E402
from winosim.counts import count_trace  # noqa: E402
from winosim.energy import energy_table  # noqa: E402
from winosim.geometry import resnet18_imagenet  # noqa: E402
from winosim.sim.layer import simulate_layer  # noqa: E402
from winosim.synthetic import synthetic_trace  # noqa: E402
from winosim.trace import Trace  # noqa: E402
from winosim.workload import lower  # noqa: E402

T = TypeVar("T")
TARGET_SECONDS = 3.0
TARGET_RATIO = 3.0
TARGET_PEAK_BYTES = 2 * 1024**3


def _best_of(repeat: int, fn: Callable[[], T]) -> tuple[float, T]:
    best = float("inf")
    result: T | None = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def sweep(trace: Trace, points: int) -> bool:
    """Time `points` design points both ways; print CPU s per point and the ratio; True when rows agree."""
    archs = [
        apply_overrides(default_arch(), {"pe": pe, "pe_array.partition": partition})
        for pe, partition in itertools.product((16, 32, 64, 128, 256), ("output_channels", "tiles"))
    ][:points]
    workload = lower(trace)
    start = time.process_time()
    fast = [simulate(trace, arch, workload=workload).rows for arch in archs]
    fast_s = (time.process_time() - start) / len(archs)
    start = time.process_time()
    events = []
    for arch in archs:
        table = energy_table(arch.energy_table)
        works = [dataclasses.replace(work) for work in workload.works]  # fresh memos: nothing reused
        events.append(tuple(simulate_layer(work, arch, table, engine="events") for work in works))
    events_s = (time.process_time() - start) / len(archs)
    same = fast == events
    print(f"sweep of {len(archs)} points (PE counts x partitions), one lowered workload:")
    print(f"  event model, nothing reused (baseline): {events_s:.3f} CPU s per point")
    print(f"  simulate, memo reused:                  {fast_s:.3f} CPU s per point ({events_s / fast_s:.1f}x faster)")
    print(f"  identical rows: {same}")
    return same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pe", type=int, default=64)
    parser.add_argument("--points", type=int, default=10, help="design points of the sweep measurement (0: skip)")
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")

    start = time.perf_counter()
    trace = synthetic_trace(resnet18_imagenet(), images=args.images)
    print(f"synthetic ResNet-18 ImageNet trace, {args.images} images: {time.perf_counter() - start:.2f} s to build")
    arch = apply_overrides(default_arch(), {"pe": args.pe})

    floor_s, counts = _best_of(args.repeat, lambda: count_trace(trace))
    sim_s, result = _best_of(args.repeat, lambda: simulate(trace, arch))
    tracemalloc.start()
    simulate(trace, arch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    ratio = sim_s / floor_s
    rows = len(result.rows)
    passes = sum(row.stats.passes for row in result.rows)
    print(f"exact-count floor (count_trace): {floor_s:.3f} s for {len(counts)} rows")
    print(f"simulate (lower + simulate):     {sim_s:.3f} s for {rows} rows, {passes} passes")
    print(f"ratio simulate / floor:          {ratio:.2f}x (target <= {TARGET_RATIO}x)")
    print(
        f"peak traced memory of simulate:  {peak / 1024**2:.0f} MiB (target <= {TARGET_PEAK_BYTES / 1024**3:.0f} GiB)"
    )
    for method, variant in result.methods():
        stats, energy = result.total(method, variant)
        print(
            f"  {method:16s} multiplies {stats.multiplies:>15,d}  cycles {stats.cycles:>12,d}  "
            f"energy {energy.energy_pj / 1e9:8.3f} mJ"
        )
    same = sweep(trace, args.points) if args.points > 0 else True
    missed = [
        name
        for name, ok in (
            (f"time {sim_s:.2f} s > {TARGET_SECONDS} s", sim_s <= TARGET_SECONDS),
            (f"ratio {ratio:.2f}x > {TARGET_RATIO}x", ratio <= TARGET_RATIO),
            ("peak memory", peak <= TARGET_PEAK_BYTES),
            ("the sweep's two paths disagree", same),
        )
        if not ok
    ]
    print("targets met" if not missed else "targets missed: " + "; ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
