"""Reporting: tidy tables of per-layer results and their renderings (terminal, Markdown, CSV, JSON, LaTeX).

Everything a command prints goes through one tidy pandas DataFrame with one row per (layer, method,
variant), plus subtotal rows for the Winograd layers and total rows (column `scope`). The functions here
are pure and compose in steps, so another stage can add columns and reuse the rest:

    frame = count_frame(trace, counts)                       # per-layer rows, unavailable methods included
    frame = with_totals(frame, ["multiplies", ...])          # + "winograd_layers" and "total" scope rows
    frame = with_ratios(frame, "multiplies", "reduction_vs") # reduction vs dense spatial / dense Winograd
    frame = with_ideal_cycles(frame, pe_count=64, multipliers_per_pe=16)
    text = render(frame, "md", columns=RUN_COLUMNS, title=[...])

Conventions: counts are exact integers (nullable `Int64`, <NA> where a method is unavailable: the trace
lacks the masks, and nothing is estimated); per-image values are the totals over the trace's N images
divided by N; every ratio names its reference method in its column name. Human formats (table, md, latex)
show a selection of columns with labels and units; machine formats (csv, json) show every column raw.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from winosim.counts import LayerCount
from winosim.errors import ConfigError
from winosim.integers import ceil_div
from winosim.methods import METHOD_LABELS, METHODS, available
from winosim.sim.results import LayerResult, LayerStats, SimResult
from winosim.text import printable
from winosim.trace import Trace

FORMATS: tuple[str, ...] = ("table", "md", "csv", "json", "latex")
HUMAN_FORMATS: tuple[str, ...] = ("table", "md", "latex")

SCOPES: tuple[str, ...] = ("layer", "winograd_layers", "total")
"""Row scopes: one layer; the sum over the layers of kind 'winograd'; the sum over all layers."""

REFERENCE_METHODS: tuple[str, ...] = ("dense_spatial", "dense_winograd")
"""The references every reduction is reported against (paper.md section 5: the paper does not say which)."""

COUNT_COLUMNS: tuple[str, ...] = (
    "multiplies",
    "algorithmic_multiplies",
    "input_transform_adds",
    "output_transform_adds",
)
"""Integer count columns of `count_frame`, totals over the trace's N images."""

COLUMN_DOCS: dict[str, str] = {
    "scope": "'layer' (one layer), 'winograd_layers' (sum over the layers of kind winograd), 'total' (all layers)",
    "layer": "layer name; 'winograd_layers' or 'total' on the sum rows",
    "layer_index": "position of the layer in the network (null on sum rows)",
    "kind": "'winograd' (F(2x2,3x3)-eligible, pruned) or 'spatial' (stem, strided, 1x1, FC: spatial in every method)",
    "method": "one of " + ", ".join(METHODS),
    "variant": "the trace variant whose masks were counted (null for the dense methods and unavailable methods)",
    "available": "false when the trace has no variant for the method: its counts are null, never estimated",
    "domain": "'winograd' or 'spatial': where this method multiplies in this layer",
    "images": "N, the number of sample images the trace's activation masks cover",
    "multiplies": "exact multiplies issued by a machine that skips every zero operand, total over the N images",
    "multiplies_per_image": "multiplies / images",
    "algorithmic_multiplies": "multiplies of the same method and domain with no zero skipping, total over N images",
    "input_transform_adds": "additions of the input transforms B^T d B, total over N images",
    "output_transform_adds": "additions of the output transforms A^T M A, total over N images",
    "reduction_vs_dense_spatial": "dense spatial multiplies / this row's multiplies (same layer or same sum)",
    "reduction_vs_dense_winograd": "dense Winograd multiplies / this row's multiplies (same layer or same sum)",
    "ideal_cycles_bound": "ceil(multiplies / (pe * multipliers_per_pe)): a compute-bound LOWER BOUND over N images, "
    "not a simulated cycle count",
    "ideal_cycles_bound_per_image": "ceil(multiplies_per_image / (pe * multipliers_per_pe)): the same bound per image",
}


# --------------------------------------------------------------------------- tidy frames


def count_frame(trace: Trace, counts: Sequence[LayerCount]) -> pd.DataFrame:
    """One row per (layer, method, variant) in layer order then METHODS order, from `count_trace` rows.

    Methods the trace has no variant for get one row per layer with `available` False and null counts.
    """
    return _layer_frame(trace, [(count, {}) for count in counts], ())


