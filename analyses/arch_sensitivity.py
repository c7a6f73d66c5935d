"""Which architectural choice matters most for Winograd-ReLU: one factor at a time around the default.

Starting from the default preset (winosim/presets/default.yaml), each factor is swept over its settings
with everything else fixed, and the Winograd-ReLU network's latency and energy per image are recorded:

- zero handling: none / gate / skip, for weights and for activations (all 9 combinations),
- work partition: output channels or tiles across PEs, with static or dynamic assignment,
- global buffer size: 32 KiB to 2 MiB,
- DRAM bandwidth: 2 to 64 bytes per cycle,
- between layers: activations through DRAM or kept in the buffer, the batch order (all images through a
  layer, or one image through the network), weight prefetch across layers on or off (8 combinations).

A factor's *spread* is its slowest setting's latency over its fastest (and the same for energy); the factors
are ranked by latency spread. Writes analyses/out/arch-sensitivity-<trace>.md and
arch-sensitivity-<trace>.png.

    python analyses/arch_sensitivity.py [--traces DIR] [--out DIR] [--jobs N]
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from _shared import arguments, default_description, header, shipped_traces, write_markdown

from winosim.archio import arch_to_flat_dict, default_arch
from winosim.figures import save_png
from winosim.report import Column, render
from winosim.sweep import Grid, SimulateEvaluator, load_results, run_sweep
from winosim.tables import method_totals

METHOD = "winograd_relu"


@dataclass(frozen=True)
class Factor:
    """An architectural choice and the grid that sweeps it."""

    name: str
    grid: Grid


FACTORS: tuple[Factor, ...] = (
    Factor(
        "zero handling",
        Grid(
            (
                ("pe_array.weight_zeros", ("none", "gate", "skip")),
                ("pe_array.activation_zeros", ("none", "gate", "skip")),
            )
        ),
    ),
    Factor(
        "work partition",
        Grid((("pe_array.partition", ("output_channels", "tiles")), ("pe_array.assignment", ("static", "dynamic")))),
    ),
    Factor(
        "global buffer size",
        Grid((("memory.global_buffer_bytes", ("32KiB", "64KiB", "128KiB", "256KiB", "512KiB", "1MiB", "2MiB")),)),
    ),
    Factor("DRAM bandwidth", Grid((("memory.dram_bandwidth_bytes_per_cycle", ("2", "4", "8", "16", "32", "64")),))),
    Factor(
        "between layers",
        Grid(
            (
                ("memory.activation_residency", ("dram", "buffer")),
                ("memory.batch_order", ("layer", "image")),
                ("memory.weight_prefetch", ("none", "next_layer")),
            )
        ),
    ),
)


def _setting(factor: Factor, point: int) -> str:
    """A point's setting as given in the grid ("global_buffer_bytes=1MiB"), short key names."""
    return ", ".join(f"{key.split('.')[-1]}={value}" for key, value in factor.grid.points()[point].overrides)


def factor_rows(path: Path, factor: Factor, jobs: int) -> pd.DataFrame:
    """Winograd-ReLU latency (µs) and energy (µJ) per image at every setting of `factor`."""
    with tempfile.TemporaryDirectory(prefix="winosim-sensitivity-") as work:
        run_sweep([path], factor.grid, work, evaluator=SimulateEvaluator(methods=(METHOD,)), jobs=jobs)
        results = load_results(work)
    table = results.table
    images = int(table["images"].iloc[0])
    totals = method_totals(table, list(factor.grid.keys))
    default = arch_to_flat_dict(default_arch())
    rows = []
    for _, row in totals.iterrows():
        rows.append(
            {
                "factor": factor.name,
                "point": int(row["point"]),
                "setting": _setting(factor, int(row["point"])),
                "default": all(row[k] == default[k] for k in factor.grid.keys),
                "latency_us": float(row["latency_s"]) / images * 1e6,
                "energy_uj": float(row["energy_pj"]) / images * 1e-6,
            }
        )
    for entry in results.manifest["infeasible"]:  # e.g. a buffer too small for a layer: no latency at all
        rows.append(
            {
                "factor": factor.name,
                "point": int(entry["point"]),
                "setting": _setting(factor, int(entry["point"])) + " (infeasible)",
                "default": False,
                "latency_us": float("nan"),
                "energy_uj": float("nan"),
            }
        )
    frame = pd.DataFrame(rows).sort_values("point", kind="mergesort").reset_index(drop=True)
    base = frame[frame["default"]].iloc[0]
    frame["latency_vs_default"] = frame["latency_us"] / base["latency_us"]
    frame["energy_vs_default"] = frame["energy_uj"] / base["energy_uj"]
    return frame


