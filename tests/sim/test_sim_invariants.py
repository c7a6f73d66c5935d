"""Conservation laws and monotonicity of the simulator, on the tiny network of sim_helpers.

Invariants first: multiplies are conserved (algorithmic = actual + gated + skipped, issued + skipped =
algorithmic), every cycle is attributed exactly once, every block's busy and stall cycles (measured
separately) add up to the layer's cycles, DRAM moves at least every tensor once, and the zero-skipping
multiplies equal the exact counts of winosim.counts. Then closed forms and edge cases: a dense layer that
never stalls takes exactly its multiplies / (P x M) cycles plus the pipeline's fill and drain; all-zero
activations cost no multiply. Then monotonicity (hypothesis): more PEs never increase compute cycles, more
DRAM bandwidth never increases total cycles.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_helpers import small_arch, tiny_network

from winosim import simulate
from winosim.arch import Arch, Partition
from winosim.archio import apply_overrides, default_arch
from winosim.counts import count_trace
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.sim.formats import footprint
from winosim.synthetic import synthetic_trace
from winosim.trace import LayerMasks, Trace
from winosim.workload import lower

MODES = ("none", "gate", "skip")


@pytest.mark.parametrize(("weights", "activations"), list(itertools.product(MODES, MODES)))
def test_multiplies_are_conserved(tiny_trace: Trace, weights: str, activations: str) -> None:
    result = simulate(tiny_trace, small_arch(weight_zeros=weights, activation_zeros=activations))
    exact = {(c.layer, c.method, c.variant): c for c in count_trace(tiny_trace)}
    for row in result.rows:
        s = row.stats
        count = exact[(row.layer, row.method, row.variant)]
        assert s.multiplies_actual + s.multiplies_gated + s.multiplies_skipped == s.multiplies_algorithmic
        assert s.multiplies_issued + s.multiplies_skipped == s.multiplies_algorithmic
        assert s.multiplies_algorithmic == count.algorithmic_multiplies
        if row.variant is None:  # dense baselines: skipping is off and nothing is zero
            assert s.multiplies_skipped == s.multiplies_gated == 0
        if weights == "none" and activations == "none":
            assert s.multiplies_actual == s.multiplies_algorithmic
        if weights != "none" and activations != "none":  # skip or gate on both: the paper's exact count
            assert s.multiplies == count.multiplies
        if weights != "skip" and activations != "skip":
            assert s.multiplies_skipped == 0
        assert s.accumulation_adds == s.multiplies_actual


def test_multiplies_equal_exact_counts_with_skipping_on_both_operands(tiny_trace: Trace) -> None:
    result = simulate(tiny_trace, small_arch())
    frame = result.to_frame()
    counts = {(c.layer, c.method, c.variant): c for c in count_trace(tiny_trace)}
    assert len(frame) == len(counts)
    for row in result.rows:
        count = counts[(row.layer, row.method, row.variant)]
        assert row.stats.multiplies == count.multiplies
        assert row.stats.output_transform_adds == count.output_transform_adds
        assert row.domain == count.domain


@pytest.mark.parametrize(
    "fields",
    [{}, {"partition": "tiles"}, {"partition": "tiles", "pe_kind": "cartesian"}, {"assignment": "static"}],
    ids=["oc-dynamic", "tiles", "cartesian", "oc-static"],
)
@pytest.mark.parametrize("bandwidth", [1, 8, 1000])
def test_every_cycle_is_attributed_once_and_every_block_adds_up(
    tiny_trace: Trace, fields: dict[str, str], bandwidth: int
) -> None:
    arch = apply_overrides(small_arch(**fields), {"memory.dram_bandwidth_bytes_per_cycle": bandwidth})
    for row in simulate(tiny_trace, arch).rows:
        s = row.stats
        parts = (s.compute_cycles, s.imbalance_idle_cycles, s.transform_stall_cycles, s.dram_stall_cycles)
        assert min(parts) >= 0
        assert sum(parts) == s.cycles
        assert s.compute_cycles + s.imbalance_idle_cycles == s.pe_array_busy_cycles
        for block in ("pe_array", "input_transform", "output_transform", "dram_channel"):
            busy, stall = getattr(s, f"{block}_busy_cycles"), getattr(s, f"{block}_stall_cycles")
            assert busy + stall == s.cycles, (row.layer, row.method, block)
        if row.domain == "spatial":
            assert s.input_transform_busy_cycles == s.output_transform_busy_cycles == s.transform_stall_cycles == 0
        assert 0.0 <= s.utilisation <= 1.0


@pytest.mark.parametrize("residency", ["dram", "buffer"])
@pytest.mark.parametrize("weight_format", ["dense", "bitmask", "csr"])
@pytest.mark.parametrize("buffer_bytes", [3072, 6144, 1 << 20])
def test_dram_moves_every_tensor_at_least_once(
    tiny_trace: Trace, weight_format: str, buffer_bytes: int, residency: str
) -> None:
    """Every weight comes from DRAM at least once; every input byte comes from DRAM or from the buffer (kept
    there by the previous layer) at least once; every output byte goes to DRAM or stays in the buffer."""
    arch = apply_overrides(
        small_arch(),
        {
            "memory.weight_format": weight_format,
            "memory.activation_format": weight_format,
            "memory.global_buffer_bytes": buffer_bytes,
            "memory.activation_residency": residency,
        },
    )
    width = arch.data_width_bits
    for row in simulate(tiny_trace, arch).rows:
        layer = tiny_trace.layers[row.layer_index]
        s = row.stats
        sparse = row.variant is not None
        variant = row.variant or ""
        w_fmt = weight_format if sparse else "dense"
        if sparse:
            masks = tiny_trace.variant(variant).masks[row.layer_index]
            weight_nnz, weight_size = int(masks.weight.sum()), masks.weight.size
        else:
            weight_size = layer.out_channels * layer.in_channels * (16 if row.domain == "winograd" else layer.kernel**2)
            weight_nnz = weight_size
        rows = layer.out_channels * layer.in_channels
        weight_unique = footprint(w_fmt, rows, weight_size // rows, weight_nnz, width).bytes
        map_rows = row.images * layer.in_channels * layer.in_height
        map_size = map_rows * layer.in_width
        if sparse and row.domain == "spatial":  # the stored map is compressed only where the trace has its mask
            act = tiny_trace.variant(variant).masks[row.layer_index].activation
            input_unique = footprint(weight_format, map_rows, layer.in_width, int(act.sum()), width).bytes
        else:
            input_unique = footprint("dense", map_rows, layer.in_width, map_size, width).bytes
        output_unique = row.images * layer.out_channels * layer.out_height * layer.out_width * width // 8
        assert s.dram_weight_read_bytes >= weight_unique
        assert s.dram_input_read_bytes + s.buffer_kept_input_bytes >= input_unique
        assert s.dram_output_write_bytes + s.buffer_kept_output_bytes == output_unique
        assert s.dram_bytes + s.buffer_kept_output_bytes >= weight_unique + output_unique
        assert s.buffer_output_bytes == output_unique + s.dram_output_write_bytes  # written, drained if not kept
        if residency == "dram":
            assert s.buffer_kept_input_bytes == s.buffer_kept_output_bytes == 0
        assert s.dram_metadata_bytes <= s.dram_weight_read_bytes + s.dram_input_read_bytes
        in_layer = s.dram_bytes - s.dram_prefetch_weight_bytes  # prefetched bytes moved during the previous layer
        assert s.dram_channel_busy_cycles >= -(-in_layer // arch.memory.dram_bandwidth_bytes_per_cycle)
        if w_fmt == "dense" and (not sparse or row.domain == "winograd"):
            assert s.dram_metadata_bytes == 0


def _fast_arch(pe_count: int = 4, multipliers: int = 2, partition: Partition = "output_channels") -> Arch:
    """Nothing but the PE array can stall: enormous DRAM bandwidth, buffer, accumulators and transform rate."""
    return apply_overrides(
        default_arch(),
        {
            "pe_array.pe_count": pe_count,
            "pe_array.multipliers_per_pe": multipliers,
            "pe_array.accumulator_entries": 1 << 20,
            "pe_array.partition": partition,
            "input_transform.count": 1 << 20,
            "output_transform.count": 1 << 20,
            "memory.dram_bandwidth_bytes_per_cycle": 1 << 30,
            "memory.global_buffer_bytes": 1 << 30,
            "memory.activation_residency": "dram",  # every layer reads its input: one cycle to fill
            "memory.weight_prefetch": "none",
        },
    )


@pytest.mark.parametrize("partition", ["output_channels", "tiles"])
def test_dense_cycles_equal_the_closed_form_when_nothing_stalls(partition: Partition) -> None:
    """Dense K=8, C=8, 8x8 layers on 4 PEs x 2 multipliers: every pass is balanced, so the array computes for
    exactly algorithmic / (P x M) cycles; the pipeline adds one cycle to fill (read; and input transform for
    Winograd) and one to drain (write; and output transform) per stage."""
    geometry = NetworkGeometry(
        "closed_form",
        8,
        8,
        10,
        (
            LayerGeometry("wino", "winograd", "conv", 8, 8, 8, 8, 3, 1, 1),
            LayerGeometry("one", "spatial", "conv", 8, 8, 8, 8, 1, 1, 0),
        ),
    )
    trace = synthetic_trace(geometry, images=2, seed=1)
    result = simulate(trace, _fast_arch(partition=partition), ["dense_spatial", "dense_winograd"])
    for row in result.rows:
        s = row.stats
        assert s.multiplies_algorithmic % 8 == 0
        closed_form = s.multiplies_algorithmic // (4 * 2)
        stages = 4 if row.domain == "winograd" else 2
        assert s.compute_cycles == closed_form, (row.layer, row.method)
        assert s.imbalance_idle_cycles == 0
        assert s.cycles == closed_form + stages, (row.layer, row.method)
        assert s.utilisation == pytest.approx(closed_form * 8 / (8 * s.cycles))


def _zero_activations(trace: Trace) -> Trace:
    variants = tuple(
        dataclasses.replace(v, masks=tuple(LayerMasks(m.weight, np.zeros_like(m.activation)) for m in v.masks))
        for v in trace.variants
    )
    return dataclasses.replace(trace, variants=variants)


def test_all_zero_activations_cost_no_multiplies(tiny_trace: Trace) -> None:
    trace = _zero_activations(tiny_trace)
    skipping = simulate(trace, small_arch())
    for row in skipping.rows:
        s = row.stats
        if row.variant is None:
            assert s.multiplies == s.multiplies_algorithmic > 0
            continue
        assert s.multiplies == s.multiplies_gated == 0
        assert s.multiplies_skipped == s.multiplies_algorithmic
        assert s.compute_cycles == s.pe_array_busy_cycles == 0
        assert s.cycles > 0  # data still moves
        assert row.energy.multiply_pj == 0.0
    gating = simulate(trace, small_arch(activation_zeros="gate"), ["winograd_relu"])
    for row in gating.rows:
        assert row.stats.multiplies == 0
        assert row.stats.multiplies_gated == row.stats.multiplies_issued > 0
        assert row.stats.compute_cycles > 0  # gating saves energy, not time


_SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(
    pe_counts=st.tuples(st.integers(1, 24), st.integers(1, 24)).map(sorted),
    partition=st.sampled_from(["output_channels", "tiles"]),
    assignment=st.sampled_from(["static", "dynamic"]),
)
def test_more_pes_never_increase_compute_cycles(
    tiny_trace: Trace, pe_counts: list[int], partition: str, assignment: str
) -> None:
    fewer, more = (
        simulate(tiny_trace, small_arch(pe_count=p, partition=partition, assignment=assignment)) for p in pe_counts
    )
    for a, b in zip(fewer.rows, more.rows, strict=True):
        assert b.stats.compute_cycles <= a.stats.compute_cycles, (a.layer, a.method, pe_counts)
        assert b.stats.multiplies == a.stats.multiplies


@_SETTINGS
@given(
    bandwidths=st.tuples(st.integers(1, 64), st.integers(1, 64)).map(sorted),
    partition=st.sampled_from(["output_channels", "tiles"]),
    buffer_bytes=st.sampled_from([3072, 6144, 1 << 16]),
)
def test_more_dram_bandwidth_never_increases_total_cycles(
    tiny_trace: Trace, bandwidths: list[int], partition: str, buffer_bytes: int
) -> None:
    slow, fast = (
        simulate(
            tiny_trace,
            apply_overrides(
                small_arch(partition=partition),
                {"memory.dram_bandwidth_bytes_per_cycle": bw, "memory.global_buffer_bytes": buffer_bytes},
            ),
        )
        for bw in bandwidths
    )
    for a, b in zip(slow.rows, fast.rows, strict=True):
        assert b.stats.cycles <= a.stats.cycles, (a.layer, a.method, bandwidths)


def test_same_inputs_give_the_same_result(tiny_trace: Trace) -> None:
    arch = small_arch(partition="tiles", assignment="dynamic")
    workload = lower(tiny_trace)
    first = simulate(tiny_trace, arch, workload=workload)
    second = simulate(tiny_trace, arch)
    assert first == second
    assert first.to_frame().equals(second.to_frame())


def test_tiny_network_fixture_has_every_kind_of_layer() -> None:
    kinds = {(layer.kind, layer.op, layer.stride, layer.kernel) for layer in tiny_network().layers}
    assert (
        ("winograd", "conv", 1, 3) in kinds and ("spatial", "fc", 1, 1) in kinds and ("spatial", "conv", 2, 3) in kinds
    )


@pytest.mark.parametrize("partition", ["output_channels", "tiles"])
@pytest.mark.parametrize(("weights", "activations"), list(itertools.product(MODES, MODES)))
def test_one_pe_with_one_multiplier_computes_for_exactly_the_issued_multiplies(
    tiny_trace: Trace, partition: str, weights: str, activations: str
) -> None:
    """The timing path (per-unit work from the per-row counts) and the counting path (pair counts) agree:
    one PE with one multiplier spends one cycle per issued multiply, never more, never less."""
    arch = small_arch(
        pe_count=1, multipliers_per_pe=1, partition=partition, weight_zeros=weights, activation_zeros=activations
    )
    for row in simulate(tiny_trace, arch).rows:
        assert row.stats.compute_cycles == row.stats.pe_array_busy_cycles == row.stats.multiplies_issued
        assert row.stats.imbalance_idle_cycles == 0
