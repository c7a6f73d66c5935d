"""Command-line front ends of the torch pipeline: `winosim train`, `winosim trace` and `winosim curve`.

`train_main(argv)`, `trace_main(argv)` and `curve_main(argv)` parse their arguments, run
`winosim.nn.train.train` / `winosim.nn.extract.extract_trace` / the density search of `winosim.nn.search`,
print a short summary and return 0. Bad input raises a WinosimError,
which the dispatcher (`winosim.cli`) turns into one `winosim: error: ...` line and exit status 2;
`python -m winosim.nn.commands {train,trace,curve} ...` does the same without the dispatcher.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from winosim.commands import CommandParser, comma_list, non_negative_float, positive_int, seed
from winosim.errors import ConfigError, WinosimError
from winosim.files import atomic_write_text, check_distinct_inputs, check_not_an_input, check_output_file
from winosim.nn.data import Dataset, load_dataset
from winosim.nn.distributed import Ranks, launch, ranks_from_environment
from winosim.nn.memory import retain_freed_memory
from winosim.nn.search import DensityCurve, DensityPoint, remeasured
from winosim.nn.train import (
    PRECISIONS,
    TrainConfig,
    load_checkpoint,
    refuse_existing_run,
    select_device,
    train,
)
from winosim.nn.train_args import train_config_from_args, train_parser
from winosim.workers import check_per_core


def _set_threads(threads: int | None) -> None:
    """`--threads`: torch's intra-op threads, 1 to `MAX_PER_CORE` per core (None: torch's default)."""
    if threads is not None:
        check_per_core(threads, "--threads")
        torch.set_num_threads(threads)


def train_main(argv: list[str]) -> int:
    """`winosim train ...`; returns 0 (also when stopped by --max-steps; the run is resumable)."""
    args = train_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    _set_threads(args.threads)
    if retain_freed_memory():  # every step reuses the last one's pages (winosim.nn.memory)
        logging.info("allocator: freed memory kept in the process (glibc: no mmap, no trim)")
    if args.max_steps is not None and args.max_steps < 0:
        raise ConfigError(f"--max-steps must be >= 0, got {args.max_steps}")
    config = train_config_from_args(args)
    ranks = ranks_from_environment()
    if args.processes is not None:
        if args.processes < 1:
            raise ConfigError(f"--processes must be >= 1, got {args.processes}")
        if args.device is None or args.device == "cpu":  # on GPUs the GPU count bounds it (process_device)
            check_per_core(args.processes, "--processes")
        if ranks.distributed and args.processes != ranks.world:
            raise ConfigError(f"--processes {args.processes} under a launcher that started {ranks.world} (WORLD_SIZE)")
        if not ranks.distributed and args.processes > 1:
            _check_launch(config, args.resume, args.processes)
            return launch(["-m", "winosim", "train", *argv], args.processes)
    result = train(
        config, resume=args.resume, max_steps=args.max_steps, device=args.device, progress=not args.no_progress
    )
    state = result.state
    if not ranks.main:  # one summary for a data-parallel run: rank 0's
        return 0
    if result.finished:
        final = state.history[-1]["test_accuracy"] if state.history else None
        print(
            f"train: finished {result.out} after {state.step} steps ({state.wall_s:.0f} s); "
            f"dense accuracy {state.dense_accuracy}, last test accuracy {final}"
        )
    else:
        print(
            f"train: stopped after {result.steps} steps at phase {state.phase} epoch {state.epoch} batch "
            f"{state.batch}; continue with: winosim train --out {result.out} --resume"
        )
    return 0


def _check_launch(config: TrainConfig, resume: bool, processes: int) -> None:
    """What every process would refuse, refused once before any starts: a folder that holds a run (without
    --resume) or none (with it), a global batch smaller than the number of processes."""
    if resume:
        config = TrainConfig.from_dict(load_checkpoint(Path(config.out) / "last.pt")["config"])
    else:
        refuse_existing_run(config.out)
    Ranks(world=processes, rank=0).check_batches(config.batch_size)


def _trace_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="winosim trace",
        description="Extract one trace (one variant per checkpoint, same network) from trained checkpoints.",
    )
    p.add_argument(
        "checkpoints",
        nargs="+",
        help="checkpoints written by winosim train (e.g. runs/x/phase3_d0.50.pt), or run folders with --select-within",
    )
    p.add_argument(
        "--select-within",
        type=non_negative_float,
        default=None,
        metavar="POINTS",
        help="arguments are run folders: take from each the lowest-density checkpoint whose test accuracy is within "
        "POINTS percentage points of its dense model (the density search; its curve goes into the trace)",
    )
    p.add_argument("--data", required=True, help="dataset folder (its test split is used)")
    p.add_argument("--out", required=True, help="trace file to write (.npz)")
    p.add_argument("--images", type=positive_int, default=8, help="test images behind the activation masks (default 8)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the image sample (an integer >= 0)")
    p.add_argument(
        "--test-limit", type=positive_int, default=None, help="measure accuracy on the first N test images only"
    )
    p.add_argument(
        "--names", type=comma_list, default=None, help="comma-separated variant names (default: the methods)"
    )
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="precision of the accuracy pass")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when present, else cpu)")
    p.add_argument("--threads", type=int, default=None)
    return p


def _resolve_checkpoints(
    arguments: list[str], within_points: float | None, measure: Callable[[DensityCurve], DensityCurve]
) -> tuple[list[str], list[dict[str, Any]] | None, dict[Path, float]]:
    """Checkpoint paths as given, or (with `within_points`) the density search's pick from each run folder, on
    the curve as `measure` measures it again (the trace's own measurement: `search.remeasured`); with the
    searches and the accuracies `measure` found, by resolved checkpoint path, for extraction to reuse."""
    from winosim.nn.search import curve_table, density_curve

    if within_points is None:
        folders = [a for a in arguments if Path(a).is_dir()]
        if folders and not any((Path(folders[0]) / name).is_file() for name in ("last.pt", "phase0_dense.pt")):
            raise ConfigError(f"{folders[0]} is a folder without a training run (no last.pt or phase checkpoints)")
        if folders:
            raise ConfigError(
                f"{folders[0]} is a run folder: pass --select-within POINTS to choose its checkpoint by the density "
                "search, or name a phase checkpoint"
            )
        return arguments, None, {}
    curves = [measure(density_curve(a)) for a in arguments]
    print(curve_table(curves, within_points))
    for curve in curves:
        if not curve.complete:
            print(f"trace: note: {curve.run} has not finished its schedule; selecting from the phases it has")
    measured = {p.checkpoint.resolve(): p.accuracy for c in curves for p in c.points}
    return (
        [str(c.select(within_points).checkpoint) for c in curves],
        [c.to_dict(within_points) for c in curves],
        measured,
    )


def _files_in(paths: list[str]) -> list[Path]:
    """The files among `paths` and those directly inside the folders among them (a run folder's checkpoints and
    logs): what an output must not replace."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file()))
        elif path.is_file():
            files.append(path)
    return files


def _curve_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="winosim curve",
        description="Accuracy against weight density along the pruning schedule of training runs, and the lowest "
        "density within a tolerance of each run's dense accuracy (the density search).",
    )
    p.add_argument("runs", nargs="+", help="run folders written by winosim train")
    p.add_argument(
        "--within", type=non_negative_float, default=1.0, metavar="POINTS", help="tolerance in points (default 1.0)"
    )
    p.add_argument("--output", default=None, help="write the Markdown table to this file (atomically)")
    return p


