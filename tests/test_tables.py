"""Paper-style tables from sweep results (winosim.tables): layers are summed into network totals, every
method is compared with the reference method at the same design point, and the rendered tables say what
they compare and whether the trace was synthetic."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from winosim.errors import ConfigError
from winosim.tables import (
    SYNTHETIC_BANNER,
    method_totals,
    ratio_table,
    render_ratio_table,
    with_reference_ratio,
)

METHODS = ("dense_spatial", "pruned_spatial", "dense_winograd", "native_winograd", "winograd_relu")
VARIANTS = {"pruned_spatial": "spatial", "native_winograd": "native", "winograd_relu": "winograd_relu"}
# cycles of layer 0 and layer 1 per method at pe=16; at pe=32 every value is halved
CYCLES = {
    "dense_spatial": (600, 1800),
    "pruned_spatial": (300, 300),
    "dense_winograd": (400, 800),
    "native_winograd": (100, 200),
    "winograd_relu": (50, 100),
}


def _results(synthetic: bool = False) -> pd.DataFrame:
    """A hand-made sweep table: 2 design points (pe=16, 32) x 2 layers x 5 methods, rows deliberately
    shuffled (method order reversed) to check that the tables sort them."""
    rows = []
    for point, pe in enumerate((16, 32)):
        for method in reversed(METHODS):
            for layer in (0, 1):
                cycles = CYCLES[method][layer] * 16 // pe
                rows.append(
                    {
                        "trace": "net.npz",
                        "trace_sha256": "0" * 64,
                        "synthetic": synthetic,
                        "point": point,
                        "pe": pe,
                        "layer": f"conv{layer}",
                        "layer_index": layer,
                        "method": method,
                        "variant": VARIANTS.get(method),
                        "images": 2,
                        "multiplies": cycles * pe * 16,
                        "cycles": cycles,
                        "energy_pj": 10.0 * cycles,
                        "dram_pj": 4.0 * cycles,
                        "multiply_pj": 6.0 * cycles,
                    }
                )
    return pd.DataFrame(rows)


def test_totals_sum_every_layer_once_per_point_and_method() -> None:
    results = _results()
    totals = method_totals(results, ["pe"])
    assert len(totals) == 2 * 5
    assert totals["cycles"].sum() == results["cycles"].sum()  # conservation: nothing lost or counted twice
    assert totals["dram_pj"].sum() == pytest.approx(results["dram_pj"].sum())
    assert totals["method"].tolist()[:5] == list(METHODS)  # method order restored
    first = totals.iloc[0]
    assert (first["pe"], first["method"], first["cycles"]) == (16, "dense_spatial", 2400)


def test_speedup_is_reference_cycles_over_method_cycles_at_the_same_point() -> None:
    wide = ratio_table(_results(), "speedup", ["pe"])
    assert list(wide.columns) == ["trace", "method", "variant", "pe=16", "pe=32"]
    by_method = wide.set_index("method")
    for method, (a, b) in CYCLES.items():
        expected = sum(CYCLES["dense_spatial"]) / (a + b)
        assert by_method.loc[method, "pe=16"] == pytest.approx(expected)
        assert by_method.loc[method, "pe=32"] == pytest.approx(expected)  # both halve: same ratio
    assert by_method.loc["dense_spatial", "pe=16"] == 1.0
    assert by_method.loc["winograd_relu", "variant"] == "winograd_relu"
    assert pd.isna(wide["variant"].iloc[0])  # the dense methods use no variant


def test_the_reference_can_be_any_method() -> None:
    wide = ratio_table(_results(), "energy", ["pe"], reference="dense_winograd").set_index("method")
    assert wide.loc["dense_winograd", "pe=16"] == 1.0
    assert wide.loc["winograd_relu", "pe=16"] == pytest.approx(1200 / 150)


def test_a_zero_total_gives_infinity_not_an_error() -> None:
    totals = pd.DataFrame(
        {"trace": ["t", "t"], "point": [0, 0], "method": ["dense_spatial", "winograd_relu"], "cycles": [10, 0]}
    )
    ratios = with_reference_ratio(totals, "cycles", "speedup")["speedup"].tolist()
    assert ratios[0] == 1.0 and math.isinf(ratios[1])


def test_missing_columns_and_references_are_config_errors() -> None:
    counts_only = _results().drop(columns=["cycles"])
    with pytest.raises(ConfigError, match="cycles"):
        ratio_table(counts_only, "speedup", ["pe"])
    with pytest.raises(ConfigError, match="no 'spatial_magic' rows"):
        ratio_table(_results(), "speedup", ["pe"], reference="spatial_magic")
    with pytest.raises(ConfigError, match="unknown table kind"):
        ratio_table(_results(), "area", ["pe"])
    with pytest.raises(ConfigError, match="grid columns"):
        method_totals(_results(), ["buffer"])


def test_markdown_rendering_golden() -> None:
    text = render_ratio_table(ratio_table(_results(), "speedup", ["pe"]), "md", kind="speedup")
    assert text == (
        "Speedup over dense spatial on the same design point (dense spatial cycles / method cycles)  \n"
        "\n"
        "| trace | method | variant | pe=16 | pe=32 |\n"
        "|:---|:---|:---|---:|---:|\n"
        "| net.npz | dense spatial |  | 1.00x | 1.00x |\n"
        "| net.npz | pruned spatial | spatial | 4.00x | 4.00x |\n"
        "| net.npz | dense Winograd |  | 2.00x | 2.00x |\n"
        "| net.npz | native pruned Winograd | native | 8.00x | 8.00x |\n"
        "| net.npz | Winograd-ReLU | winograd_relu | 16.00x | 16.00x |\n"
    )


@pytest.mark.parametrize("fmt", ["table", "md", "latex", "csv", "json"])
def test_every_format_renders_and_synthetic_results_say_so(fmt: str) -> None:
    wide = ratio_table(_results(synthetic=True), "energy", ["pe"])
    text = render_ratio_table(wide, fmt, kind="energy", synthetic=True)
    assert "pe=32" in text
    if fmt in ("table", "md", "latex"):
        assert SYNTHETIC_BANNER in text and "energy reduction vs dense spatial" in text.lower()
    if fmt == "json":
        assert '"synthetic": true' in text
    if fmt == "latex":
        assert "\\begin{tabular}" in text and "winograd\\_relu" in text
    with pytest.raises(ConfigError, match="unknown format"):
        render_ratio_table(wide, "html", kind="energy")
