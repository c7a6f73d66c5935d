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

from winosim.counts import METHODS, LayerCount, available
from winosim.errors import ConfigError
from winosim.integers import ceil_div
from winosim.trace import Trace

FORMATS: tuple[str, ...] = ("table", "md", "csv", "json", "latex")
HUMAN_FORMATS: tuple[str, ...] = ("table", "md", "latex")

SCOPES: tuple[str, ...] = ("layer", "winograd_layers", "total")
"""Row scopes: one layer; the sum over the layers of kind 'winograd'; the sum over all layers."""

REFERENCE_METHODS: tuple[str, ...] = ("dense_spatial", "dense_winograd")
"""The references every reduction is reported against (paper.md section 5: the paper does not say which)."""

METHOD_LABELS: dict[str, str] = {
    "dense_spatial": "dense spatial",
    "pruned_spatial": "pruned spatial",
    "dense_winograd": "dense Winograd",
    "native_winograd": "native pruned Winograd",
    "winograd_relu": "Winograd-ReLU",
}

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
    by_key: dict[tuple[int, str], list[LayerCount]] = {}
    for count in counts:
        by_key.setdefault((count.layer_index, count.method), []).append(count)
    sources = available(trace)
    records: list[dict[str, Any]] = []
    for index, layer in enumerate(trace.layers):
        for method in METHODS:
            base = {"scope": "layer", "layer": layer.name, "layer_index": index, "kind": layer.kind, "method": method}
            rows = by_key.get((index, method), [])
            if not rows and not sources[method]:
                records.append(
                    {**base, "variant": None, "available": False, "domain": None, "images": trace.images}
                    | dict.fromkeys(COUNT_COLUMNS)
                )
            for count in rows:
                records.append(
                    {
                        **base,
                        "variant": count.variant,
                        "available": True,
                        "domain": count.domain,
                        "images": count.images,
                    }
                    | {column: getattr(count, column) for column in COUNT_COLUMNS}
                )
    frame = pd.DataFrame.from_records(
        records,
        columns=[
            "scope",
            "layer",
            "layer_index",
            "kind",
            "method",
            "variant",
            "available",
            "domain",
            "images",
            *COUNT_COLUMNS,
        ],
    )
    frame = frame.astype({"layer_index": "Int64", "images": "int64", "available": "bool"})
    frame = frame.astype(dict.fromkeys(COUNT_COLUMNS, "Int64"))
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


SIM_KEY_COLUMNS: tuple[str, ...] = ("layer_index", "method", "variant")
SIM_SKIP_COLUMNS: frozenset[str] = frozenset(
    {"layer", "domain", "images", "multiplies", "input_transform_adds", "output_transform_adds"}
)
"""Simulator columns not merged into the run table: identifiers and the exact counts it already has."""

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


def run_frame(
    trace: Trace, counts: Sequence[LayerCount], sim: pd.DataFrame, pe_count: int, multipliers_per_pe: int
) -> pd.DataFrame:
    """The simulated `winosim run` table: `multiplies_frame` plus the simulator's per-layer columns (from
    `SimResult.to_frame()`), summed on the sum rows, with per-image values, speedups and energy reductions
    against both dense references. Rows of unavailable methods stay null."""
    base = count_frame(trace, counts)
    numeric = [
        c
        for c in sim.columns
        if c not in SIM_SKIP_COLUMNS
        and c not in SIM_KEY_COLUMNS
        and c != "utilisation"
        and pd.api.types.is_numeric_dtype(sim[c])
    ]
    left = base.assign(_variant=base["variant"].fillna(""), _index=base["layer_index"].astype("int64"))
    right = sim[[*SIM_KEY_COLUMNS, *numeric]].assign(
        _variant=sim["variant"].fillna(""), _index=sim["layer_index"].astype("int64")
    )
    right = right.drop(columns=["layer_index", "variant"])
    merged = left.merge(
        right,
        how="left",
        left_on=["_index", "method", "_variant"],
        right_on=["_index", "method", "_variant"],
        validate="one_to_one",
    )
    missing = merged["available"] & merged["cycles"].isna()
    if missing.any():
        first = merged[missing].iloc[0]
        raise ConfigError(
            f"run_frame: the simulation has no row for layer {first['layer']!r}, method {first['method']!r}"
        )
    merged = merged.drop(columns=["_variant", "_index"])
    integer = [c for c in numeric if pd.api.types.is_integer_dtype(sim[c])]
    merged = merged.astype(dict.fromkeys(integer, "Int64"))
    frame = with_totals(merged, [*COUNT_COLUMNS, *numeric])
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
                column.null if _is_null(value) else column.formatter(value)
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