def summary(details: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for name, group in details.groupby("factor", sort=False):
        latency = group["latency_us"].to_numpy()
        fastest = group.iloc[int(np.nanargmin(latency))]
        slowest = group.iloc[int(np.nanargmax(latency))]
        rows.append(
            {
                "factor": name,
                "settings": int(group["latency_us"].notna().sum()),
                "fastest": fastest["setting"],
                "slowest": slowest["setting"],
                "latency_spread": group["latency_us"].max() / group["latency_us"].min(),
                "energy_spread": group["energy_uj"].max() / group["energy_uj"].min(),
            }
        )
    frame = pd.DataFrame(rows)
    return frame.sort_values("latency_spread", ascending=False, kind="mergesort").reset_index(drop=True)


def _ratio(value: object) -> str:
    return f"{float(value):.2f}x"  # type: ignore[arg-type]


def figure(ranked: pd.DataFrame, title: str) -> object:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(ranked))
    ax.barh(y - 0.2, ranked["latency_spread"], 0.4, label="latency spread (slowest / fastest)")
    ax.barh(y + 0.2, ranked["energy_spread"], 0.4, label="energy spread (highest / lowest)")
    ax.set_yticks(y, labels=ranked["factor"].tolist())
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(left=1.0)
    ax.set_xlabel("spread over the factor's settings (x, log scale)")
    ax.legend(fontsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return fig


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    for path, trace in shipped_traces(args.traces):
        details = pd.concat([factor_rows(path, factor, args.jobs) for factor in FACTORS], ignore_index=True)
        ranked = summary(details)
        stem = f"arch-sensitivity-{path.stem}"
        summary_columns = [
            Column("factor", "factor", text=True),
            Column("settings", "feasible settings"),
            Column("fastest", "fastest setting", text=True),
            Column("slowest", "slowest setting", text=True),
            Column("latency_spread", "latency spread", _ratio),
            Column("energy_spread", "energy spread", _ratio),
        ]
        detail_columns = [
            Column("factor", "factor", text=True),
            Column("setting", "setting", text=True),
            Column("default", "default", lambda v: "yes" if v else ""),
            Column("latency_us", "latency/image (µs)", lambda v: f"{float(v):,.1f}", null="-"),
            Column("latency_vs_default", "vs default", _ratio, null="-"),
            Column("energy_uj", "energy/image (µJ)", lambda v: f"{float(v):,.2f}", null="-"),
            Column("energy_vs_default", "vs default", _ratio, null="-"),
        ]
        text = "\n".join(
            [
                header(f"Which architectural choice matters most for Winograd-ReLU: {path.stem}", path, trace),
                f"One factor at a time around {default_description()}. Only the Winograd-ReLU variant is "
                "simulated. Spread = the factor's worst setting over its best; factors ranked by latency spread. "
                "An infeasible setting (e.g. a buffer too small for one row of a layer) has no numbers.",
                "",
                render(ranked, "md", columns=summary_columns, meta={}, title=["Ranking"]),
                render(details, "md", columns=detail_columns, meta={}, title=["Every setting"], group="factor"),
                f"Figure: `{stem}.png`.",
                "",
            ]
        )
        write_markdown(args.out / f"{stem}.md", text)
        title = f"{path.stem}: Winograd-ReLU sensitivity to each factor"
        if trace.provenance.synthetic:
            title = "SYNTHETIC TRACE (random masks, not a trained model)\n" + title
        save_png(figure(ranked, title), args.out / f"{stem}.png")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
