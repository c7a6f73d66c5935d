"""Figures (winosim.figures): every figure renders from a results table or a trace, the same inputs give
the same PNG bytes, figures of synthetic traces say so, and missing result columns are clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from winosim.errors import ConfigError
from winosim.figures import (
    cycle_attribution_figure,
    energy_breakdown_figure,
    layer_cycles_figure,
    layer_density_figure,
    position_density_figure,
    save_png,
    speedup_vs_pe_figure,
    sweep_figures,
    trace_figures,
)
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.synthetic import synthetic_trace
from winosim.trace import Trace

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _trace() -> Trace:
    network = NetworkGeometry(
        name="tiny",
        input_height=8,
        input_width=8,
        num_classes=4,
        layers=(
            LayerGeometry("conv1", "spatial", "conv", 3, 8, 8, 8, 3, 1, 1),
            LayerGeometry("conv2", "winograd", "conv", 8, 8, 8, 8, 3, 1, 1),
            LayerGeometry("fc", "spatial", "fc", 8, 4, 1, 1, 1, 1, 0),
        ),
    )
    return synthetic_trace(network, images=2, seed=3)


def _results() -> pd.DataFrame:
    """A small simulator-shaped table: 3 PE counts x 3 layers x 3 methods, cycles split into four parts."""
    rows = []
    for point, pe in enumerate((16, 32, 64)):
        for m, method in enumerate(("dense_spatial", "dense_winograd", "winograd_relu")):
            for layer in range(3):
                compute = (3 - m) * 1000 * (layer + 1) // pe
                parts = {
                    "compute_cycles": compute,
                    "dram_stall_cycles": 10 * layer,
                    "transform_stall_cycles": 5 * m,
                    "imbalance_idle_cycles": 3,
                }
                rows.append(
                    {
                        "trace": "tiny.npz",
                        "synthetic": True,
                        "point": point,
                        "pe": pe,
                        "pe_array.pe_count": pe,
                        "layer": f"conv{layer}",
                        "layer_index": layer,
                        "method": method,
                        "variant": "winograd_relu" if method == "winograd_relu" else None,
                        "images": 2,
                        "multiplies": compute * pe,
                        "cycles": sum(parts.values()),
                        **parts,
                        "energy_pj": 3.0 * compute,
                        "multiply_pj": 1.0 * compute,
                        "dram_pj": 2.0 * compute,
                    }
                )
    return pd.DataFrame(rows)


def _suptitle(figure: Figure) -> str:
    return figure.get_suptitle()


def test_every_sweep_figure_renders_to_a_png_with_a_synthetic_warning(tmp_path: Path) -> None:
    results = _results()
    for figure in (
        speedup_vs_pe_figure(results, ["pe"]),
        energy_breakdown_figure(results),
        cycle_attribution_figure(results),
        layer_cycles_figure(results, point=2),
    ):
        assert "SYNTHETIC" in _suptitle(figure)
    written = sweep_figures(results, ["pe"], tmp_path)
    assert [p.name for p in written] == [
        "speedup-vs-pe.png",
        "energy-breakdown.png",
        "cycle-attribution-winograd_relu.png",
        "layer-cycles.png",
    ]
    for path in written:
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_the_same_inputs_give_the_same_png_bytes(tmp_path: Path) -> None:
    results = _results()
    a = save_png(speedup_vs_pe_figure(results, ["pe"]), tmp_path / "a.png").read_bytes()
    b = save_png(speedup_vs_pe_figure(results, ["pe"]), tmp_path / "b.png").read_bytes()
    assert a == b
    assert b"Software" not in a and b"matplotlib" not in a.lower()


def test_trace_density_figures(tmp_path: Path) -> None:
    trace = _trace()
    assert "SYNTHETIC" in _suptitle(layer_density_figure(trace))
    figure = position_density_figure(trace, "winograd_relu")
    images = [np.asarray(ax.images[0].get_array()) for ax in figure.axes if ax.images]
    assert [np.shape(a) for a in images] == [(4, 4), (4, 4)]  # one Winograd layer: weights, activations
    masks = trace.variant("winograd_relu").masks[1]
    np.testing.assert_allclose(images[1], masks.activation.reshape(-1, 16).mean(axis=0).reshape(4, 4))
    written = trace_figures(trace, tmp_path, "tiny")
    assert sorted(p.name for p in written) == [
        "tiny-layer-density.png",
        "tiny-position-density-native.png",
        "tiny-position-density-winograd_relu.png",
    ]
    with pytest.raises(ConfigError, match="spatial"):
        position_density_figure(trace, "spatial")


def test_figures_name_the_columns_they_lack() -> None:
    counts_only = _results().drop(columns=["cycles", "compute_cycles", "energy_pj"])
    with pytest.raises(ConfigError, match="cycles"):
        speedup_vs_pe_figure(counts_only, ["pe"])
    with pytest.raises(ConfigError, match="compute_cycles"):
        cycle_attribution_figure(counts_only)
    with pytest.raises(ConfigError, match="energy_pj"):
        energy_breakdown_figure(counts_only)
    with pytest.raises(ConfigError, match="design point 7"):
        layer_cycles_figure(_results(), point=7)
