"""Benchmark: a 100-point design-space sweep on a CIFAR ResNet-18-sized synthetic trace.

Reports points per second with 1 and with 2 local worker processes (target: >= 10 points/s overall on a
2-core machine), the speed-up from 1 to 2 workers, and, as the baseline measured in the same run, the rate
of calling `simulate(...).to_frame()` directly in one process on the same points (what the sweep
machinery costs on top of the simulator). Every sweep starts from an empty results folder.

    python benchmarks/bench_sweep.py [--pe-counts 5] [--images 8]     (--pe-counts 1: a quick 20-point run)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from winosim import simulate  # noqa: E402  (after making the checkout importable)
from winosim.archio import apply_overrides, default_arch  # noqa: E402
from winosim.geometry import resnet18_cifar  # noqa: E402
from winosim.sweep import Grid, run_sweep  # noqa: E402
from winosim.synthetic import synthetic_trace  # noqa: E402
from winosim.trace import write_trace  # noqa: E402
from winosim.workload import lower  # noqa: E402

AXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pe", ("16", "32", "64", "128", "256")),
    ("memory.dram_bandwidth_bytes_per_cycle", ("4", "8", "16", "32", "64")),
    ("pe_array.partition", ("output_channels", "tiles")),
    ("pe_array.assignment", ("static", "dynamic")),
)


def grid_of(pe_counts: int) -> Grid:
    """The benchmark grid with the first `pe_counts` PE counts: 20 points per PE count (100 for all 5)."""
    (key, values), *rest = AXES
    return Grid(((key, values[:pe_counts]), *rest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pe-counts", type=int, default=5, help="PE counts, 1 to 5 (20 points each; default 5)")
    parser.add_argument("--images", type=int, default=8, help="sample images in the synthetic trace (default 8)")
    parser.add_argument("--baseline-points", type=int, default=20, help="points for the direct-simulate baseline")
    args = parser.parse_args()
    grid = grid_of(args.pe_counts)
    load_before = os.getloadavg()[0]
    points = grid.points()
    with tempfile.TemporaryDirectory(prefix="winosim-bench-sweep-") as work:
        trace = synthetic_trace(resnet18_cifar(), images=args.images, seed=0)
        path = write_trace(trace, Path(work) / "synthetic-resnet18_cifar.npz")
        print(
            f"trace: SYNTHETIC resnet18_cifar, {args.images} images, {len(trace.layers)} layers; {len(points)} points"
        )

        workload = lower(trace)
        sample = points[:: max(1, len(points) // args.baseline_points)][: args.baseline_points]
        simulate(trace, default_arch(), workload=workload).to_frame()  # warm-up: imports, caches
        start, cpu_start = time.perf_counter(), time.process_time()
        for point in sample:
            simulate(trace, apply_overrides(default_arch(), point.as_dict()), workload=workload).to_frame()
        direct = len(sample) / (time.perf_counter() - start)
        direct_cpu = (time.process_time() - cpu_start) / len(sample)
        print(
            f"baseline: simulate(...).to_frame() in one process, {len(sample)} points spread over the grid: "
            f"{direct:.2f} points/s, {direct_cpu:.3f} CPU s per point"
        )

        rates: dict[int, float] = {}
        for jobs in (1, 2):
            start, cpu_start = time.perf_counter(), time.process_time()
            run_sweep([path], grid, Path(work) / f"out-{jobs}", jobs=jobs)
            elapsed = time.perf_counter() - start
            if jobs == 1:  # runs in this process: its CPU time is the whole cost, whatever else the machine runs
                cpu = (time.process_time() - cpu_start) / len(points)
                print(f"sweep, 1 worker: {cpu:.3f} CPU s per point ({cpu / direct_cpu:.2f}x the baseline's)")
            rates[jobs] = len(points) / elapsed
            print(
                f"sweep, {jobs} worker{'s' if jobs > 1 else ''}: {len(points)} points in {elapsed:.1f} s = "
                f"{rates[jobs]:.2f} points/s ({rates[jobs] / direct:.2f}x the one-process baseline)"
            )
        same = (Path(work) / "out-1" / "results.parquet").read_bytes() == (
            Path(work) / "out-2" / "results.parquet"
        ).read_bytes()
        print(f"speed-up 1 -> 2 workers: {rates[2] / rates[1]:.2f}x; identical results: {same}")
        best = max(rates, key=lambda jobs: rates[jobs])
        print(
            f"target >= 10 points/s overall: {'met' if rates[best] >= 10 else 'NOT met'} "
            f"(best {rates[best]:.2f} points/s with {best} worker{'s' if best > 1 else ''}; "
            f"2 workers need a second idle core, see the load average)"
        )
        print(f"machine: {os.cpu_count()} cores; load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
