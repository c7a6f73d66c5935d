"""`winosim run`: the paper-style table of a trace on one architecture.

For each layer, the Winograd-layer subtotal and the network total, and for each of the five methods (and
each variant of the trace that supplies a sparse method's masks): exact multiplies per image and their
reduction against dense spatial and against dense Winograd (both labelled), then the simulated cycles,
latency and energy on the architecture (`--arch`, `--set`, `--pe`) and the speedup and energy reduction
over dense spatial on the same array. `--counts-only` skips the simulation and shows the ideal
compute-bound cycle count ceil(multiplies / multipliers) instead, labelled as a lower bound. A method whose
masks the trace lacks is reported as unavailable (null / n/a), never estimated. `--out DIR` also writes the
tables (CSV, JSON) and figures.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from winosim.arch import Arch
from winosim.archio import add_arch_arguments, arch_from_args, arch_to_flat_dict
from winosim.commands import CommandParser, command_parser, positive_int
from winosim.counts import count_trace
from winosim.errors import ConfigError
from winosim.files import (
    atomic_directory,
    atomic_write_text,
    check_file_apart_from_folder,
    check_not_an_input,
    check_output_file,
    check_output_folder,
)
from winosim.methods import METHOD_LABELS, METHODS, available
from winosim.report import (
    COLUMN_DOCS,
    FORMATS,
    RUN_COLUMNS,
    RUN_SIM_COLUMNS,
    SIM_COLUMN_DOCS,
    multiplies_frame,
    render,
    render_csv,
    render_json,
    run_frame,
)
from winosim.sim.layer import ENGINES
from winosim.simulate import simulate
from winosim.text import printable
from winosim.trace import Trace, load_trace, variant_summary
from winosim.version import __version__

logger = logging.getLogger(__name__)


def _parser() -> CommandParser:
    parser = command_parser(
        "run",
        "Exact multiplies, simulated cycles, latency and energy of every method on a trace, per layer and in total.",
    )
    parser.add_argument("--trace", required=True, metavar="FILE", help="trace file (.npz, format v1)")
    parser.add_argument(
        "--pe",
        type=int,
        default=None,
        metavar="N",
        help="number of processing elements (>= 1; default: the preset's 64)",
    )
    parser.add_argument(
        "--multipliers-per-pe",
        type=positive_int,
        default=None,
        metavar="M",
        help="multipliers per PE (default: the preset's 16, an SCNN 4x4 PE), i.e. --set pe_array.multipliers_per_pe=M",
    )
    add_arch_arguments(parser)
    parser.add_argument(
        "--counts-only",
        action="store_true",
        help="skip the simulation: exact multiplies and the ideal compute-bound cycle bound only",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    parser.add_argument("--out", metavar="DIR", help="also write run.csv, run.json and figures (PNG) into DIR")
    parser.add_argument("--totals-only", action="store_true", help="only the Winograd-layer and total rows")
    parser.add_argument(
        "--engine",
        choices=list(ENGINES),
        default=None,
        help="pipeline timing: recurrence (default: the event model's exact recurrences, the same cycles in a "
        "fraction of the time) or events (the simpy event model itself; docs/simulator.md)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def run_meta(
    trace: Trace, trace_path: str, arch: Arch, simulated: bool, columns: dict[str, str] | None = None
) -> dict[str, Any]:
    """The `meta` object of the JSON output: where the numbers come from and what the columns mean."""
    sources = available(trace)
    pe_count, multipliers_per_pe = arch.pe_array.pe_count, arch.pe_array.multipliers_per_pe
    return {
        "command": "run",
        "winosim_version": __version__,
        "trace": trace_path,
        "network": trace.network,
        "synthetic": trace.provenance.synthetic,
        "dataset": trace.provenance.dataset,
        "images": trace.images,
        "winograd": f"F({trace.winograd_m}x{trace.winograd_m},3x3)",
        "pe": pe_count,
        "multipliers_per_pe": multipliers_per_pe,
        "multipliers_per_cycle": pe_count * multipliers_per_pe,
        "simulated": simulated,
        "arch": arch_to_flat_dict(arch) if simulated else None,
        "variants": [variant_summary(trace, v) for v in trace.variants],
        "unavailable_methods": [m for m in METHODS if not sources[m]],
        "columns": columns if columns is not None else COLUMN_DOCS,
    }


def _title(trace: Trace, trace_path: str, arch: Arch, simulated: bool) -> list[str]:
    prov = trace.provenance
    pe_count, multipliers_per_pe = arch.pe_array.pe_count, arch.pe_array.multipliers_per_pe
    lines = [
        f"winosim run: {trace_path}",
        f"network {trace.network}, {trace.images} sample images, dataset {prov.dataset}",
    ]
    if prov.synthetic:
        lines.append("SYNTHETIC TRACE: random masks from a generator, NOT a trained model")
    if simulated:
        pe = arch.pe_array
        memory = arch.memory
        lines.append(
            f"simulated on arch {arch.name!r}: {pe.pe_count} PEs x {pe.multipliers_per_pe} multipliers ({pe.pe_kind}), "
            f"weights {pe.weight_zeros} / activations {pe.activation_zeros} zeros, {pe.partition} partition "
            f"({pe.assignment}), DRAM {memory.dram_bandwidth_bytes_per_cycle} B/cycle, global buffer "
            f"{memory.global_buffer_bytes // 1024} KiB, {arch.data_width_bits}-bit data, {arch.clock_hz / 1e9:g} GHz, "
            f"energy table {arch.energy_table}"
        )
    else:
        lines.append(
            f"ideal cycles = ceil(multiplies / ({pe_count} PEs x {multipliers_per_pe} multipliers)): a compute-bound "
            "LOWER BOUND, not a simulation"
        )
    return lines


def _notes(trace: Trace, simulated: bool) -> list[str]:
    notes = [
        "mults/image: exact zero-skipping multiplies over the trace's images, divided by their number",
        "reduction vs X = multiplies of X / multiplies of the row (same layer, or same sum)",
        "spatial layers (stem, strided, 1x1, FC) run spatially in every method",
    ]
    if simulated:
        notes += [
            "kcycles, latency and energy per image: simulated over the trace's images, divided by their number",
            "speedup / energy reduction vs dense spatial = dense spatial cycles (energy) / the row's, same array",
        ]
    sources = available(trace)
    for method in METHODS:
        if not sources[method]:
            notes.append(f"n/a: {METHOD_LABELS[method]} is unavailable, the trace has no variant with its masks")
    return notes


def _progress_bar(disabled: bool) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A tqdm bar on stderr (shown only on a terminal) fed by the simulator's progress callback."""
    from tqdm import tqdm

    bar = tqdm(
        total=0, unit="layer", desc="simulating", file=sys.stderr, disable=True if disabled else None, leave=False
    )

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


