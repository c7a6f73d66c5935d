"""The paper-style multiply table of every shipped trace, and its density heatmaps.

For each trace in traces/: exact multiplies per image of the five methods (dense spatial, pruned spatial,
dense Winograd, native pruned Winograd, Winograd-ReLU), per layer, over the Winograd layers and in total,
with the reduction against both dense references (the paper does not say which one its 10.4x / 6.8x /
10.8x are against). Writes analyses/out/multiplies-<trace>.md and the per-layer and per-Winograd-position
density heatmaps analyses/out/density-<trace>-*.png.

    python analyses/multiply_tables.py [--traces DIR] [--out DIR]
"""

from __future__ import annotations

from _shared import arguments, header, shipped_traces, write_markdown

from winosim.counts import count_trace
from winosim.figures import trace_figures
from winosim.report import RUN_COLUMNS, multiplies_frame, render

PE_COUNT = 64
MULTIPLIERS_PER_PE = 16


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    for path, trace in shipped_traces(args.traces):
        frame = multiplies_frame(trace, count_trace(trace), PE_COUNT, MULTIPLIERS_PER_PE)
        columns = [c for c in RUN_COLUMNS if not c.key.startswith("ideal_cycles")]
        table = render(frame, "md", columns=columns, meta={})
        notes = [
            "",
            "Multiplies are exact counts from the trace's masks (zero operands skipped), per image, averaged over "
            "the trace's sample images. Layers that cannot use F(2x2,3x3) (the stem, strided and 1x1 convolutions, "
            "FC) run spatially in every method. `Winograd layers` sums the F(2x2,3x3)-eligible layers only; `TOTAL` "
            "sums every layer. Each reduction names its reference.",
            "",
        ]
        text = header(f"Multiplies per method: {path.stem}", path, trace) + "\n" + table + "\n".join(notes)
        write_markdown(args.out / f"multiplies-{path.stem}.md", text)
        trace_figures(trace, args.out, f"density-{path.stem}")


if __name__ == "__main__":
    main()