def _layer_frame(
    trace: Trace, rows: Sequence[tuple[LayerCount, Mapping[str, Any]]], extra_columns: Sequence[str]
) -> pd.DataFrame:
    """The per-layer rows of a run table: for each row, the exact count's columns and the `extra_columns`
    of its mapping (simulated columns; null on the rows of unavailable methods), in layer then METHODS order.
    Integer extra columns become nullable `Int64`."""
    by_key: dict[tuple[int, str], list[tuple[LayerCount, Mapping[str, Any]]]] = {}
    for count, extra in rows:
        by_key.setdefault((count.layer_index, count.method), []).append((count, extra))
    sources = available(trace)
    records: list[dict[str, Any]] = []
    for index, layer in enumerate(trace.layers):
        for method in METHODS:
            base = {"scope": "layer", "layer": layer.name, "layer_index": index, "kind": layer.kind, "method": method}
            matching = by_key.get((index, method), [])
            if not matching and not sources[method]:
                records.append(
                    {**base, "variant": None, "available": False, "domain": None, "images": trace.images}
                    | dict.fromkeys(COUNT_COLUMNS)
                    | dict.fromkeys(extra_columns)
                )
            for count, extra in matching:
                records.append(
                    {
                        **base,
                        "variant": count.variant,
                        "available": True,
                        "domain": count.domain,
                        "images": count.images,
                    }
                    | {column: getattr(count, column) for column in COUNT_COLUMNS}
                    | {column: extra[column] for column in extra_columns}
                )
    columns = ["scope", "layer", "layer_index", "kind", "method", "variant", "available", "domain", "images"]
    frame = pd.DataFrame.from_records(records, columns=[*columns, *COUNT_COLUMNS, *extra_columns])
    frame = frame.astype({"layer_index": "Int64", "images": "int64", "available": "bool"})
    frame = frame.astype(dict.fromkeys(COUNT_COLUMNS, "Int64"))
    integer = [c for c in extra_columns if all(isinstance(extra[c], int) for _, extra in rows)]
    frame = frame.astype({c: "Int64" if c in integer else "float64" for c in extra_columns})
    frame.insert(list(frame.columns).index("multiplies") + 1, "multiplies_per_image", _per_image(frame))
    return frame


def _per_image(frame: pd.DataFrame) -> pd.Series:
    return (frame["multiplies"].astype("Float64") / frame["images"]).astype("float64")


def with_totals(frame: pd.DataFrame, sum_columns: Sequence[str]) -> pd.DataFrame:
    """Append sum rows per (method, variant): scope 'winograd_layers' (over layers of kind 'winograd', if
    any) and 'total' (all layers). A sum involving an unavailable row is null. Other columns are null on
    sum rows, except `multiplies_per_image`, recomputed from the summed multiplies."""
    layer_rows = frame[frame["scope"] == "layer"]
    parts = [frame]
    for scope, subset in (
        ("winograd_layers", layer_rows[layer_rows["kind"] == "winograd"]),
        ("total", layer_rows),
    ):
        if subset.empty:
            continue
        grouped = subset.groupby(["method", "variant"], dropna=False, sort=False)
        sums = grouped[list(sum_columns)].sum()
        complete = grouped["available"].all()
        for column in sum_columns:
            sums[column] = sums[column].where(complete)
        sums = sums.reset_index()
        sums["available"] = complete.to_numpy()
        sums["scope"] = scope
        sums["layer"] = scope
        sums["images"] = int(subset["images"].iloc[0])
        parts.append(sums)
    result = pd.concat(parts, ignore_index=True, sort=False)[list(frame.columns)]
    result = result.astype({column: frame[column].dtype for column in frame.columns})
    if "multiplies_per_image" in result.columns:
        result["multiplies_per_image"] = _per_image(result)
    return result


def with_ratios(
    frame: pd.DataFrame,
    value: str,
    prefix: str,
    references: Sequence[str] = REFERENCE_METHODS,
    reference_over_value: bool = True,
) -> pd.DataFrame:
    """Add one column `{prefix}_{reference}` per reference method: reference / row (a reduction or a
    speedup) when `reference_over_value`, else row / reference. Rows are matched on (scope, layer); the
    reference row is the reference method's row of the same layer or sum. Null where either is null;
    +inf where the divisor is 0 and the dividend is not."""
    result = frame.copy()
    numbers = frame[value].astype("Float64")
    for reference in references:
        ref_rows = frame[frame["method"] == reference]
        if ref_rows.duplicated(["scope", "layer"]).any():
            raise ConfigError(f"with_ratios: reference method {reference!r} has several rows per layer")
        lookup = ref_rows.set_index(["scope", "layer"])[value].astype("Float64")
        keys = pd.MultiIndex.from_frame(frame[["scope", "layer"]])
        ref_values = pd.Series(lookup.reindex(keys).to_numpy(), index=frame.index, dtype="Float64")
        dividend, divisor = (ref_values, numbers) if reference_over_value else (numbers, ref_values)
        ratio = (dividend / divisor).astype("float64")
        result[f"{prefix}_{reference}"] = ratio
    return result


