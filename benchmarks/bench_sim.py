"""Benchmark: simulate the paper's ImageNet ResNet-18 (synthetic masks, 8 images), all five methods, 64 PEs.

Targets (issue 3): simulate (lowering included) in <= 3 s and <= 3x the exact-count floor
(`winosim.counts.count_trace` on the same trace, measured in the same run), peak memory <= 2 GB.

Then a small design-space sweep (`--points` design points: PE counts x both partitions, one lowered
workload): CPU seconds per point of `simulate(trace, arch, workload=workload)` (recurrence timing, the
workload's memo reused across points) against, as the baseline measured in the same run, the same points
with the simpy event model and nothing reused (`simulate(..., engine="events")` on fresh copies of the
works), and a check that both give identical rows.

At scale (issue 14, `--scale 8,32,64`): for each image count, a synthetic trace file made with
`python -m winosim synth`, then, alternating in fresh processes, the whole `python -m winosim run --trace
FILE --pe 64 --format json` and, as the baseline, an independent exact-count pass over the same file
(`--count-pass FILE`: plain numpy and zipfile, one layer at a time: read, unpack, count, release). Prints
the median wall seconds of both and their ratio (target <= 2x from 64 images; at 8 images the start-up of
`run`, about 1 s of imports, weighs), the same for CPU seconds (steadier on a shared machine), and each
one's peak RSS (target: `run` below 500 MiB at every image count).

Run as a script: `python benchmarks/bench_sim.py [--images N] [--repeat R] [--points P] [--scale 8,32,64]`.
Prints the timings, their ratios and the peak memory; exits 1 when a target is missed or the two paths
disagree.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from winosim import simulate  # noqa: E402  (after making the checkout importable)
from winosim.archio import apply_overrides, default_arch  # noqa: E402
from winosim.counts import count_trace  # noqa: E402
from winosim.geometry import resnet18_imagenet  # noqa: E402
from winosim.synthetic import synthetic_trace  # noqa: E402
from winosim.trace import Trace  # noqa: E402
from winosim.workload import lower  # noqa: E402

T = TypeVar("T")
TARGET_SECONDS = 3.0
TARGET_RATIO = 3.0
TARGET_PEAK_BYTES = 2 * 1024**3
TARGET_SCALE_RATIO = 2.0
TARGET_SCALE_RSS_BYTES = 500 * 1024**2


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
    for arch in archs:  # fresh memos (nothing reused), the event model, the same between-layer decisions
        fresh = dataclasses.replace(workload, works=tuple(dataclasses.replace(work) for work in workload.works))
        events.append(simulate(trace, arch, workload=fresh, engine="events").rows)
    events_s = (time.process_time() - start) / len(archs)
    same = fast == events
    print(f"sweep of {len(archs)} points (PE counts x partitions), one lowered workload:")
    print(f"  event model, nothing reused (baseline): {events_s:.3f} CPU s per point")
    print(f"  simulate, memo reused:                  {fast_s:.3f} CPU s per point ({events_s / fast_s:.1f}x faster)")
    print(f"  identical rows: {same}")
    return same


def count_pass(path: str) -> int:
    """Independent exact count of a trace file: every variant and layer, one layer at a time, with plain
    numpy (read the packed masks, unpack, reduce to per-(channel, position) counts, one product, release).
    Returns the total zero-skipping multiplies of the three sparse methods."""
    with zipfile.ZipFile(path) as archive:

        def mask(key: str, shape: tuple[int, ...]) -> np.ndarray:
            with archive.open(f"{key}.npy") as handle:
                packed = np.lib.format.read_array(handle)
            return np.unpackbits(packed, bitorder="little")[: math.prod(shape)].reshape(shape).astype(bool)

        with archive.open("meta.npy") as handle:
            meta = json.loads(np.lib.format.read_array(handle).tobytes())
        images, m = meta["images"], meta["winograd"]["m"]
        total = 0
        for vi, variant in enumerate(meta["variants"]):
            for li, layer in enumerate(meta["layers"]):
                k, c, kern, st, pad = (layer[f] for f in ("out_channels", "in_channels", "kernel", "stride", "padding"))
                h, w = layer["in_height"], layer["in_width"]
                oh, ow = (h + 2 * pad - kern) // st + 1, (w + 2 * pad - kern) // st + 1
                base = f"variant{vi}/layer{li:03d}"
                if variant["method"] != "spatial" and layer["kind"] == "winograd":
                    p = (m + 2) ** 2
                    weight = mask(f"{base}/weight", (k, c, p))
                    act = mask(f"{base}/activation", (images, c, -(-oh // m), -(-ow // m), p))
                    acts_q = np.count_nonzero(act, axis=(0, 2, 3)).ravel()
                else:
                    weight = mask(f"{base}/weight", (k, c, kern, kern))
                    act = np.pad(
                        mask(f"{base}/activation", (images, c, h, w)), ((0, 0), (0, 0), (pad, pad), (pad, pad))
                    )
                    acts_q = np.array(
                        [
                            np.count_nonzero(
                                act[:, :, r : r + st * (oh - 1) + 1 : st, s : s + st * (ow - 1) + 1 : st],
                                axis=(0, 2, 3),
                            )
                            for r in range(kern)
                            for s in range(kern)
                        ]
                    ).T.ravel()
                total += int(np.count_nonzero(weight, axis=0).astype(np.int64).ravel() @ acts_q.astype(np.int64))
                del weight, act
    return total


def _timed(command: list[str]) -> tuple[float, int, float]:
    """Wall seconds, peak RSS bytes and CPU seconds (user + system) of one child process running `command`
    (its output discarded)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"benchmark command failed ({child.returncode}): {' '.join(command)}")
    return wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def scale(image_counts: list[int], repeat: int, folder: Path) -> list[str]:
    """`run` against the independent count pass at each image count; returns the targets missed."""
    missed: list[str] = []
    env_python = [sys.executable]
    print("at scale: whole `winosim run` (all five methods, 64 PEs, json) vs an independent exact-count pass")
    print("  images  trace MB   run s  count s   ratio  (CPU s: run  count  ratio)   run peak RSS  count peak RSS")
    for images in image_counts:
        path = folder / f"resnet18_imagenet_{images}.npz"
        if not path.exists():
            subprocess.run(
                [
                    *env_python,
                    "-m",
                    "winosim",
                    "synth",
                    "--network",
                    "resnet18_imagenet",
                    "--images",
                    str(images),
                    "--output",
                    str(path),
                ],
                check=True,
                cwd=ROOT,
            )
        run_cmd = [
            *env_python,
            "-m",
            "winosim",
            "run",
            "--trace",
            str(path),
            "--pe",
            "64",
            "--format",
            "json",
            "--no-progress",
        ]
        count_cmd = [*env_python, str(Path(__file__).resolve()), "--count-pass", str(path)]
        runs, counts, ratios, cpu_ratios = [], [], [], []
        for _ in range(repeat):  # alternate, so that a drift in machine speed hits both
            runs.append(_timed(run_cmd))
            counts.append(_timed(count_cmd))
            ratios.append(runs[-1][0] / counts[-1][0])
            cpu_ratios.append(runs[-1][2] / counts[-1][2])
        run_s = statistics.median(r[0] for r in runs)
        count_s = statistics.median(c[0] for c in counts)
        ratio = statistics.median(ratios)
        run_cpu = statistics.median(r[2] for r in runs)
        count_cpu = statistics.median(c[2] for c in counts)
        cpu_ratio = statistics.median(cpu_ratios)
        run_rss = max(r[1] for r in runs)
        count_rss = max(c[1] for c in counts)
        print(
            f"  {images:6d}  {path.stat().st_size / 1e6:8.0f}  {run_s:6.2f}  {count_s:7.2f}  {ratio:5.2f}x  "
            f"       {run_cpu:5.2f}  {count_cpu:5.2f}  {cpu_ratio:5.2f}x   "
            f"{run_rss / 1024**2:9.0f} MiB  {count_rss / 1024**2:10.0f} MiB"
        )
        if images >= 64 and ratio > TARGET_SCALE_RATIO:  # the target is at 64 images (start-up dominates at 8)
            missed.append(f"{images} images: run / count pass {ratio:.2f}x > {TARGET_SCALE_RATIO}x")
        if run_rss > TARGET_SCALE_RSS_BYTES:
            missed.append(f"{images} images: run peak RSS {run_rss / 1024**2:.0f} MiB > 500 MiB")
    return missed


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--count-pass"]:
        print(count_pass(argv[1]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pe", type=int, default=64)
    parser.add_argument("--points", type=int, default=10, help="design points of the sweep measurement (0: skip)")
    parser.add_argument("--scale", default="8,32,64", help="image counts of the at-scale measurement ('' to skip)")
    parser.add_argument("--traces", type=Path, default=None, help="folder keeping the at-scale traces between runs")
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    scale_missed: list[str] = []
    if args.scale:
        image_counts = [int(n) for n in args.scale.split(",")]
        if args.traces is not None:
            args.traces.mkdir(parents=True, exist_ok=True)
            scale_missed = scale(image_counts, args.repeat, args.traces)
        else:
            with tempfile.TemporaryDirectory(prefix="winosim-bench-") as folder:
                scale_missed = scale(image_counts, args.repeat, Path(folder))

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
    ] + scale_missed
    print("targets met" if not missed else "targets missed: " + "; ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
