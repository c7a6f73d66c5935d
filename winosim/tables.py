"""Paper-style comparison tables from a sweep's tidy results (terminal, Markdown, CSV, JSON, LaTeX).

A sweep table (`winosim.sweep`) has one row per trace x design point x layer x method. The tables here sum
the layers of each (trace, point, method, variant) into network totals and compare every method with a
reference method *at the same design point* (the same array, memory and clock):

- speedup = reference cycles / method cycles (latency ratio on the same clock),
- energy reduction = reference energy / method energy,
- multiply reduction = reference multiplies / method multiplies,

the reference being dense spatial unless stated otherwise; every title says which. The wide tables have one
row per (trace, method, variant) and one column per design point, labelled by its grid values. Outputs made
from synthetic traces say so in their title. Rendering reuses `winosim.report` (the `run` table's renderer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from winosim.errors import ConfigError
from winosim.methods import METHOD_LABELS, sorted_methods
from winosim.report import FORMATS, Column, fmt_method, render

SYNTHETIC_BANNER = "SYNTHETIC TRACE: random masks from a generator, NOT a trained model; do not quote these numbers"

#: Columns summed over layers into network totals when present in the results.
SUM_COLUMNS: tuple[str, ...] = (
    "multiplies",
    "algorithmic_multiplies",
    "cycles",
    "latency_s",
    "energy_pj",
    "compute_cycles",
    "dram_stall_cycles",
    "transform_stall_cycles",
    "imbalance_idle_cycles",
)

RATIOS: dict[str, tuple[str, str]] = {
    "speedup": ("cycles", "speedup over {reference} on the same design point ({reference} cycles / method cycles)"),
    "energy": (
        "energy_pj",
        "energy reduction vs {reference} on the same design point ({reference} energy / method energy)",
    ),
    "multiplies": ("multiplies", "multiply reduction vs {reference} ({reference} multiplies / method multiplies)"),
}
"""Table kinds: the summed column compared, and the title (with the reference method's label)."""


def energy_component_columns(table: pd.DataFrame) -> list[str]:
    """Energy breakdown columns of a results table: every `<part>_pj` column but the total `energy_pj`, in
    table order (the simulator's multiply_pj, add_pj, register_file_pj, accumulator_pj, buffer_pj, dram_pj)."""
    return [c for c in table.columns if str(c).endswith("_pj") and c != "energy_pj"]


def _method_rank(methods: pd.Series) -> pd.Series:
    order = sorted_methods(methods.astype(str))
    return methods.astype(str).map({m: i for i, m in enumerate(order)})


def method_totals(table: pd.DataFrame, grid_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Network totals: one row per (trace, point, method, variant), with the grid columns kept and every
    summable column (`SUM_COLUMNS` and energy components) summed over the layers. Sorted by trace order of
    appearance, point, method order, variant."""
    for column in ("trace", "point", "method", "variant", "layer_index"):
        if column not in table.columns:
            raise ConfigError(f"results table lacks column {column!r}: not a winosim sweep table")
    missing = [c for c in grid_columns if c not in table.columns]
    if missing:
        raise ConfigError(f"results table lacks the grid columns {missing}")
    keys = ["trace", "point", *grid_columns, "method", "variant"]
    if "synthetic" in table.columns:
        keys.insert(1, "synthetic")
    summed = [c for c in (*SUM_COLUMNS, *energy_component_columns(table)) if c in table.columns]
    frame = table.copy()
    frame["variant"] = frame["variant"].astype(object).where(frame["variant"].notna(), None)
    totals = frame.groupby(keys, dropna=False, sort=False)[summed].sum(min_count=1).reset_index()
    trace_order = {name: i for i, name in enumerate(dict.fromkeys(table["trace"]))}
    order = pd.DataFrame(
        {
            "t": totals["trace"].map(trace_order),
            "p": totals["point"],
            "m": _method_rank(totals["method"]),
            "v": totals["variant"].fillna("").astype(str),
        }
    ).sort_values(["t", "p", "m", "v"], kind="mergesort")
    return totals.loc[order.index].reset_index(drop=True)


def with_reference_ratio(totals: pd.DataFrame, value: str, name: str, reference: str = "dense_spatial") -> pd.DataFrame:
    """Add column `name` = reference total / row total, the reference being `reference`'s row of the same
    (trace, point). Null where the reference is missing; +inf where the row total is 0."""
    if value not in totals.columns:
        raise ConfigError(f"results have no {value!r} column (a counts-only sweep has multiplies only)")
    refs = totals[totals["method"] == reference]
    if refs.empty:
        raise ConfigError(f"results have no {reference!r} rows to compare against")
    if refs.duplicated(["trace", "point"]).any():
        raise ConfigError(f"reference method {reference!r} has several rows per point")
    lookup = refs.set_index(["trace", "point"])[value].astype("float64")
    index = pd.MultiIndex.from_frame(totals[["trace", "point"]])
    ref_values = lookup.reindex(index).to_numpy()
    values = totals[value].astype("float64").to_numpy()
    result = totals.copy()
    result[name] = [
        (r / v if v != 0 else (math.inf if r > 0 else math.nan)) for r, v in zip(ref_values, values, strict=True)
    ]
    return result


def point_labels(totals: pd.DataFrame, grid_columns: Sequence[str]) -> dict[int, str]:
    """Design point index -> label from its grid values, e.g. 'pe=64 zero=skip' ('default' without a grid)."""
    labels: dict[int, str] = {}
    for row in totals.drop_duplicates("point").to_dict("records"):
        labels[int(row["point"])] = " ".join(f"{c}={row[c]}" for c in grid_columns) or "default"
    return labels


def _wide(
    totals: pd.DataFrame, value: str, grid_columns: Sequence[str], labels: Mapping[int, str] | None
) -> pd.DataFrame:
    """Pivot totals to rows (trace, method, variant) x one column per design point, in stable order."""
    labels = dict(labels) if labels is not None else point_labels(totals, grid_columns)
    totals = totals.assign(variant=totals["variant"].fillna(""))
    wide = totals.pivot_table(
        index=["trace", "method", "variant"], columns="point", values=value, aggfunc="first", sort=False
    )
    wide = wide.reindex(columns=sorted(wide.columns)).rename(columns=labels).reset_index()
    rank = pd.DataFrame(
        {
            "t": wide["trace"].map({n: i for i, n in enumerate(dict.fromkeys(totals["trace"]))}),
            "m": _method_rank(wide["method"]),
            "v": wide["variant"],
        }
    ).sort_values(["t", "m", "v"], kind="mergesort")
    wide = wide.loc[rank.index].reset_index(drop=True)
    wide["variant"] = wide["variant"].where(wide["variant"] != "", None)
    wide.columns.name = None
    return wide


def ratio_table(
    table: pd.DataFrame,
    kind: str,
    grid_columns: Sequence[str] = (),
    reference: str = "dense_spatial",
    labels: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """Wide table of one ratio (`kind` in RATIOS): rows (trace, method, variant), one column per design
    point, value = reference total / method total at that point. Columns are labelled by `labels` (point
    index -> label, e.g. the sweep manifest's) or else by the points' grid values."""
    if kind not in RATIOS:
        raise ConfigError(f"unknown table kind {kind!r}; expected one of {', '.join(RATIOS)}")
    value, _ = RATIOS[kind]
    totals = with_reference_ratio(method_totals(table, grid_columns), value, "ratio", reference)
    return _wide(totals, "ratio", grid_columns, labels)


def _fmt_ratio(value: Any) -> str:
    number = float(value)
    return "inf" if math.isinf(number) else f"{number:.2f}x"


def table_title(kind: str, reference: str = "dense_spatial", synthetic: bool = False) -> list[str]:
    """Title lines of a ratio table: what is compared with what, and a synthetic warning when needed."""
    _, template = RATIOS[kind]
    lines = [template.format(reference=METHOD_LABELS.get(reference, reference)).capitalize()]
    if synthetic:
        lines.insert(0, SYNTHETIC_BANNER)
    return lines


def _wide_columns(wide: pd.DataFrame, fmt: str, value: Callable[[Any], str]) -> list[Column]:
    """The columns of a wide table in `fmt`: trace, method, variant, then one per design point shown by `value`."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    point_columns = [c for c in wide.columns if c not in ("trace", "method", "variant")]
    return [
        Column("trace", "trace", text=True),
        Column("method", "method", fmt_method, text=True),
        Column("variant", "variant", text=True, null=""),
        *(Column(c, str(c), value) for c in point_columns),
    ]


def render_ratio_table(
    wide: pd.DataFrame,
    fmt: str,
    *,
    kind: str,
    reference: str = "dense_spatial",
    synthetic: bool = False,
    notes: Sequence[str] = (),
) -> str:
    """Render a `ratio_table` in `fmt` (one of winosim.report.FORMATS)."""
    columns = _wide_columns(wide, fmt, _fmt_ratio)
    meta = {"table": kind, "reference": reference, "synthetic": synthetic}
    return render(
        wide,
        fmt,
        columns=columns,
        meta=meta,
        title=table_title(kind, reference, synthetic),
        notes=notes,
        group="trace",
    )


def per_image_table(
    table: pd.DataFrame,
    value: str,
    grid_columns: Sequence[str] = (),
    scale: float = 1.0,
    labels: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """Wide table of network totals per image: rows (trace, method, variant), one column per design point,
    value = sum over layers of `value` / images * `scale` (e.g. energy_pj with scale 1e-6 gives µJ)."""
    if value not in table.columns:
        raise ConfigError(f"results have no {value!r} column")
    totals = method_totals(table, grid_columns)
    images = table.groupby("trace", sort=False)["images"].first() if "images" in table.columns else None
    per_image = totals[value].astype("float64") * scale
    if images is not None:
        per_image = per_image / totals["trace"].map(images).astype("float64")
    return _wide(totals.assign(per_image=per_image), "per_image", grid_columns, labels)


def render_value_table(
    wide: pd.DataFrame,
    fmt: str,
    *,
    title: Sequence[str],
    digits: int = 3,
    synthetic: bool = False,
    notes: Sequence[str] = (),
) -> str:
    """Render a `per_image_table` (or any wide table with trace/method/variant columns) in `fmt`."""
    columns = _wide_columns(wide, fmt, lambda v: f"{float(v):,.{digits}f}")
    lines = [SYNTHETIC_BANNER, *title] if synthetic else list(title)
    return render(wide, fmt, columns=columns, meta={"synthetic": synthetic}, title=lines, notes=notes, group="trace")
