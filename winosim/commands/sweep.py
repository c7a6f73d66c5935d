"""`winosim sweep`: run a design-space sweep and write its tidy results table.

    winosim sweep --trace FILE [--trace FILE ...] --grid pe=16,32,64,128 [--grid KEY=V1,V2 ...]
                  [--grid-file FILE.yaml] [--arch FILE.yaml] --out DIR [--jobs N | --scheduler tcp://HOST:PORT]

Every (trace, design point) is evaluated once; points already stored in DIR are reused, so the same command
continues an interrupted sweep. The table lands in DIR/results.parquet and DIR/results.csv, described by
DIR/sweep.json; `winosim report DIR` turns it into tables and figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from winosim.commands import CommandParser, choice_list, command_parser, positive_int
from winosim.methods import METHODS
from winosim.workers import MAX_SWEEP_POINTS, check_jobs, local_processes, start_server

if TYPE_CHECKING:
    from winosim.sweep import Evaluator


def build_parser() -> CommandParser:
    parser = command_parser(
        "sweep", "Simulate every design point of a grid on every trace; write one tidy table (Parquet + CSV)."
    )
    parser.add_argument("--trace", action="append", required=True, metavar="FILE", help="trace file (.npz); repeat")
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="architecture parameter and its values, e.g. pe=16,32,64 (dotted keys as in the arch file); repeat",
    )
    parser.add_argument("--grid-file", metavar="FILE", help="YAML mapping of parameter -> list of values")
    parser.add_argument("--arch", metavar="FILE", help="base architecture file (default: the built-in preset)")
    parser.add_argument(
        "--methods",
        type=choice_list(METHODS),
        metavar="M1,M2",
        help=f"comma-separated methods to simulate, of {', '.join(METHODS)} (default: all)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="results directory (reused points live here)")
    parser.add_argument(
        "--jobs", type=positive_int, metavar="N", help="local worker processes (default: number of cores)"
    )
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on this Dask distributed scheduler")
    parser.add_argument(
        "--evaluator",
        choices=("simulate", "counts"),
        default="simulate",
        help="simulate (default) or counts: exact multiply counts only, no simulation",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    parser.add_argument(
        "--yes",
        action="store_true",
        help=f"run a sweep of more than {MAX_SWEEP_POINTS:,} points (design points x traces); refused otherwise",
    )
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.jobs is not None and args.scheduler is not None:
        parser.error("--jobs and --scheduler are exclusive: the cluster decides how many workers run")
    if args.evaluator == "counts" and (args.arch or args.methods):
        parser.error("--arch and --methods apply to --evaluator simulate only")
    check_jobs(args.jobs)
    if local_processes(args.jobs) > 1:
        start_server()  # the workers' fork server imports winosim while this process does (winosim.workers)
    from winosim.sweep import CountsEvaluator, SimulateEvaluator, grid_from_options, grid_from_yaml, run_sweep

    grid = grid_from_options(args.grid)
    if args.grid_file:
        grid = grid + grid_from_yaml(args.grid_file)
    evaluator: Evaluator = (
        CountsEvaluator()
        if args.evaluator == "counts"
        else SimulateEvaluator(base_arch=args.arch, methods=args.methods)
    )
    summary = run_sweep(
        args.trace,
        grid,
        args.out,
        evaluator=evaluator,
        jobs=args.jobs,
        scheduler=args.scheduler,
        progress=not args.no_progress,
        max_points=None if args.yes else MAX_SWEEP_POINTS,
    )
    infeasible = f", {summary.points_infeasible} infeasible (see sweep.json)" if summary.points_infeasible else ""
    print(
        f"swept {summary.points_total} points ({summary.points_reused} reused, {summary.points_computed} computed"
        f"{infeasible}): {summary.rows} rows -> {summary.results_parquet}, {summary.results_csv}"
    )
    return 0