def with_ideal_cycles(frame: pd.DataFrame, pe_count: int, multipliers_per_pe: int) -> pd.DataFrame:
    """Add `ideal_cycles_bound` = ceil(multiplies / (pe_count * multipliers_per_pe)) (over the N images) and
    `ideal_cycles_bound_per_image` = ceil(multiplies_per_image / (...)): compute-bound lower bounds."""
    for name, value in (("pe_count", pe_count), ("multipliers_per_pe", multipliers_per_pe)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"with_ideal_cycles: {name} must be an integer >= 1, got {value!r}")
    per_cycle = pe_count * multipliers_per_pe
    result = frame.copy()
    multiplies = frame["multiplies"].astype("Int64")
    result["ideal_cycles_bound"] = ceil_div(multiplies, per_cycle)
    per_image = ceil_div(multiplies, per_cycle * frame["images"].astype("Int64"))
    result["ideal_cycles_bound_per_image"] = per_image.astype("Int64")
    return result


def multiplies_frame(
    trace: Trace, counts: Sequence[LayerCount], pe_count: int, multipliers_per_pe: int
) -> pd.DataFrame:
    """The `winosim run` table: per-layer and sum rows, reductions vs both dense references, ideal bound."""
    frame = with_totals(count_frame(trace, counts), COUNT_COLUMNS)
    frame = with_ratios(frame, "multiplies", "reduction_vs")
    return with_ideal_cycles(frame, pe_count, multipliers_per_pe)


SIM_STATS_COLUMNS: tuple[str, ...] = tuple(
    name for name in LayerStats.field_names() if name not in ("cycles", "input_transform_adds", "output_transform_adds")
)
"""The simulator's counts in the run table: every `LayerStats` field but `cycles` (placed first) and the
transform adds. (The run table's `input_transform_adds` and `output_transform_adds` are the exact counts of
`winosim.counts`; the simulator's re-count each transform per k-block and stay in `SimResult.to_frame()`.)"""


def simulated_columns(result: SimResult, row: LayerResult) -> dict[str, Any]:
    """The simulator's columns of one row of the run table, in order: cycles, latency, energy, multiplies
    issued, DRAM bytes, then `SIM_STATS_COLUMNS` and the energy breakdown."""
    stats = row.stats
    columns: dict[str, Any] = {
        "cycles": stats.cycles,
        "latency_s": result.latency_s(stats.cycles),
        "energy_pj": row.energy.energy_pj,
        "multiplies_issued": stats.multiplies_issued,
        "dram_bytes": stats.dram_bytes,
    }
    columns.update((name, getattr(stats, name)) for name in SIM_STATS_COLUMNS)
    columns.update(row.energy.as_dict())
    return columns


SIM_COLUMN_DOCS: dict[str, str] = {
    "cycles": "simulated cycles of the layer (or sum) over the N images, on the given architecture",
    "cycles_per_image": "cycles / images",
    "latency_s": "cycles / clock_hz, over the N images",
    "latency_s_per_image": "latency_s / images",
    "energy_pj": "energy over the N images = simulated counts x the architecture's energy table (pJ)",
    "energy_pj_per_image": "energy_pj / images",
    "utilisation": "multiplies issued / (cycles x multipliers in the array)",
    "speedup_vs_dense_spatial": "dense spatial cycles / this row's cycles, same array (same layer or same sum)",
    "speedup_vs_dense_winograd": "dense Winograd cycles / this row's cycles, same array (same layer or same sum)",
    "energy_reduction_vs_dense_spatial": "dense spatial energy / this row's energy (same layer or same sum)",
    "energy_reduction_vs_dense_winograd": "dense Winograd energy / this row's energy (same layer or same sum)",
    "compute_cycles": "cycles in which the PE array computes (attribution; the four parts sum to cycles)",
    "dram_stall_cycles": "cycles the PE array waits on DRAM (attribution)",
    "transform_stall_cycles": "cycles the PE array waits on a transform unit (attribution)",
    "imbalance_idle_cycles": "cycles PEs idle from load imbalance (attribution)",
}


