"""Figures from sweep results and traces (matplotlib, Agg backend, byte-stable PNGs).

From a sweep table (`winosim.sweep`): speedup vs PE count per method, energy breakdown per method, cycle
attribution per layer, and per-layer cycles by method. From a trace (`winosim.trace`): per-layer weight and
activation densities of every variant, and per-Winograd-position (4x4) densities of every Winograd layer.

Every function builds and returns a `matplotlib.figure.Figure` (no pyplot, no global figure state or
backend switch); `save_png` renders it with the Agg canvas, atomically, with a fixed DPI and no software or
date metadata, so the same inputs give the same PNG bytes. Figures made from synthetic traces carry a
SYNTHETIC warning in their title.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from winosim.errors import ConfigError
from winosim.files import atomic_write
from winosim.integers import ceil_div
from winosim.methods import METHOD_LABELS, sorted_methods
from winosim.tables import energy_component_columns, method_totals, point_labels, with_reference_ratio
from winosim.trace import Trace, mask_nonzero, stored_shapes

DPI = 100
PE_COLUMNS: tuple[str, ...] = ("pe_array.pe_count", "pe")
"""Columns holding the PE count, in order of preference."""

CYCLE_PARTS: tuple[tuple[str, str], ...] = (
    ("compute_cycles", "compute"),
    ("dram_stall_cycles", "waiting on DRAM"),
    ("transform_stall_cycles", "waiting on a transform unit"),
    ("imbalance_idle_cycles", "idle (load imbalance)"),
)

_COLORS: Mapping[str, str] = {
    "dense_spatial": "#7f7f7f",
    "pruned_spatial": "#1f77b4",
    "dense_winograd": "#bcbd22",
    "native_winograd": "#ff7f0e",
    "winograd_relu": "#d62728",
}


def save_png(figure: Figure, path: str | os.PathLike[str]) -> Path:
    """Write `figure` as a PNG atomically (temp file + rename), fixed DPI, no metadata that varies."""
    FigureCanvasAgg(figure)  # the Agg canvas, whatever backend pyplot may have elsewhere
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None}))


def new_figure(width_in: float, height_in: float) -> Figure:
    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def _title(text: str, synthetic: bool) -> str:
    return f"SYNTHETIC TRACE (random masks, not a trained model)\n{text}" if synthetic else text


def _label(method: str, variant: Any) -> str:
    base = METHOD_LABELS.get(method, method)
    return base if variant is None or (isinstance(variant, float) and np.isnan(variant)) else f"{base} [{variant}]"


def _methods_in_order(methods: Sequence[str]) -> list[str]:
    return sorted_methods(methods)


def _is_synthetic(table: pd.DataFrame) -> bool:
    return bool("synthetic" in table.columns and table["synthetic"].astype(bool).any())


def pe_column(table: pd.DataFrame) -> str:
    """The column that holds the PE count."""
    for column in PE_COLUMNS:
        if column in table.columns:
            return column
    raise ConfigError(f"results have no PE count column (one of {', '.join(PE_COLUMNS)})")


def hold_other_axes(table: pd.DataFrame, grid_columns: Sequence[str], free: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """Rows where every grid column not in `free` takes its value at the first design point, and a note
    saying which values were held ('' when nothing was held)."""
    held = [c for c in grid_columns if c not in free and c in table.columns]
    if not held:
        return table, ""
    first = table.loc[table["point"] == table["point"].min()].iloc[0]
    mask = np.ones(len(table), dtype=bool)
    for column in held:
        mask &= (table[column] == first[column]).to_numpy()
    return table[mask], "held: " + ", ".join(f"{c}={first[c]}" for c in held)


def _select_point(table: pd.DataFrame, point: int | None, grid_columns: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """The rows of one design point (default: the first) and its label ('pe=64', or 'design point 3')."""
    chosen = int(table["point"].min()) if point is None else int(point)
    rows = table[table["point"] == chosen]
    if rows.empty:
        raise ConfigError(f"results have no design point {chosen}")
    columns = [c for c in grid_columns if c in rows.columns]
    label = point_labels(rows, columns)[chosen] if columns else f"design point {chosen}"
    return rows, label


def _require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ConfigError(f"{what} needs result columns {missing} (a counts-only sweep has multiplies only)")


# --------------------------------------------------------------------------- sweep figures


def speedup_vs_pe_figure(table: pd.DataFrame, grid_columns: Sequence[str] = ()) -> Figure:
    """Per trace: cycles vs PE count (log-log) and speedup over dense spatial at the same point, per method.
    Other grid axes are held at their first value."""
    _require(table, ["cycles"], "the speedup figure")
    pe = pe_column(table)
    rows, note = hold_other_axes(table, grid_columns, [pe, *(c for c in PE_COLUMNS)])
    totals = with_reference_ratio(method_totals(rows, [pe]), "cycles", "speedup")
    traces = list(dict.fromkeys(totals["trace"]))
    figure = new_figure(9.0, 3.4 * len(traces))
    axes = figure.subplots(len(traces), 2, squeeze=False)
    for row, trace in enumerate(traces):
        data = totals[totals["trace"] == trace]
        for method in _methods_in_order(data["method"].tolist()):
            for variant, line in data[data["method"] == method].groupby("variant", dropna=False, sort=False):
                line = line.sort_values(pe)
                style = {"color": _COLORS.get(method), "marker": "o", "label": _label(method, variant)}
                axes[row][0].plot(line[pe], line["cycles"], **style)
                axes[row][1].plot(line[pe], line["speedup"], **style)
        axes[row][0].set(xscale="log", yscale="log", xlabel="PE count", ylabel="cycles (all images)")
        axes[row][1].set(xscale="log", xlabel="PE count", ylabel="speedup vs dense spatial", ylim=(0, None))
        axes[row][0].set_title(trace)
        axes[row][1].set_title(trace + (f" ({note})" if note else ""))
        for ax in axes[row]:
            ax.set_xticks(sorted(data[pe].unique()), labels=[str(v) for v in sorted(data[pe].unique())])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.grid(True, alpha=0.3)
        axes[row][1].legend(fontsize=7)
    figure.suptitle(_title("Cycles and speedup vs PE count", _is_synthetic(rows)))
    return figure


def energy_breakdown_figure(table: pd.DataFrame, point: int | None = None, grid_columns: Sequence[str] = ()) -> Figure:
    """Per trace, stacked energy components (`<part>_pj` columns) of each method at one design point."""
    _require(table, ["energy_pj"], "the energy figure")
    rows, chosen = _select_point(table, point, grid_columns)
    parts = energy_component_columns(rows)
    totals = method_totals(rows)
    traces = list(dict.fromkeys(totals["trace"]))
    figure = new_figure(8.0, 3.6 * len(traces))
    axes = figure.subplots(len(traces), 1, squeeze=False)
    for row, trace in enumerate(traces):
        ax = axes[row][0]
        data = totals[totals["trace"] == trace].reset_index(drop=True)
        labels = [_label(m, v) for m, v in zip(data["method"], data["variant"], strict=True)]
        x = np.arange(len(data))
        bottom = np.zeros(len(data))
        images = float(table.loc[table["trace"] == trace, "images"].iloc[0]) if "images" in table.columns else 1.0
        stack = parts or ["energy_pj"]
        for part in stack:
            values = data[part].astype(float).to_numpy() / images / 1e6
            name = part.removesuffix("_pj") if parts else "total"
            ax.bar(x, values, bottom=bottom, label=name.replace("_", " "))
            bottom += values
        ax.set_xticks(x, labels=labels, rotation=20, ha="right")
        ax.set_ylabel("energy per image (µJ)")
        ax.set_title(f"{trace}, {chosen}")
        ax.legend(fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    figure.suptitle(_title("Energy breakdown per method", _is_synthetic(rows)))
    return figure


def cycle_attribution_figure(
    table: pd.DataFrame, method: str = "winograd_relu", point: int | None = None, grid_columns: Sequence[str] = ()
) -> Figure:
    """Per trace, every layer's cycles split into compute / DRAM stall / transform stall / imbalance idle,
    for one method at one design point."""
    _require(table, [c for c, _ in CYCLE_PARTS], "the cycle attribution figure")
    rows, chosen = _select_point(table, point, grid_columns)
    rows = rows[rows["method"] == method]
    if rows.empty:
        raise ConfigError(f"results have no rows of method {method!r}")
    traces = list(dict.fromkeys(rows["trace"]))
    figure = new_figure(10.0, 6.0 * len(traces))
    axes = figure.subplots(2 * len(traces), 1, squeeze=False)
    for row, trace in enumerate(traces):
        absolute, share = axes[2 * row][0], axes[2 * row + 1][0]
        data = rows[rows["trace"] == trace]
        first_variant = data["variant"].iloc[0]
        if data["variant"].nunique() > 1:
            data = data[data["variant"] == first_variant]
        data = data.sort_values("layer_index")
        x = np.arange(len(data))
        images = float(data["images"].iloc[0]) if "images" in data.columns else 1.0
        parts = np.array([data[column].astype(float).to_numpy() for column, _ in CYCLE_PARTS])
        totals = parts.sum(axis=0)
        fractions = np.divide(parts, totals, out=np.zeros_like(parts), where=totals > 0)
        bottom_abs = np.zeros(len(data))
        bottom_share = np.zeros(len(data))
        for (_, label), values, fraction in zip(CYCLE_PARTS, parts, fractions, strict=True):
            absolute.bar(x, values / images / 1e3, bottom=bottom_abs, label=label)
            share.bar(x, 100.0 * fraction, bottom=bottom_share, label=label)
            bottom_abs += values / images / 1e3
            bottom_share += 100.0 * fraction
        absolute.set_ylabel("thousand cycles per image")
        share.set_ylabel("% of the layer's cycles")
        absolute.set_title(f"{trace}: {_label(method, first_variant)}, {chosen}")
        absolute.legend(fontsize=7)
        for ax in (absolute, share):
            ax.set_xticks(x, labels=data["layer"].tolist(), rotation=60, ha="right", fontsize=7)
            ax.grid(True, axis="y", alpha=0.3)
    figure.suptitle(_title("Cycle attribution per layer", _is_synthetic(rows)))
    return figure


def layer_cycles_figure(table: pd.DataFrame, point: int | None = None, grid_columns: Sequence[str] = ()) -> Figure:
    """Per trace, grouped bars of every layer's cycles by method (log scale) at one design point."""
    _require(table, ["cycles"], "the per-layer cycles figure")
    rows, chosen = _select_point(table, point, grid_columns)
    traces = list(dict.fromkeys(rows["trace"]))
    figure = new_figure(11.0, 3.8 * len(traces))
    axes = figure.subplots(len(traces), 1, squeeze=False)
    for row, trace in enumerate(traces):
        ax = axes[row][0]
        data = rows[rows["trace"] == trace]
        layers = data.drop_duplicates("layer_index").sort_values("layer_index")
        series = [
            (m, v, group.sort_values("layer_index"))
            for m in _methods_in_order(data["method"].tolist())
            for v, group in data[data["method"] == m].groupby("variant", dropna=False, sort=False)
        ]
        width = 0.8 / max(len(series), 1)
        x = np.arange(len(layers))
        for i, (method, variant, group) in enumerate(series):
            ax.bar(
                x + (i - (len(series) - 1) / 2) * width,
                group["cycles"].astype(float).to_numpy(),
                width,
                label=_label(method, variant),
                color=_COLORS.get(method),
            )
        ax.set_yscale("log")
        ax.set_xticks(x, labels=layers["layer"].tolist(), rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("cycles (all images)")
        ax.set_title(f"{trace}, {chosen}")
        ax.legend(fontsize=7, ncols=3)
        ax.grid(True, axis="y", alpha=0.3)
    figure.suptitle(_title("Cycles per layer by method", _is_synthetic(rows)))
    return figure


# --------------------------------------------------------------------------- trace figures


def layer_density_figure(trace: Trace, name: str = "") -> Figure:
    """Heatmaps (layers x variants) of the measured weight and activation non-zero fractions, each in the
    variant's multiply domain (Winograd domain for the Winograd layers of native / Winograd-ReLU)."""
    variants = list(trace.variants)
    if not variants:
        raise ConfigError("the trace has no variants: nothing to plot")
    layers = [layer.name for layer in trace.layers]
    weight, activation = (
        np.array(
            [
                [mask_nonzero(v.masks, i)[operand] / math.prod(stored_shapes(v.masks, i)[operand]) for v in variants]
                for i in range(len(layers))
            ]
        )
        for operand in (0, 1)
    )  # the counts taken at load: no mask is unpacked
    figure = new_figure(2.0 + 1.6 * len(variants), 1.6 + 0.24 * len(layers))
    axes = figure.subplots(1, 2, squeeze=False)[0]
    for ax, data, what in ((axes[0], weight, "weights"), (axes[1], activation, "input activations")):
        image = ax.imshow(data, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        for (r, c), value in np.ndenumerate(data):
            ax.text(
                c, r, f"{value:.2f}", ha="center", va="center", fontsize=6, color="white" if value < 0.6 else "black"
            )
        ax.set_xticks(range(len(variants)), labels=[v.name for v in variants], rotation=20, ha="right")
        ax.set_yticks(range(len(layers)), labels=layers, fontsize=7)
        ax.set_title(f"non-zero fraction: {what}")
        figure.colorbar(image, ax=ax, shrink=0.8)
    label = name or trace.network
    figure.suptitle(_title(f"{label}: per-layer densities (multiply domain)", trace.provenance.synthetic))
    return figure


def position_density_figure(trace: Trace, variant: str, name: str = "") -> Figure:
    """For one Winograd-domain variant, the 4x4 (xi, nu) non-zero fraction of the weights (top row) and of
    the input activations (bottom row) of every Winograd layer."""
    chosen = trace.variant(variant)
    if chosen.method == "spatial":
        raise ConfigError(f"variant {variant!r} is spatial: it has no Winograd-domain positions")
    layer_ids = [i for i, layer in enumerate(trace.layers) if chosen.domain(layer) == "winograd"]
    if not layer_ids:
        raise ConfigError(f"variant {variant!r} has no Winograd-domain layers")
    p = trace.winograd_m + 2
    columns = min(len(layer_ids), 8)
    blocks = ceil_div(len(layer_ids), columns)
    figure = new_figure(1.3 * columns + 1.2, 2.9 * blocks + 0.6)
    axes = figure.subplots(2 * blocks, columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    image = None
    for position, index in enumerate(layer_ids):
        block, col = divmod(position, columns)
        masks = chosen.masks[index]
        weight = masks.weight.reshape(-1, p * p).mean(axis=0).reshape(p, p)
        activation = masks.activation.reshape(-1, p * p).mean(axis=0).reshape(p, p)
        for row, (data, what) in enumerate(((weight, "weights"), (activation, "activations"))):
            ax = axes[2 * block + row][col]
            ax.set_axis_on()
            image = ax.imshow(data, vmin=0.0, vmax=1.0, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(trace.layers[index].name, fontsize=7)
            if col == 0:
                ax.set_ylabel(what, fontsize=7)
    if image is not None:
        figure.colorbar(image, ax=axes, shrink=0.8, label="non-zero fraction")
    label = name or trace.network
    figure.suptitle(
        _title(f"{label}, variant {variant}: density per Winograd position (xi, nu)", trace.provenance.synthetic)
    )
    return figure


def trace_figures(trace: Trace, out_dir: str | os.PathLike[str], stem: str) -> list[Path]:
    """Write the per-layer density figure and one per-position figure per Winograd-domain variant."""
    out = Path(out_dir)
    written = [save_png(layer_density_figure(trace, stem), out / f"{stem}-layer-density.png")]
    for variant in trace.variants:
        if variant.method != "spatial" and any(variant.domain(layer) == "winograd" for layer in trace.layers):
            written.append(
                save_png(
                    position_density_figure(trace, variant.name, stem),
                    out / f"{stem}-position-density-{variant.name}.png",
                )
            )
    return written


def sweep_figures(table: pd.DataFrame, grid_columns: Sequence[str], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Every sweep figure the results support: speedup vs PE count (when the grid varies the PE count),
    energy breakdown, cycle attribution and per-layer cycles (at the first design point)."""
    out = Path(out_dir)
    written: list[Path] = []
    pe = next((c for c in PE_COLUMNS if c in grid_columns), None)
    if "cycles" in table.columns and pe is not None:
        written.append(save_png(speedup_vs_pe_figure(table, grid_columns), out / "speedup-vs-pe.png"))
    if "energy_pj" in table.columns:
        written.append(save_png(energy_breakdown_figure(table, None, grid_columns), out / "energy-breakdown.png"))
    if all(c in table.columns for c, _ in CYCLE_PARTS) and (table["method"] == "winograd_relu").any():
        figure = cycle_attribution_figure(table, "winograd_relu", None, grid_columns)
        written.append(save_png(figure, out / "cycle-attribution-winograd_relu.png"))
    if "cycles" in table.columns:
        written.append(save_png(layer_cycles_figure(table, None, grid_columns), out / "layer-cycles.png"))
    return written
