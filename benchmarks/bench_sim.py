"""Benchmark: simulate the paper's ImageNet ResNet-18 (synthetic masks, 8 images), all five methods, 64 PEs.

Targets (issue 3): simulate (lowering included) in <= 3 s and <= 3x the exact-count floor
(`winosim.counts.count_trace` on the same trace, measured in the same run), peak memory <= 2 GB.
Run as a script: `python benchmarks/bench_sim.py [--images N] [--repeat R]`. Prints the timings, their
ratio and the peak memory; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

from winosim import simulate
from winosim.arch import default_arch
from winosim.archio import apply_overrides
from winosim.counts import count_trace
from winosim.geometry import resnet18_imagenet
from winosim.synthetic import synthetic_trace

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pe", type=int, default=64)
    args = parser.parse_args(argv)

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
    missed = [
        name
        for name, ok in (
            (f"time {sim_s:.2f} s > {TARGET_SECONDS} s", sim_s <= TARGET_SECONDS),
            (f"ratio {ratio:.2f}x > {TARGET_RATIO}x", ratio <= TARGET_RATIO),
            ("peak memory", peak <= TARGET_PEAK_BYTES),
        )
        if not ok
    ]
    print("targets met" if not missed else "targets missed: " + "; ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