def run_frame(trace: Trace, result: SimResult, pe_count: int, multipliers_per_pe: int) -> pd.DataFrame:
    """The simulated `winosim run` table, from the simulation's rows alone: each row's exact counts and its
    simulated columns (`simulated_columns`), summed on the sum rows, with per-image values, speedups and
    energy reductions against both dense references. Rows of unavailable methods stay null."""
    rows = [(row.count, simulated_columns(result, row)) for row in result.rows]
    extra = tuple(rows[0][1]) if rows else ()
    frame = with_totals(_layer_frame(trace, rows, extra), [*COUNT_COLUMNS, *extra])
    frame["utilisation"] = (
        frame["multiplies_issued"].astype("Float64") / frame["multiplier_cycles"].astype("Float64")
    ).astype("float64")
    images = frame["images"].astype("float64")
    frame["cycles_per_image"] = frame["cycles"].astype("Float64").astype("float64") / images
    frame["latency_s_per_image"] = frame["latency_s"].astype("float64") / images
    frame["energy_pj_per_image"] = frame["energy_pj"].astype("float64") / images
    frame = with_ratios(frame, "multiplies", "reduction_vs")
    frame = with_ratios(frame, "cycles", "speedup_vs")
    frame = with_ratios(frame, "energy_pj", "energy_reduction_vs")
    return with_ideal_cycles(frame, pe_count, multipliers_per_pe)


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Column:
    """A column of a human-readable table: the frame column, its header, and how a value is written.

    `text` is True for left-aligned text columns; `formatter` is never called on null values, which are
    written as `null` (default "n/a": the value is unavailable).
    """

    key: str
    label: str
    formatter: Callable[[Any], str] = str
    text: bool = False
    null: str = "n/a"


def fmt_millions(value: Any) -> str:
    return f"{float(value) / 1e6:,.3f}"


def fmt_ratio(value: Any) -> str:
    number = float(value)
    return "inf" if math.isinf(number) else f"{number:.2f}x"


def fmt_int(value: Any) -> str:
    return f"{int(value):,}"


def fmt_method(value: Any) -> str:
    return METHOD_LABELS.get(str(value), str(value))


def fmt_layer(value: Any) -> str:
    return {"winograd_layers": "Winograd layers", "total": "TOTAL"}.get(str(value), str(value))


RUN_COLUMNS: tuple[Column, ...] = (
    Column("layer", "layer", fmt_layer, text=True),
    Column("kind", "kind", text=True, null=""),
    Column("method", "method", fmt_method, text=True),
    Column("variant", "variant", text=True, null=""),
    Column("multiplies_per_image", "mults/image (M)", fmt_millions),
    Column("reduction_vs_dense_spatial", "reduction vs dense spatial", fmt_ratio),
    Column("reduction_vs_dense_winograd", "reduction vs dense Winograd", fmt_ratio),
    Column("ideal_cycles_bound_per_image", "ideal cycles/image (bound)", fmt_int),
)
"""The human columns of `winosim run`."""


def fmt_microseconds(value: Any) -> str:
    return f"{float(value) * 1e6:,.1f}"


def fmt_microjoules(value: Any) -> str:
    return f"{float(value) / 1e6:,.2f}"


def fmt_thousands(value: Any) -> str:
    return f"{float(value) / 1e3:,.1f}"


RUN_SIM_COLUMNS: tuple[Column, ...] = (
    Column("layer", "layer", fmt_layer, text=True),
    Column("method", "method", fmt_method, text=True),
    Column("variant", "variant", text=True, null=""),
    Column("multiplies_per_image", "mults/img (M)", fmt_millions),
    Column("reduction_vs_dense_spatial", "reduction vs dense spatial", fmt_ratio),
    Column("reduction_vs_dense_winograd", "reduction vs dense Winograd", fmt_ratio),
    Column("cycles_per_image", "kcycles/img", fmt_thousands),
    Column("latency_s_per_image", "latency/img (us)", fmt_microseconds),
    Column("energy_pj_per_image", "energy/img (uJ)", fmt_microjoules),
    Column("speedup_vs_dense_spatial", "speedup vs dense spatial", fmt_ratio),
    Column("energy_reduction_vs_dense_spatial", "energy reduction vs dense spatial", fmt_ratio),
)
"""The human columns of the simulated `winosim run` table."""


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _cells(frame: pd.DataFrame, columns: Sequence[Column]) -> list[list[str]]:
    rows: list[list[str]] = []
    for record in frame[[c.key for c in columns]].itertuples(index=False, name=None):
        rows.append(
            [
                column.null if _is_null(value) else printable(column.formatter(value))
                for column, value in zip(columns, record, strict=True)
            ]
        )
    return rows


