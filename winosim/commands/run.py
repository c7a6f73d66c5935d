"""`winosim run`: the paper-style table of a trace, exact multiplies of every method per layer and in total.

For each layer, the Winograd-layer subtotal and the network total, and for each of the five methods (and
each variant of the trace that supplies a sparse method's masks): multiplies per image, the reduction
against dense spatial and against dense Winograd (both labelled), and the ideal compute-bound cycle count
ceil(multiplies / (pe * multipliers_per_pe)), which is a lower bound, not a simulation. A method whose
masks the trace lacks is reported as unavailable (null / n/a), never estimated.
"""

from __future__ import annotations

import logging
from typing import Any

from winosim import __version__
from winosim.commands import CommandParser, command_parser, positive_int, write_text_atomic
from winosim.counts import METHODS, available, count_trace
from winosim.errors import ConfigError
from winosim.report import COLUMN_DOCS, FORMATS, METHOD_LABELS, RUN_COLUMNS, multiplies_frame, render
from winosim.trace import Trace, load_trace

logger = logging.getLogger(__name__)

DEFAULT_MULTIPLIERS_PER_PE = 16
"""Multipliers per PE for the ideal bound: SCNN's 4x4 Cartesian-product PE (F = I = 4, paper.md section 6)."""


def _parser() -> CommandParser:
    parser = command_parser("run", "Exact multiplies of every method on a trace, per layer and in total.")
    parser.add_argument("--trace", required=True, metavar="FILE", help="trace file (.npz, format v1)")
    parser.add_argument(
        "--pe", required=True, type=int, metavar="N", help="number of processing elements (>= 1) for the bound"
    )
    parser.add_argument(
        "--multipliers-per-pe",
        type=positive_int,
        default=DEFAULT_MULTIPLIERS_PER_PE,
        metavar="M",
        help=f"multipliers per PE for the bound (default {DEFAULT_MULTIPLIERS_PER_PE}, an SCNN 4x4 PE)",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    parser.add_argument("--totals-only", action="store_true", help="only the Winograd-layer and total rows")
    return parser


def run_meta(trace: Trace, trace_path: str, pe_count: int, multipliers_per_pe: int) -> dict[str, Any]:
    """The `meta` object of the JSON output: where the numbers come from and what the columns mean."""
    sources = available(trace)
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
        "variants": [
            {
                "name": v.name,
                "method": v.method,
                "target_density": v.target_density,
                "weight_density": trace.weight_density(v),
                "activation_density": trace.activation_density(v),
                "accuracy": v.accuracy,
            }
            for v in trace.variants
        ],
        "unavailable_methods": [m for m in METHODS if not sources[m]],
        "columns": COLUMN_DOCS,
    }


def _title(trace: Trace, trace_path: str, pe_count: int, multipliers_per_pe: int) -> list[str]:
    prov = trace.provenance
    lines = [
        f"winosim run: exact multiplies per method, counted from the masks of {trace_path}",
        f"network {trace.network}, {trace.images} sample images, dataset {prov.dataset}",
    ]
    if prov.synthetic:
        lines.append("SYNTHETIC TRACE: random masks from a generator, NOT a trained model")
    lines.append(
        f"ideal cycles = ceil(multiplies / ({pe_count} PEs x {multipliers_per_pe} multipliers)): a compute-bound "
        "LOWER BOUND, not a simulation"
    )
    return lines


def _notes(trace: Trace) -> list[str]:
    notes = [
        "mults/image: exact zero-skipping multiplies over the trace's images, divided by their number",
        "reduction vs X = multiplies of X / multiplies of the row (same layer, or same sum)",
        "spatial layers (stem, strided, 1x1, FC) run spatially in every method",
    ]
    sources = available(trace)
    for method in METHODS:
        if not sources[method]:
            notes.append(f"n/a: {METHOD_LABELS[method]} is unavailable, the trace has no variant with its masks")
    return notes


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.pe < 1:
        raise ConfigError(f"--pe must be >= 1, got {args.pe}")
    trace = load_trace(args.trace)
    logger.info("counting %d layers x %d variants of %s", len(trace.layers), len(trace.variants), args.trace)
    frame = multiplies_frame(trace, count_trace(trace), args.pe, args.multipliers_per_pe)
    if args.totals_only:
        frame = frame[frame["scope"] != "layer"].reset_index(drop=True)
    text = render(
        frame,
        args.format,
        columns=RUN_COLUMNS,
        meta=run_meta(trace, args.trace, args.pe, args.multipliers_per_pe),
        title=_title(trace, args.trace, args.pe, args.multipliers_per_pe),
        notes=_notes(trace),
        group="layer",
    )
    if args.output:
        write_text_atomic(args.output, text)
        logger.info("wrote %s", args.output)
    else:
        print(text, end="")
    return 0
