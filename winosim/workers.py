"""The local worker processes of a sweep: where they come from, and how to have them ready early.

Workers start from a fork server that has imported winosim once (safe with threads, and cheaper than a fresh
interpreter per worker); `spawn` where the platform has no fork server. This module imports nothing heavy, so
that `winosim sweep` can start the fork server before it imports pandas and the sweep itself: the two imports then
run side by side instead of one after the other, which is a few tenths of a second off every multi-process
sweep's wall time.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.context import BaseContext

from winosim.errors import ConfigError

PRELOAD = ("winosim.sweep", "winosim.simulate")
"""What the fork server imports once for every worker it forks."""

MAX_SWEEP_POINTS = 10_000
"""Largest sweep (design points x traces) run without being asked twice: about ten minutes at the measured
16 points/s of a small trace. `run_sweep(max_points=None)` or `winosim sweep --yes` runs a larger one. (Here, not
in `winosim.sweep`, so that the command line can state it without importing the sweep.)"""


MAX_PER_CORE = 4
"""Most processes or threads per core that one option may ask for (a sweep's `--jobs`, training's `--threads`
and `--processes`): the work is CPU-bound, so more than a few per core only costs memory, and far more crashes
(`--threads 100000` segfaulted in the OpenMP runtime; `--jobs 100000` would have started one process per
point). More workers than that: a Dask cluster (`--scheduler`) or more machines."""


def check_per_core(count: int, option: str) -> None:
    """ConfigError for a `count` (given as `option`) that is not an integer >= 1 or exceeds `MAX_PER_CORE`
    per core of this machine."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(f"{option} must be an integer >= 1, got {count!r}")
    cores = os.cpu_count() or 1
    if count > MAX_PER_CORE * cores:
        raise ConfigError(
            f"{option} {count} on {cores} cores: at most {MAX_PER_CORE} per core ({MAX_PER_CORE * cores} here); "
            "the work is CPU-bound, so more only costs memory"
        )


def check_jobs(jobs: int | None) -> None:
    """A sweep's `jobs` (None: one per core), by `check_per_core`."""
    if jobs is not None:
        check_per_core(jobs, "sweep: jobs")


def local_processes(jobs: int | None) -> int:
    """The local processes a sweep uses (its workers, and the parts of its CSV): `jobs`, else the cores."""
    return jobs if jobs is not None else (os.cpu_count() or 1)


def worker_context() -> BaseContext:
    """The multiprocessing context of every local worker of a sweep (`PRELOAD`ed fork server, else spawn)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(list(PRELOAD))
    return forkserver


def start_server() -> None:
    """Start the fork server now, so that it imports winosim while this process still imports, loads and plans
    the sweep, instead of when the first worker is needed (the local workers, or on a Dask cluster the CSV's
    parts at the end). Idempotent."""
    if worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()
