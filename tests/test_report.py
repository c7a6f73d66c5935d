"""Reporting: one tidy frame behind every table, sums that never hide a missing method, labelled ratios,
and renderings that keep integers exact and say "n/a" rather than inventing a number."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from winosim.errors import ConfigError
from winosim.report import (
    FORMATS,
    Column,
    fmt_ratio,
    frame_records,
    latex_escape,
    render,
    with_ideal_cycles,
    with_ratios,
    with_totals,
)


def _frame() -> pd.DataFrame:
    """Two layers (one Winograd, one spatial) x three methods; variant n1 has no count for layer b."""
    rows = [
        ("a", 0, "winograd", "dense_spatial", None, True, 900),
        ("a", 0, "winograd", "dense_winograd", None, True, 400),
        ("a", 0, "winograd", "native_winograd", "n1", True, 100),
        ("b", 1, "spatial", "dense_spatial", None, True, 90),
        ("b", 1, "spatial", "dense_winograd", None, True, 90),
        ("b", 1, "spatial", "native_winograd", "n1", False, None),
    ]
    frame = pd.DataFrame(
        [
            {
                "scope": "layer",
                "layer": layer,
                "layer_index": index,
                "kind": kind,
                "method": method,
                "variant": variant,
                "available": ok,
                "images": 2,
                "multiplies": mults,
            }
            for layer, index, kind, method, variant, ok, mults in rows
        ]
    )
    return frame.astype({"layer_index": "Int64", "multiplies": "Int64"})


def test_totals_sum_layers_and_a_missing_layer_makes_the_sum_unavailable() -> None:
    frame = with_totals(_frame(), ["multiplies"])
    total = frame[frame["scope"] == "total"].set_index("method")
    assert total.loc["dense_spatial", "multiplies"] == 990
    assert total.loc["dense_winograd", "multiplies"] == 490
    assert pd.isna(total["multiplies"]["native_winograd"])
    assert not total.loc["native_winograd", "available"]
    winograd = frame[frame["scope"] == "winograd_layers"].set_index("method")
    assert winograd.loc["native_winograd", "multiplies"] == 100
    assert list(frame.columns) == list(_frame().columns)
    assert frame["multiplies"].dtype == "Int64"


def test_ratios_are_reference_over_row_matched_per_layer_and_sum() -> None:
    frame = with_ratios(with_totals(_frame(), ["multiplies"]), "multiplies", "reduction_vs")
    by_key = frame.set_index(["scope", "layer", "method"])
    assert by_key.loc[("layer", "a", "native_winograd"), "reduction_vs_dense_spatial"] == 9.0
    assert by_key.loc[("layer", "a", "native_winograd"), "reduction_vs_dense_winograd"] == 4.0
    assert by_key.loc[("layer", "a", "dense_winograd"), "reduction_vs_dense_spatial"] == 2.25
    assert by_key.loc[("total", "total", "dense_winograd"), "reduction_vs_dense_spatial"] == 990 / 490
    assert math.isnan(float(by_key["reduction_vs_dense_spatial"][("layer", "b", "native_winograd")]))


def test_ratio_against_zero_is_infinite_and_rendered_so() -> None:
    frame = _frame()
    frame.loc[2, "multiplies"] = 0
    ratios = with_ratios(frame, "multiplies", "speedup", references=("dense_spatial",))
    assert math.isinf(float(ratios["speedup_dense_spatial"][2]))
    assert fmt_ratio(float("inf")) == "inf"
    assert frame_records(ratios)[2]["speedup_dense_spatial"] is None  # JSON has no infinity


def test_ideal_cycles_are_a_ceiling_over_the_multipliers() -> None:
    frame = with_ideal_cycles(_frame(), pe_count=4, multipliers_per_pe=8)
    assert frame["ideal_cycles_bound"].tolist()[:3] == [29, 13, 4]  # ceil(900/32), ceil(400/32), ceil(100/32)
    assert frame["ideal_cycles_bound_per_image"].tolist()[:3] == [15, 7, 2]  # ceil(450/32), ...
    assert pd.isna(frame["ideal_cycles_bound"].iloc[5])
    with pytest.raises(ConfigError, match="pe_count must be an integer >= 1, got 0"):
        with_ideal_cycles(_frame(), pe_count=0, multipliers_per_pe=8)


COLUMNS = (
    Column("layer", "layer", text=True),
    Column("method", "method | how", text=True),
    Column("multiplies", "multiplies", lambda v: f"{int(v):,}"),
)


def test_machine_formats_keep_exact_integers_and_nulls() -> None:
    frame = _frame()
    document = json.loads(render(frame, "json", columns=COLUMNS, meta={"k": 1}))
    assert document["meta"] == {"k": 1}
    assert document["rows"][0]["multiplies"] == 900 and isinstance(document["rows"][0]["multiplies"], int)
    assert document["rows"][5]["multiplies"] is None and document["rows"][0]["variant"] is None
    csv_lines = render(frame, "csv", columns=COLUMNS, meta={}).splitlines()
    assert csv_lines[0] == "scope,layer,layer_index,kind,method,variant,available,images,multiplies"
    assert csv_lines[6] == "layer,b,1,spatial,native_winograd,n1,False,2,"


def test_human_formats_show_labels_and_n_a() -> None:
    frame = _frame()
    table = render(frame, "table", columns=COLUMNS, meta={}, title=["TITLE"], notes=["NOTE"], group="layer")
    lines = table.splitlines()
    assert lines[0] == "TITLE" and lines[-1] == "NOTE"
    assert lines[2].split() == ["layer", "method", "|", "how", "multiplies"]
    assert lines[-3].endswith("n/a") and lines[-2] == ""
    assert sum(1 for line in lines if set(line) <= {"-", " "} and line) == 2  # header rule + one group rule
    markdown = render(frame, "md", columns=COLUMNS, meta={})
    assert "| layer | method \\| how | multiplies |" in markdown
    assert "|:---|:---|---:|" in markdown
    latex = render(frame, "latex", columns=COLUMNS, meta={}, title=["50% sparse"])
    assert latex.startswith("% 50% sparse\n\\begin{tabular}{llr}")
    assert "dense\\_spatial & 900" in latex


def test_latex_escaping_and_unknown_format() -> None:
    assert latex_escape("a_b & 10% #1 {x} ~ ^ \\") == (
        r"a\_b \& 10\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{}"
    )
    assert "xml" not in FORMATS
    with pytest.raises(ConfigError, match="unknown format 'xml'"):
        render(_frame(), "xml", columns=COLUMNS, meta={})
