"""The simulator's fast paths change no result: they agree with the event model and with numbers recorded before
they existed.

`simulate` times the passes with `pipeline.solve_layer`, which evaluates the event model's recurrences without
an event queue, and keeps design-point-independent pieces (plans, per-unit work, makespans) in the workload's
memo. Invariants first, then the oracle, then golden numbers:

- the memo is invisible: a sequence of design points simulated with one reused workload gives exactly the
  frames of a fresh workload per point, also after pickling the workload (which empties the memo);
- the oracle is the simpy event model (`pipeline.run_layer`): on random pass timings (DRAM-bound, empty
  transfers, zero-cycle stages, one pass, no pass) the two give the same timeline, interval by interval;
  and `simulate_layer` gives the same result with either engine on every layer of the tiny network, for
  every zero handling, partition, assignment, the Cartesian PE, streamed weights and re-fetched inputs;
- golden: digests of every row (every count and energy, floats bit for bit) and readable network totals,
  recorded with the event model before the fast paths existed (commit e0d778c).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import pickle
import random
from typing import Any

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import small_arch

from winosim import simulate
from winosim.arch import Arch
from winosim.archio import apply_overrides, default_arch
from winosim.energy import energy_table
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.sim.layer import simulate_layer
from winosim.sim.pipeline import PassTiming, run_layer, solve_layer
from winosim.sim.plan import plan_layer
from winosim.sim.results import SimResult
from winosim.synthetic import synthetic_trace
from winosim.trace import Trace
from winosim.workload import lower

LAYER_ALONE = {
    "memory.activation_residency": "dram",
    "memory.batch_order": "layer",
    "memory.weight_prefetch": "none",
    "memory.weight_buffer_share": "half",
}
"""The between-layer settings the digests were recorded with (every layer alone, every byte through DRAM);
tests/sim/test_residency.py checks the others."""


def _archs() -> dict[str, Arch]:
    return {name: apply_overrides(arch, LAYER_ALONE) for name, arch in _recorded_archs().items()}


def _recorded_archs() -> dict[str, Arch]:
    return {
        "small": small_arch(),
        "small-tiles-static-gate": small_arch(partition="tiles", assignment="static", weight_zeros="gate"),
        "small-cartesian-dynamic": small_arch(partition="tiles", pe_kind="cartesian"),
        "small-slow-dram-tiny-buffer": apply_overrides(
            small_arch(), {"memory.dram_bandwidth_bytes_per_cycle": 1, "memory.global_buffer_bytes": 3072}
        ),
        "default-csr-8bit": apply_overrides(
            default_arch(), {"memory.weight_format": "csr", "memory.activation_format": "csr", "data_width_bits": 8}
        ),
    }


LATER_FIELDS = frozenset(
    {
        "boundary_stall_cycles",
        "buffer_kept_input_bytes",
        "buffer_kept_output_bytes",
        "dram_spill_write_bytes",
        "dram_prefetch_weight_bytes",
    }
)
"""Counts added after the digests were recorded (issue 13: between layers); every other field is unchanged."""


def _digest(result: SimResult) -> str:
    """sha256 (16 hex digits) of every record, floats written exactly (float.hex), without `LATER_FIELDS`."""
    rows = [
        [[k, v.hex() if isinstance(v, float) else v] for k, v in r.items() if k not in LATER_FIELDS]
        for r in result.records()
    ]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- the memo is invisible

SWEEP: list[
    dict[str, Any]
] = [  # points that share plans, units or makespans with earlier ones, and points that must not
    {"pe": 4},
    {"pe": 4, "pe_array.assignment": "static"},
    {"pe": 8, "pe_array.assignment": "static"},
    {"pe": 4, "memory.dram_bandwidth_bytes_per_cycle": 2},
    {"pe": 8, "pe_array.partition": "tiles"},
    {"pe": 4, "pe_array.partition": "tiles", "pe_array.assignment": "static"},
    {"pe": 4, "pe_array.partition": "tiles", "pe_array.multipliers_per_pe": 16},
    {"pe": 4, "pe_array.partition": "tiles", "pe_array.pe_kind": "cartesian", "pe_array.multipliers_per_pe": 16},
    {"pe": 4, "pe_array.weight_zeros": "gate"},
    {"pe": 4, "pe_array.multipliers_per_pe": 4},
    {"pe": 4, "pe_array.accumulator_entries": 64},
    {"pe": 4, "data_width_bits": 8},
    {"pe": 4, "memory.activation_format": "csr"},
    {"pe": 4, "memory.weight_format": "csr"},
    {"pe": 4, "memory.global_buffer_bytes": 3072},
    {"pe": 2, "memory.global_buffer_bytes": 3072},
    {"pe": 4},  # again, after everything above is in the memo
]


def test_reusing_a_workload_across_design_points_changes_nothing(tiny_trace: Trace) -> None:
    reused = lower(tiny_trace)
    for overrides in SWEEP:
        arch = apply_overrides(small_arch(), overrides)
        fresh = simulate(tiny_trace, arch, workload=lower(tiny_trace))
        assert simulate(tiny_trace, arch, workload=reused).rows == fresh.rows, overrides
    assert all(len(work.memo) > 0 for work in reused.works)
    copy = pickle.loads(pickle.dumps(reused))
    assert all(len(work.memo) == 0 for work in copy.works)
    arch = apply_overrides(small_arch(), SWEEP[0])
    assert simulate(tiny_trace, arch, workload=copy).rows == simulate(tiny_trace, arch, workload=reused).rows


# --------------------------------------------------------------------------- oracle: the event model


def _random_timing(rng: random.Random) -> PassTiming:
    passes = rng.choice([0, 1, 2, 3, rng.randint(4, 14)])
    high = rng.choice([1, 2, 5, 40])

    def cycles(zero_share: float) -> list[int]:
        return [0 if rng.random() < zero_share else rng.randint(1, high) for _ in range(passes)]

    transforms = rng.random() < 0.6
    pass_units = rng.choice([1, 2, 3, 4, 12])  # items of mixed room: whole passes and streamed rows
    units = [rng.choice([pass_units, rng.randint(1, pass_units)]) for _ in range(passes)]
    return PassTiming(
        read_cycles=cycles(rng.choice([0.0, 0.3, 0.7])),
        input_transform_cycles=cycles(rng.choice([0.0, 0.3])) if transforms else [0] * passes,
        compute_cycles=cycles(rng.choice([0.0, 0.2, 1.0])),
        output_transform_cycles=cycles(rng.choice([0.0, 0.3])) if transforms else [0] * passes,
        write_cycles=cycles(rng.choice([0.0, 0.1, 0.5])),
        has_transforms=transforms,
        item_units=None if pass_units == 1 else units,
        pass_units=pass_units,
    )


def test_solver_gives_the_event_models_timeline_on_random_timings() -> None:
    rng = random.Random(20261125)
    for _ in range(1500):
        timing = _random_timing(rng)
        assert solve_layer(timing) == run_layer(simpy.Environment(), timing), timing


_cycles = st.lists(st.integers(min_value=0, max_value=12), min_size=6, max_size=6)


_units = st.lists(st.integers(min_value=1, max_value=4), min_size=6, max_size=6)


@settings(max_examples=150, deadline=None)
@given(
    reads=_cycles,
    feeds=_cycles,
    computes=_cycles,
    drains=_cycles,
    writes=_cycles,
    transforms=st.booleans(),
    units=st.one_of(st.none(), _units),
)
def test_solver_gives_the_event_models_timeline(
    reads: list[int],
    feeds: list[int],
    computes: list[int],
    drains: list[int],
    writes: list[int],
    transforms: bool,
    units: list[int] | None,
) -> None:
    timing = PassTiming(reads, feeds, computes, drains, writes, transforms, units, 1 if units is None else 4)
    assert solve_layer(timing) == run_layer(simpy.Environment(), timing)


def test_room_needed_is_two_passes_back_when_every_pass_is_whole() -> None:
    whole = PassTiming([1] * 5, [0] * 5, [1] * 5, [0] * 5, [1] * 5, False)
    assert whole.room_needed() == [-1, -1, 0, 1, 2]
    # a streamed first pass of 3 rows (a third of a pass each), then whole passes: rows fill one pass's room
    mixed = PassTiming([1] * 6, [0] * 6, [1] * 6, [0] * 6, [1] * 6, False, [1, 1, 1, 3, 3, 3], 3)
    assert mixed.room_needed() == [-1, -1, -1, -1, 2, 3]


MODES = ("none", "gate", "skip")
ENGINE_CASES = [
    {"partition": p, "assignment": a, "weight_zeros": w, "activation_zeros": x}
    for p, a in itertools.product(("output_channels", "tiles"), ("static", "dynamic"))
    for w, x in itertools.product(MODES, MODES)
    if (w, x) in {("skip", "skip"), ("gate", "skip"), ("none", "none"), ("skip", "gate")}
] + [{"partition": "tiles", "pe_kind": "cartesian", "assignment": a} for a in ("static", "dynamic")]


@pytest.mark.parametrize("pe_fields", ENGINE_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
@pytest.mark.parametrize(
    "memory",
    [{}, {"memory.dram_bandwidth_bytes_per_cycle": 1}, {"memory.global_buffer_bytes": 3072}],
    ids=["small", "slow-dram", "small-buffer"],
)
def test_both_engines_give_the_same_layer_results(
    tiny_trace: Trace, pe_fields: dict[str, str], memory: dict[str, int]
) -> None:
    arch = apply_overrides(small_arch(**pe_fields), memory)
    table = energy_table(arch.energy_table)
    for work in lower(tiny_trace).works:
        fast = simulate_layer(work, arch, table)
        events = simulate_layer(work, arch, table, engine="events")
        assert fast == events, (work.layer.name, work.method)


def test_both_engines_agree_with_streamed_weights_and_refetched_inputs() -> None:
    """A buffer too small for one channel's weights (streamed for every group) and for the input map beside them
    (fetched again for every k-block), DRAM-bound: the network of test_sim_reference.py."""
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
    table = energy_table("mobile_lpddr4")
    plans = []
    for fields in ({}, {"partition": "tiles", "assignment": "static"}):
        arch = apply_overrides(
            small_arch(**fields), {"memory.global_buffer_bytes": 1536, "memory.dram_bandwidth_bytes_per_cycle": 2}
        )
        for work in lower(trace).works:
            plans.append(plan_layer(work, arch))
            fast = simulate_layer(work, arch, table)
            assert fast == simulate_layer(work, arch, table, engine="events"), (work.layer.name, work.method)
    assert any(not p.weights_resident for p in plans) and any(not p.input_resident for p in plans)


# ------------------------------------------- golden numbers (commit e0d778c; re-recorded when the model changed:
# issue 13's streamed fill and drain, winosim.sim.streaming: fewer cycles; counts, bytes and energy unchanged)

GOLDEN_DIGESTS = {
    "small": "aad8d3e97a8c243f",
    "small-tiles-static-gate": "73975612677f10b5",
    "small-cartesian-dynamic": "7b2eabe625bcb415",
    "small-slow-dram-tiny-buffer": "1088ba4d3c2309be",
    "default-csr-8bit": "be3cdaa698bdbf56",
}

# method: (cycles, compute, imbalance idle, transform stall, DRAM stall, DRAM bytes, energy pJ), network totals
GOLDEN_TOTALS = {
    "small": {
        "dense_spatial": (47505, 46324, 4, 0, 1177, 32824, 4178001.753975196),
        "pruned_spatial": (13409, 11344, 880, 0, 1185, 32824, 2688756.385924503),
        "dense_winograd": (31102, 29620, 4, 90, 1388, 37752, 3854935.224340221),
        "native_winograd": (13751, 10503, 1750, 90, 1408, 37752, 3040888.8240569644),
        "winograd_relu": (14457, 11983, 996, 90, 1388, 37752, 3105208.042951681),
    },
    "small-slow-dram-tiny-buffer": {
        "dense_spatial": (71760, 46324, 4, 0, 25432, 65208, 6302172.21194267),
        "pruned_spatial": (65627, 11358, 1429, 0, 52840, 65208, 4812926.843891977),
        "dense_winograd": (79150, 29620, 4612, 1150, 43768, 77816, 6495626.915701477),
        "native_winograd": (78239, 10523, 4091, 1446, 62179, 77816, 5681580.51541822),
        "winograd_relu": (78380, 11994, 2785, 1446, 62155, 77816, 5747046.6143129375),
    },
}


@pytest.mark.parametrize("name", list(GOLDEN_DIGESTS))
def test_results_are_those_recorded_before_the_fast_paths(tiny_trace: Trace, name: str) -> None:
    result = simulate(tiny_trace, _archs()[name])
    for method, variant in result.methods():
        if name in GOLDEN_TOTALS:
            stats, energy = result.total(method, variant)
            totals = (
                stats.cycles,
                stats.compute_cycles,
                stats.imbalance_idle_cycles,
                stats.transform_stall_cycles,
                stats.dram_stall_cycles,
                stats.dram_bytes,
                energy.energy_pj,
            )
            assert totals == GOLDEN_TOTALS[name][method], method
    assert _digest(result) == GOLDEN_DIGESTS[name]
