"""Results are frozen and additive, and `to_frame()` gives one tidy row per (layer, method, variant) with the
columns the CLI and the sweeps read."""

from __future__ import annotations

import dataclasses

import pytest
from sim_helpers import small_arch

from winosim import simulate
from winosim.errors import ConfigError
from winosim.methods import METHODS
from winosim.sim.results import EnergyBreakdown, LayerStats
from winosim.trace import Trace

REQUIRED = (
    "layer",
    "layer_index",
    "method",
    "variant",
    "images",
    "multiplies",
    "cycles",
    "latency_s",
    "energy_pj",
    "compute_cycles",
    "dram_stall_cycles",
    "transform_stall_cycles",
    "imbalance_idle_cycles",
    "utilisation",
    "multiplies_algorithmic",
    "multiplies_actual",
    "multiplies_gated",
    "multiplies_skipped",
    "input_transform_adds",
    "output_transform_adds",
    "accumulation_adds",
    "dram_weight_read_bytes",
    "dram_input_read_bytes",
    "dram_output_write_bytes",
    "dram_metadata_bytes",
    "buffer_weight_read_bytes",
    "rf_access_bytes",
    "dram_pj",
)


def test_frame_has_one_row_per_layer_and_method(tiny_trace: Trace) -> None:
    arch = small_arch()
    result = simulate(tiny_trace, arch)
    frame = result.to_frame()
    assert set(REQUIRED) <= set(frame.columns)
    assert len(frame) == len(tiny_trace.layers) * len(METHODS)
    assert list(frame["layer"].unique()) == [layer.name for layer in tiny_trace.layers]
    assert list(frame["method"][: len(METHODS)]) == list(METHODS)
    assert frame["cycles"].dtype.kind == "i" and frame["multiplies"].dtype.kind == "i"
    assert (frame["latency_s"] == frame["cycles"] / arch.clock_hz).all()


def test_stats_add_field_by_field(tiny_trace: Trace) -> None:
    result = simulate(tiny_trace, small_arch(), ["winograd_relu"])
    total, energy = result.total("winograd_relu")
    assert total == sum((row.stats for row in result.rows), LayerStats())
    assert total.cycles == sum(row.stats.cycles for row in result.rows)
    assert energy.energy_pj == pytest.approx(sum(row.energy.energy_pj for row in result.rows))
    assert isinstance(energy, EnergyBreakdown)
    with pytest.raises(dataclasses.FrozenInstanceError):
        total.cycles = 0  # type: ignore[misc]
    with pytest.raises(ValueError, match="cycles must be an integer >= 0"):
        LayerStats(cycles=-1)


def test_method_selection_and_progress(tiny_trace: Trace) -> None:
    calls: list[tuple[int, int]] = []
    result = simulate(
        tiny_trace, small_arch(), ["dense_spatial", "winograd_relu"], progress=lambda d, t: calls.append((d, t))
    )
    assert {row.method for row in result.rows} == {"dense_spatial", "winograd_relu"}
    assert calls == [(i, 2 * len(tiny_trace.layers)) for i in range(1, 2 * len(tiny_trace.layers) + 1)]
    with pytest.raises(ConfigError, match="unknown method"):
        simulate(tiny_trace, small_arch(), ["fast_fourier"])
    with pytest.raises(ConfigError, match="no method selected"):
        simulate(tiny_trace, small_arch(), [])
    with pytest.raises(ConfigError, match="winograd_relu selected more than once"):
        simulate(tiny_trace, small_arch(), ["winograd_relu", "dense_spatial", "winograd_relu"])
    single = dataclasses.replace(tiny_trace, variants=tiny_trace.variants[:1])
    with pytest.raises(ConfigError, match="no variant for method"):
        simulate(single, small_arch(), ["winograd_relu"])


def test_a_layer_that_cannot_be_tiled_is_a_config_error(tiny_trace: Trace) -> None:
    with pytest.raises(ConfigError, match="accumulator_entries = 8 is too small"):
        simulate(tiny_trace, small_arch(accumulator_entries=8))  # one Winograd column needs 16
    with pytest.raises(ConfigError, match="accumulator_entries = 8 is too small"):
        simulate(tiny_trace, small_arch(accumulator_entries=8, partition="tiles"))
    from winosim.archio import apply_overrides

    with pytest.raises(ConfigError, match="global_buffer_bytes = 256 is too small for layer"):
        simulate(tiny_trace, apply_overrides(small_arch(), {"memory.global_buffer_bytes": 256}))