def _out_dir_writes(name: str) -> bool:
    """Whether `--out DIR` writes a file of this name (`_write_out_dir`): run.csv, run.json and PNG figures."""
    return name in ("run.csv", "run.json") or name.endswith(".png")


def _write_out_dir(
    out_dir: Path, frame: pd.DataFrame, sim: pd.DataFrame | None, meta: dict[str, Any], trace_path: str
) -> None:
    """`--out DIR`: run.csv and run.json (every column), and figures when the run was simulated."""
    atomic_write_text(out_dir / "run.csv", render_csv(frame))
    atomic_write_text(out_dir / "run.json", render_json(frame, meta))
    if sim is None:
        return
    from winosim.figures import (
        cycle_attribution_figure,
        energy_breakdown_figure,
        layer_cycles_figure,
        save_png,
    )

    table = sim.assign(trace=Path(trace_path).name, point=0, synthetic=bool(meta["synthetic"]))
    save_png(layer_cycles_figure(table), out_dir / "layer_cycles.png")
    save_png(energy_breakdown_figure(table), out_dir / "energy_breakdown.png")
    for method in ("winograd_relu", "dense_spatial"):
        if (table["method"] == method).any():
            save_png(cycle_attribution_figure(table, method=method), out_dir / f"cycle_attribution_{method}.png")


def _write_outputs(
    args: argparse.Namespace, text: str, frame: pd.DataFrame, sim: pd.DataFrame | None, meta: dict[str, Any]
) -> None:
    """`--output FILE` and `--out DIR` together or not at all: the folder's files are built aside
    (`atomic_directory`) and `--output` is written before they move into place, so a failing step leaves
    neither behind."""
    if not args.out:
        if args.output:
            atomic_write_text(args.output, text, create_folder=False)
            logger.info("wrote %s", args.output)
        return
    with atomic_directory(args.out) as staging:
        _write_out_dir(staging, frame, sim, meta, args.trace)
        if args.output:
            atomic_write_text(args.output, text, create_folder=False)
            logger.info("wrote %s", args.output)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.counts_only and args.engine is not None:
        raise ConfigError("--engine chooses the simulation's timing model, which --counts-only skips")
    if args.output:
        check_output_file(args.output, create_folder=False)
        check_not_an_input(args.output, "--output", [args.trace], "trace")
    if args.out:
        check_output_folder(args.out)
        if args.output:
            check_file_apart_from_folder(args.output, "--output", args.out, "--out", _out_dir_writes)
    arch = arch_from_args(args)
    trace = load_trace(args.trace)
    pe_count, multipliers_per_pe = arch.pe_array.pe_count, arch.pe_array.multipliers_per_pe
    sim: pd.DataFrame | None = None
    if args.counts_only:
        logger.info("counting %d layers x %d variants of %s", len(trace.layers), len(trace.variants), args.trace)
        frame = multiplies_frame(trace, count_trace(trace), pe_count, multipliers_per_pe)
        columns, docs = RUN_COLUMNS, COLUMN_DOCS
    else:
        update, close = _progress_bar(args.no_progress)
        try:
            result = simulate(trace, arch, progress=update, engine=args.engine or "recurrence")
        finally:
            close()
        sim = result.to_frame()
        frame = run_frame(trace, result, pe_count, multipliers_per_pe)
        columns, docs = RUN_SIM_COLUMNS, {**COLUMN_DOCS, **SIM_COLUMN_DOCS}
    if args.totals_only:
        frame = frame[frame["scope"] != "layer"].reset_index(drop=True)
    simulated = sim is not None
    meta = run_meta(trace, args.trace, arch, simulated, docs)
    text = render(
        frame,
        args.format,
        columns=columns,
        meta=meta,
        title=_title(trace, args.trace, arch, simulated),
        notes=_notes(trace, simulated),
        group="layer",
    )
    text = printable(text, keep_newlines=True)
    _write_outputs(args, text, frame, sim, meta)
    if not args.output:
        print(text, end="")
    return 0
