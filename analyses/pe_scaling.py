"""Speedup and energy vs PE count for the five methods, on every shipped trace.

Sweeps the PE count (16 to 256 PEs, everything else at the default preset, winosim/presets/default.yaml)
and reports, per trace: the speedup of each method over dense spatial on the same array, the energy
reduction against dense spatial, and the absolute latency and energy per image. Writes
analyses/out/pe-scaling-<trace>.md and the figures pe-scaling-<trace>-*.png (speedup vs PE count, energy
breakdown and cycle attribution at the default 64 PEs).

    python analyses/pe_scaling.py [--traces DIR] [--out DIR] [--jobs N]
"""

from __future__ import annotations

import tempfile

from _shared import arguments, default_description, header, shipped_traces, write_markdown

from winosim.figures import cycle_attribution_figure, energy_breakdown_figure, save_png, speedup_vs_pe_figure
from winosim.sweep import Grid, load_results, run_sweep
from winosim.tables import per_image_table, ratio_table, render_ratio_table, render_value_table

PE_COUNTS = ("16", "32", "64", "128", "256")
DEFAULT_PE_POINT = PE_COUNTS.index("64")


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    grid = Grid((("pe", PE_COUNTS),))
    for path, trace in shipped_traces(args.traces):
        with tempfile.TemporaryDirectory(prefix="winosim-pe-scaling-") as work:
            run_sweep([path], grid, work, jobs=args.jobs)
            results = load_results(work)
        table = results.table
        stem = f"pe-scaling-{path.stem}"
        parts = [
            header(f"Speedup and energy vs PE count: {path.stem}", path, trace),
            f"Every other parameter is {default_description()}. Ratios compare methods on the same array.",
            "",
            render_ratio_table(ratio_table(table, "speedup", ["pe"]), "md", kind="speedup"),
            render_ratio_table(ratio_table(table, "energy", ["pe"]), "md", kind="energy"),
            render_value_table(
                per_image_table(table, "latency_s", ["pe"], scale=1e6),
                "md",
                title=["Latency per image (µs), all layers"],
                digits=1,
            ),
            render_value_table(
                per_image_table(table, "energy_pj", ["pe"], scale=1e-6),
                "md",
                title=["Energy per image (µJ), all layers"],
                digits=2,
            ),
            f"Figures: `{stem}-speedup.png`, `{stem}-energy.png`, `{stem}-cycles-winograd_relu.png` (64 PEs).",
            "",
        ]
        write_markdown(args.out / f"{stem}.md", "\n".join(parts))
        save_png(speedup_vs_pe_figure(table, ["pe"]), args.out / f"{stem}-speedup.png")
        save_png(energy_breakdown_figure(table, DEFAULT_PE_POINT, ["pe"]), args.out / f"{stem}-energy.png")
        cycles = cycle_attribution_figure(table, "winograd_relu", DEFAULT_PE_POINT, ["pe"])
        save_png(cycles, args.out / f"{stem}-cycles-winograd_relu.png")


if __name__ == "__main__":
    main()