def curve_main(argv: list[str]) -> int:
    """`winosim curve RUN...`: print (or write) the density-search table."""
    from winosim.nn.search import curve_table, density_curve

    args = _curve_parser().parse_args(argv)
    check_distinct_inputs(args.runs, "curve: run folder")
    if args.output:
        check_output_file(args.output)
        check_not_an_input(args.output, "--output", _files_in(args.runs), "run folder's file")
    table = curve_table([density_curve(r) for r in args.runs], args.within)
    if args.output:
        atomic_write_text(Path(args.output), table)
        print(f"curve: wrote {args.output}")
    else:
        print(table, end="")
    return 0


def trace_main(argv: list[str]) -> int:
    """`winosim trace ...`: write the trace atomically and print one line per variant."""
    from winosim.nn.extract import extract_trace
    from winosim.trace import write_trace

    args = _trace_parser().parse_args(argv)
    _set_threads(args.threads)
    if not str(args.out).endswith(".npz"):
        raise ConfigError(f"--out must end in .npz, got {args.out!r}")
    check_output_file(args.out)
    check_distinct_inputs(args.checkpoints, "trace: checkpoint or run folder")  # one model, one variant
    check_not_an_input(args.out, "--out", _files_in(args.checkpoints), "checkpoint or run folder's file")
    names = list(args.names) if args.names is not None else None
    command = "python -m winosim trace " + shlex.join(argv)
    test_sets: list[Dataset] = []

    def measure(curve: DensityCurve) -> DensityCurve:  # as extraction measures: one rule, one measurement
        if not test_sets:
            test_sets.append(load_dataset(args.data, "test").subset(args.test_limit))
        started = time.monotonic()

        def report(done: int, total: int, point: DensityPoint) -> None:  # one line per point: minutes each
            print(
                f"trace: {curve.run.name}: re-measured {point.checkpoint.name} ({done}/{total}): "
                f"{100 * point.accuracy:.2f}% on {point.test_images} images, {time.monotonic() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )

        return remeasured(curve, test_sets[0], select_device(args.device), args.precision, report)

    checkpoints, searches, measured = _resolve_checkpoints(args.checkpoints, args.select_within, measure)
    trace = extract_trace(
        checkpoints,
        args.data,
        images=args.images,
        seed=args.seed,
        test_limit=args.test_limit,
        names=names,
        device=args.device,
        precision=args.precision,
        command=command,
        searches=searches,
        measured=measured,  # the search's re-measurements, the same images and precision: not evaluated twice
    )
    path = write_trace(trace, args.out)
    size = Path(path).stat().st_size
    print(f"trace: wrote {path} ({size / 1e6:.2f} MB, {trace.images} images, network {trace.network})")
    for v in trace.variants:
        print(
            f"  {v.name}: method {v.method}, accuracy {v.accuracy:.4f}, dense accuracy {v.dense_accuracy}, "
            f"weight density {trace.weight_density(v):.4f}, activation density {trace.activation_density(v):.4f}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m winosim.nn.commands {train,trace} ...` (a stand-in for the winosim dispatcher)."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train_main, "trace": trace_main, "curve": curve_main}
    if not args or args[0] not in commands:
        print("usage: python -m winosim.nn.commands {train,trace,curve} ...", file=sys.stderr)
        return 2
    try:
        return commands[args[0]](args[1:])
    except WinosimError as exc:
        print(f"winosim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("winosim: error: interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
