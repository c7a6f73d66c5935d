"""The event model against a deliberately simple per-cycle reference model (tests/sim/sim_reference.py).

On every layer of a tiny network (stem, Winograd, strided, 1x1, FC), under the dense and sparse methods,
for every zero handling of weights and activations, both partitions, both assignments and the Cartesian PE,
the two models must agree exactly on the total cycles, the attribution of every cycle and the busy cycles
of every block.
"""

from __future__ import annotations

import itertools

import pytest
from sim_helpers import small_arch
from sim_reference import simulate_layer_reference

from winosim.archio import apply_overrides
from winosim.energy import energy_table
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.sim.layer import simulate_layer
from winosim.sim.plan import plan_layer
from winosim.synthetic import synthetic_trace
from winosim.trace import Trace
from winosim.workload import lower_layer

MODES = ("none", "gate", "skip")
CONFIGS = [
    {"partition": partition, "assignment": assignment, "weight_zeros": w, "activation_zeros": a}
    for partition, assignment in itertools.product(("output_channels", "tiles"), ("static", "dynamic"))
    for w, a in itertools.product(MODES, MODES)
] + [
    {"partition": "tiles", "assignment": assignment, "pe_kind": "cartesian", "weight_zeros": w, "activation_zeros": a}
    for assignment in ("static", "dynamic")
    for w, a in itertools.product(("none", "skip"), ("none", "skip"))
]
SLOW_DRAM = [  # DRAM-bound: reads and writes contend for the channel, weights stream, inputs are re-fetched
    {"partition": "output_channels", "assignment": "dynamic", "weight_zeros": "skip", "activation_zeros": "skip"},
    {"partition": "tiles", "assignment": "static", "weight_zeros": "gate", "activation_zeros": "skip"},
]
METHOD_VARIANTS = (
    ("dense_spatial", None),
    ("pruned_spatial", "spatial"),
    ("dense_winograd", None),
    ("native_winograd", "native"),
    ("winograd_relu", "winograd_relu"),
)


def _label(config: dict[str, str]) -> str:
    return "-".join(str(v) for v in config.values())


SMALL_BUFFER = [  # one row does not fit: passes are strips of segments of a row; inputs are fetched again
    {"partition": "output_channels", "assignment": "dynamic", "weight_zeros": "skip", "activation_zeros": "skip"},
    {"partition": "tiles", "assignment": "dynamic", "weight_zeros": "skip", "activation_zeros": "gate"},
]
CASES = [(c, 8, 6144) for c in CONFIGS] + [(c, 1, 6144) for c in SLOW_DRAM] + [(c, 4, 3072) for c in SMALL_BUFFER]
IDS = (
    [_label(c) for c in CONFIGS]
    + [f"slow-dram-{_label(c)}" for c in SLOW_DRAM]
    + [f"small-buffer-{_label(c)}" for c in SMALL_BUFFER]
)


@pytest.mark.parametrize(("config", "bandwidth", "buffer_bytes"), CASES, ids=IDS)
def test_event_model_matches_per_cycle_reference(
    tiny_trace: Trace, config: dict[str, str], bandwidth: int, buffer_bytes: int
) -> None:
    arch = apply_overrides(
        small_arch(**config),
        {"memory.dram_bandwidth_bytes_per_cycle": bandwidth, "memory.global_buffer_bytes": buffer_bytes},
    )
    table = energy_table(arch.energy_table)
    sparse_only = config["weight_zeros"] != "skip" or config["activation_zeros"] != "skip"
    for index in range(len(tiny_trace.layers)):
        for method, variant in METHOD_VARIANTS:
            if sparse_only and variant is None:
                continue  # dense methods ignore the zero handling: checked once, under skip/skip
            work = lower_layer(tiny_trace, index, method, None if variant is None else tiny_trace.variant(variant))
            stats = simulate_layer(work, arch, table).stats
            ref = simulate_layer_reference(tiny_trace, index, method, variant, arch)
            where = f"{tiny_trace.layers[index].name}/{method}"
            assert stats.cycles == ref.total_cycles, where
            assert stats.compute_cycles == ref.compute_cycles, where
            assert stats.imbalance_idle_cycles == ref.imbalance_idle_cycles, where
            assert stats.transform_stall_cycles == ref.transform_stall_cycles, where
            assert stats.dram_stall_cycles == ref.dram_stall_cycles, where
            assert stats.pe_array_busy_cycles == ref.busy["pe_array"], where
            assert stats.input_transform_busy_cycles == ref.busy.get("input_transform", 0), where
            assert stats.output_transform_busy_cycles == ref.busy.get("output_transform", 0), where
            assert stats.dram_channel_busy_cycles == ref.busy["loader"] + ref.busy["writer"], where


def test_streamed_weights_and_refetched_inputs_match_reference() -> None:
    """A buffer too small for one output channel's weights (streamed for every row group) and for the whole
    input map beside them (fetched again for every k-block): the models still agree, and DRAM moves more."""
    geometry = NetworkGeometry(
        "deep_small",
        2,
        2,
        10,
        (
            LayerGeometry("deep", "winograd", "conv", 32, 8, 2, 2, 3, 1, 1),
            LayerGeometry("deep_spatial", "spatial", "conv", 40, 8, 2, 2, 3, 2, 1),
        ),
    )
    trace = synthetic_trace(geometry, images=3, seed=5)
    arch = apply_overrides(
        small_arch(), {"memory.global_buffer_bytes": 1536, "memory.dram_bandwidth_bytes_per_cycle": 2}
    )
    table = energy_table(arch.energy_table)
    plans = []
    for index in range(len(trace.layers)):
        for method, variant in METHOD_VARIANTS:
            work = lower_layer(trace, index, method, None if variant is None else trace.variant(variant))
            plans.append(plan_layer(work, arch))
            stats = simulate_layer(work, arch, table).stats
            ref = simulate_layer_reference(trace, index, method, variant, arch)
            assert (stats.cycles, stats.compute_cycles, stats.dram_stall_cycles) == (
                ref.total_cycles,
                ref.compute_cycles,
                ref.dram_stall_cycles,
            )
            assert stats.transform_stall_cycles == ref.transform_stall_cycles
    assert any(not p.weights_resident for p in plans) and any(not p.input_resident for p in plans)