def render_text_table(
    frame: pd.DataFrame, columns: Sequence[Column], group: str | None = None, separator: str = "  "
) -> str:
    """A fixed-width terminal table; a rule between groups of rows with the same `group` value."""
    headers = [c.label for c in columns]
    body = _cells(frame, columns)
    widths = [max([len(h), *(len(row[i]) for row in body)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if column.text else cell.rjust(width)
            for cell, width, column in zip(cells, widths, columns, strict=True)
        ]
        return separator.join(parts).rstrip()

    rule = separator.join("-" * w for w in widths)
    out = [line(headers), rule]
    groups = frame[group].tolist() if group is not None else [None] * len(body)
    for i, row in enumerate(body):
        if i > 0 and groups[i] != groups[i - 1]:
            out.append(rule)
        out.append(line(row))
    return "\n".join(out) + "\n"


def render_markdown_table(frame: pd.DataFrame, columns: Sequence[Column]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""

    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    header = "| " + " | ".join(escape(c.label) for c in columns) + " |"
    align = "|" + "|".join(":---" if c.text else "---:" for c in columns) + "|"
    rows = ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in _cells(frame, columns)]
    return "\n".join([header, align, *rows]) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def render_latex_table(frame: pd.DataFrame, columns: Sequence[Column], group: str | None = None) -> str:
    """A booktabs `tabular` (needs \\usepackage{booktabs}); a \\midrule between groups."""
    spec = "".join("l" if c.text else "r" for c in columns)
    out = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(latex_escape(c.label) for c in columns) + r" \\"]
    out.append("\\midrule")
    groups = frame[group].tolist() if group is not None else None
    for i, row in enumerate(_cells(frame, columns)):
        if groups is not None and i > 0 and groups[i] != groups[i - 1]:
            out.append("\\midrule")
        out.append(" & ".join(latex_escape(cell) for cell in row) + r" \\")
    out += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(out) + "\n"


def _json_value(value: Any) -> Any:
    if _is_null(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):  # numpy scalar
        return _json_value(value.item())
    return value


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-able dicts in column order: ints stay ints, null/NaN/inf become None."""
    return [
        {column: _json_value(value) for column, value in zip(frame.columns, record, strict=True)}
        for record in frame.itertuples(index=False, name=None)
    ]


def render_json(frame: pd.DataFrame, meta: Mapping[str, Any]) -> str:
    """`{"rows": [...], "meta": {...}}`, indented, deterministic."""
    return json.dumps({"rows": frame_records(frame), "meta": dict(meta)}, indent=2, allow_nan=False) + "\n"


def render_csv(frame: pd.DataFrame) -> str:
    """Every column, header first, nulls empty, '\\n' line ends."""
    text: str = frame.to_csv(index=False, lineterminator="\n")
    return text


def render(
    frame: pd.DataFrame,
    fmt: str,
    *,
    columns: Sequence[Column],
    meta: Mapping[str, Any],
    title: Sequence[str] = (),
    notes: Sequence[str] = (),
    group: str | None = None,
) -> str:
    """Render `frame` in `fmt` (one of FORMATS). Human formats show `columns` with `title` lines above and
    `notes` below; csv and json show every column (json adds `meta`)."""
    if fmt == "csv":
        return render_csv(frame)
    if fmt == "json":
        return render_json(frame, meta)
    if fmt == "table":
        return "\n".join([*title, "", render_text_table(frame, columns, group), *notes]).lstrip("\n") + (
            "\n" if notes else ""
        )
    if fmt == "md":
        paragraphs = [*(f"{line}  " for line in title)]
        body = render_markdown_table(frame, columns)
        tail = [f"- {note}" for note in notes]
        return "\n".join([*paragraphs, "", body, *tail]).lstrip("\n") + ("\n" if tail else "")
    if fmt == "latex":
        comments = [f"% {line}" for line in [*title, *notes]]
        return "\n".join([*comments, render_latex_table(frame, columns, group)])
    raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
