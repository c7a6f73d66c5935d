"""`winosim report DIR`: paper-style tables (and optionally figures) from a sweep's results directory.

    winosim report DIR [--format table|md|csv|json|latex] [--table speedup,energy,multiplies]
                       [--reference METHOD] [--output FILE] [--figures] [--figures-dir FIGDIR]

Tables compare every method with a reference method (dense spatial by default) at the same design point,
one column per design point: speedup (cycles), energy reduction and multiply reduction. By default every
table the results support is shown (a counts-only sweep has multiplies only). `--figures` writes PNGs into
DIR/figures (or FIGDIR): speedup vs PE count, energy breakdown, cycle attribution, per-layer cycles, and the
density heatmaps of every trace of the sweep that can still be found at its recorded path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from winosim.commands import CommandParser, choice_list, command_parser
from winosim.errors import ConfigError
from winosim.files import (
    atomic_directory,
    atomic_write_text,
    check_file_apart_from_folder,
    check_not_an_input,
    check_output_file,
    check_output_folder,
)
from winosim.report import FORMATS, render_csv, render_json
from winosim.sweep import MANIFEST_NAME, RESULTS_CSV, RESULTS_PARQUET, load_results, trace_for_figures
from winosim.tables import RATIOS, ratio_table, render_ratio_table
from winosim.text import printable

_NEEDS = {"speedup": "cycles", "energy": "energy_pj", "multiplies": "multiplies"}


def build_parser() -> CommandParser:
    parser = command_parser("report", "Speedup and energy tables and figures from a sweep results directory.")
    parser.add_argument("results", metavar="DIR", help="a directory written by 'winosim sweep --out DIR'")
    parser.add_argument("--format", choices=FORMATS, default="table", help="table format (default: table)")
    parser.add_argument(
        "--table",
        type=choice_list(tuple(RATIOS)),
        metavar="KIND[,KIND]",
        help=f"which tables, comma-separated, of {', '.join(RATIOS)} (default: every one the results support)",
    )
    parser.add_argument("--reference", default="dense_spatial", metavar="METHOD", help="reference method")
    parser.add_argument("--output", metavar="FILE", help="write the tables to FILE (atomically) instead of stdout")
    parser.add_argument("--figures", action="store_true", help="also write PNG figures")
    parser.add_argument("--figures-dir", metavar="FIGDIR", help="where to write figures (default: DIR/figures)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    figures = Path(args.figures_dir) if args.figures_dir else Path(args.results) / "figures"
    if args.output:
        check_output_file(args.output, create_folder=False)
    if args.figures:
        check_output_folder(figures)
        if args.output:
            check_file_apart_from_folder(
                args.output, "--output", figures, "--figures-dir", lambda n: n.endswith(".png")
            )
    results = load_results(args.results)
    if args.output:  # the sweep's own files, and the traces its figures are drawn from
        read = [Path(args.results) / name for name in (MANIFEST_NAME, RESULTS_PARQUET, RESULTS_CSV)]
        check_not_an_input(
            args.output, "--output", [*read, *(path for _, path, _ in results.trace_paths())], "sweep file or trace"
        )
    table = results.table
    if args.table:
        kinds = list(args.table)
        for kind in kinds:
            if _NEEDS[kind] not in table.columns:
                raise ConfigError(f"--table {kind}: the results have no {_NEEDS[kind]!r} column")
    else:
        kinds = [k for k in RATIOS if _NEEDS[k] in table.columns]
    if args.reference not in set(table["method"]):
        raise ConfigError(f"--reference: the results have no method {args.reference!r}")

    labels = results.point_labels()
    wides = {kind: ratio_table(table, kind, results.grid_columns, args.reference, labels) for kind in kinds}
    if args.format in ("csv", "json"):
        combined = pd.concat([w.assign(table=k)[["table", *w.columns]] for k, w in wides.items()], ignore_index=True)
        meta = {"reference": args.reference, "synthetic": results.synthetic, "tables": kinds}
        text = render_csv(combined) if args.format == "csv" else render_json(combined, meta)
    else:
        notes = [
            f"infeasible on {entry['trace']}: {entry['label']} ({entry['message']})"
            for entry in results.manifest.get("infeasible", ())
        ]
        text = "\n".join(
            render_ratio_table(
                w, args.format, kind=k, reference=args.reference, synthetic=results.synthetic, notes=notes
            )
            for k, w in wides.items()
        )
    text = printable(text, keep_newlines=True)
    if not args.figures:
        _write_text(text, args.output)
        return 0
    from winosim.figures import sweep_figures, trace_figures

    # the figures and the tables together or not at all: the figures are drawn aside (atomic_directory) and
    # the tables written before they move into place, so a failing figure leaves no tables behind, and
    # stdout gets the tables only once every figure is in place
    with atomic_directory(figures) as staging:
        written = sweep_figures(table, results.grid_columns, staging)
        for name, path, sha256 in results.trace_paths():
            trace = trace_for_figures(path, sha256)
            if trace is not None:
                written += trace_figures(trace, staging, Path(name).stem)
        if args.output:
            _write_text(text, args.output)
    if not args.output:
        _write_text(text, None)
    stream = sys.stderr if not args.output else sys.stdout
    print(f"wrote {len(written)} figures to {figures}", file=stream)
    return 0


def _write_text(text: str, output: str | None) -> None:
    """The tables to `output` (atomically) or, without one, to stdout."""
    if output:
        atomic_write_text(output, text, create_folder=False)
    else:
        sys.stdout.write(text)
