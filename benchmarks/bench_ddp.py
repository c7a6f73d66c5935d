"""Data-parallel training on this machine against one process: images/s of `winosim train --processes N`
(N processes of threads/N torch threads each) and of one process with all the threads, alternated.

Each measurement is a real `winosim train` invocation on the real data with the recipe's flags, stopped after
`--steps` optimiser steps; its rate is the last `progress.log` figure (images since the invocation's start over
its training time, data loading and model building excluded), with a progress line every few seconds. Prints
each pair and its ratio (data-parallel / one process).

    python benchmarks/bench_ddp.py --network resnet18 --method winograd_relu --steps 10 --repeats 2

docs/training.md quotes the result on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RATE = re.compile(r"\| ([0-9.]+) images/s \|")
RECIPE = ["--schedule", "onecycle", "--label-smoothing", "0.1", "--channels-last", "--lr", "0.1", "--epochs", "28"]


def measure(args: argparse.Namespace, folder: Path, processes: int) -> float:
    """images/s of one `winosim train` invocation with `processes` processes."""
    out = folder / f"p{processes}"
    command = [
        sys.executable,
        "-m",
        "winosim",
        "train",
        "--network",
        args.network,
        "--method",
        args.method,
        "--data",
        args.data,
        "--batch-size",
        str(args.batch_size),
        *RECIPE,
        "--max-steps",
        str(args.steps),
        "--checkpoint-every-s",
        str(args.every_s),
        "--threads",
        str(max(1, args.threads // processes)),
        "--no-progress",
        "--out",
        str(out),
    ]
    if processes > 1:
        command += ["--processes", str(processes)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rates = RATE.findall((out / "progress.log").read_text())
    if not rates:
        raise SystemExit(f"no progress line in {out}/progress.log: raise --steps or lower --every-s")
    shutil.rmtree(out)
    return float(rates[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="resnet18")
    parser.add_argument("--method", default="winograd_relu")
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="optimiser steps per measurement")
    parser.add_argument("--every-s", type=float, default=20.0, help="seconds between progress lines")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in all (one process gets them all)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(
        f"{args.network} {args.method}, batch {args.batch_size}, {args.steps} steps; one process x {args.threads} "
        f"threads against {args.processes} processes x {max(1, args.threads // args.processes)}"
    )
    print("repeat | one process (images/s) | data-parallel (images/s) | ratio")
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        for repeat in range(1, args.repeats + 1):
            one = measure(args, Path(tmp), 1)
            many = measure(args, Path(tmp), args.processes)
            print(f"{repeat} | {one:.1f} | {many:.1f} | {many / one:.2f}x", flush=True)


if __name__ == "__main__":
    main()
