"""Between layers (`winosim.sim.residency`): activations kept in the global buffer or spilled, the batch order,
and weights prefetched across layers.

Invariants first (the buffer never holds more than it has; every byte a layer alone moves through DRAM is
either still moved through DRAM or read from / kept in the buffer; attribution and busy + stall per block
still add up), then the per-cycle reference model of tests/sim/sim_reference.py with the same memory
decisions, then the two timing engines against each other.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from sim_helpers import small_arch
from sim_reference import simulate_layer_reference

from winosim import simulate
from winosim.arch import Arch
from winosim.archio import apply_overrides
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.sim.plan import PLAN, plan_layer
from winosim.sim.residency import LayerMemory, layer_footprint, network_memory, tensor_lifetimes
from winosim.sim.results import SimResult
from winosim.sim.traffic import layer_traffic
from winosim.synthetic import synthetic_trace
from winosim.trace import Trace
from winosim.workload import LayerWork, lower

BLOCKS = ("pe_array", "input_transform", "output_transform", "dram_channel")


def residual_network() -> NetworkGeometry:
    """A stem and two ResNet blocks, the second with a 1x1 shortcut (names as `winosim.geometry` gives them)."""
    return NetworkGeometry(
        name="tiny_resnet",
        input_height=8,
        input_width=8,
        num_classes=10,
        layers=(
            LayerGeometry("conv1", "spatial", "conv", 3, 8, 8, 8, 3, 1, 1),
            LayerGeometry("layer1.0.conv1", "winograd", "conv", 8, 8, 8, 8, 3, 1, 1),
            LayerGeometry("layer1.0.conv2", "winograd", "conv", 8, 8, 8, 8, 3, 1, 1),
            LayerGeometry("layer2.0.conv1", "winograd", "conv", 8, 12, 8, 8, 3, 1, 1),
            LayerGeometry("layer2.0.conv2", "winograd", "conv", 12, 12, 8, 8, 3, 1, 1),
            LayerGeometry("layer2.0.shortcut", "spatial", "conv", 8, 12, 8, 8, 1, 1, 0),
            LayerGeometry("fc", "spatial", "fc", 12, 10, 1, 1, 1),
        ),
    )


@pytest.fixture(scope="module")
def residual_trace() -> Trace:
    return synthetic_trace(residual_network(), images=2, weight_density=0.4, activation_density=0.5, seed=7)


def _arch(residency: str, order: str, prefetch: str, buffer_bytes: int, bandwidth: int = 8) -> Arch:
    return apply_overrides(
        small_arch(),
        {
            "memory.activation_residency": residency,
            "memory.batch_order": order,
            "memory.weight_prefetch": prefetch,
            "memory.global_buffer_bytes": buffer_bytes,
            "memory.dram_bandwidth_bytes_per_cycle": bandwidth,
        },
    )


SETTINGS = list(itertools.product(("dram", "buffer"), ("layer", "image"), ("none", "next_layer"), (6144, 16384)))
IDS = ["-".join(map(str, s)) for s in SETTINGS]


def test_tensors_live_from_their_producer_to_their_last_reader_or_residual_add() -> None:
    names = [layer.name for layer in residual_network().layers]
    tensors = {t.producer: t for t in tensor_lifetimes(names)}
    assert tensors[0].readers == (1,) and tensors[0].last == 2  # the first block's input: added after conv2
    assert tensors[1].readers == (2,) and tensors[1].last == 2
    assert tensors[2].readers == (3, 5) and tensors[2].last == 5  # the second block's input feeds its shortcut
    assert tensors[4].readers == (6,) and tensors[4].last == 6  # conv2's output waits for the shortcut's add
    assert 5 not in tensors and 6 not in tensors  # the shortcut adds into conv2's output; fc ends the network


def _memories(
    trace: Trace, arch: Arch
) -> dict[tuple[str, str | None], tuple[list[LayerWork], tuple[LayerMemory, ...]]]:
    """Per (method, variant): its layers' works and what `network_memory` decides for them."""
    workload = lower(trace)
    out: dict[tuple[str, str | None], list[LayerWork]] = {}
    for work in workload.works:
        out.setdefault((work.method, work.variant), []).append(work)
    result = {}
    for key, works in out.items():
        layers = []
        for work in works:
            plan = plan_layer(work, arch)
            layers.append(layer_footprint(work, plan, layer_traffic(work, plan, PLAN.key(arch), arch), arch))
        result[key] = (works, network_memory(layers, arch))
    return result


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_the_buffer_never_holds_more_than_it_has_and_spills_only_when_full(
    residual_trace: Trace, setting: tuple[str, str, str, int]
) -> None:
    arch = _arch(*setting)
    capacity = arch.memory.global_buffer_bytes
    for works, memories in _memories(residual_trace, arch).values():
        names = [w.layer.name for w in works]
        for memory in memories:
            assert memory.pressure_bytes <= capacity
            assert all(0 <= f <= 1 for f in (*memory.input_kept, *memory.output_kept))
        for tensor in tensor_lifetimes(names):
            kept = memories[tensor.producer].output_kept
            for reader in tensor.readers:
                assert memories[reader].input_kept == kept  # what one layer keeps, the next one reads
            if setting[0] == "dram":
                assert set(kept) == {Fraction(0)}
            elif min(kept) < 1:  # a spill: the buffer was full somewhere in the tensor's lifetime
                span = range(tensor.producer, tensor.last + 1)
                assert any(memories[j].pressure_bytes == capacity for j in span)


def _rows(result: SimResult) -> dict[tuple[str, str, str | None], object]:
    return {(r.layer, r.method, r.variant): r for r in result.rows}


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_every_byte_is_accounted_for_and_every_cycle_attributed(
    residual_trace: Trace, setting: tuple[str, str, str, int]
) -> None:
    arch = _arch(*setting)
    alone = _rows(simulate(residual_trace, _arch("dram", "layer", "none", setting[3])))
    result = simulate(residual_trace, arch)
    images = residual_trace.images
    for key, row in _rows(result).items():
        s, a = row.stats, alone[key].stats  # type: ignore[attr-defined]
        assert s.multiplies_actual == a.multiplies_actual
        assert s.dram_input_read_bytes + s.buffer_kept_input_bytes == a.dram_input_read_bytes
        assert s.dram_output_write_bytes + s.buffer_kept_output_bytes == a.dram_output_write_bytes
        assert s.dram_weight_read_bytes in (a.dram_weight_read_bytes, images * a.dram_weight_read_bytes)
        if setting[1] == "layer":
            assert s.dram_weight_read_bytes == a.dram_weight_read_bytes
        assert s.dram_prefetch_weight_bytes <= s.dram_weight_read_bytes
        assert s.buffer_fill_bytes == s.dram_weight_read_bytes + s.dram_input_read_bytes
        assert s.buffer_output_bytes == a.dram_output_write_bytes + s.dram_output_write_bytes  # written + drained
        assert s.dram_spill_write_bytes in (0, s.dram_output_write_bytes)
        if setting[0] == "dram":
            assert s.buffer_kept_input_bytes == s.buffer_kept_output_bytes == s.dram_spill_write_bytes == 0
        parts = s.compute_cycles + s.imbalance_idle_cycles + s.transform_stall_cycles + s.dram_stall_cycles
        assert parts == s.cycles
        for block in BLOCKS:
            assert getattr(s, f"{block}_busy_cycles") + getattr(s, f"{block}_stall_cycles") == s.cycles
        assert s.boundary_stall_cycles <= s.pe_array_stall_cycles
        if setting[2] == "none":
            assert s.dram_prefetch_weight_bytes == 0


def test_residency_keeps_spills_and_saves_dram_traffic(residual_trace: Trace) -> None:
    """With a buffer of 16 KiB the tiny network keeps some tensors whole and spills part of others; DRAM
    moves less than with `dram` residency, and the cycles do not grow."""
    fractions: set[Fraction] = set()
    for _works, memories in _memories(residual_trace, _arch("buffer", "layer", "none", 16384)).values():
        fractions.update(f for m in memories for f in m.output_kept)
    assert Fraction(1) in fractions
    for buffer_bytes in (6144, 16384):
        dram = simulate(residual_trace, _arch("dram", "layer", "none", buffer_bytes))
        kept = simulate(residual_trace, _arch("buffer", "layer", "none", buffer_bytes))
        for method, variant in dram.methods():
            d, k = dram.total(method, variant)[0], kept.total(method, variant)[0]
            assert k.dram_bytes <= d.dram_bytes and k.cycles <= d.cycles


def test_image_order_fetches_weights_per_image_unless_the_buffer_holds_them(residual_trace: Trace) -> None:
    small = _memories(residual_trace, _arch("dram", "image", "none", 6144))
    large = _memories(residual_trace, _arch("dram", "image", "none", 1 << 20))
    assert {m.weight_fetches for _, ms in small.values() for m in ms} == {residual_trace.images}
    assert {m.weight_fetches for _, ms in large.values() for m in ms} == {1}
    assert all(m.image_order for _, ms in small.values() for m in ms)


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_event_model_matches_the_per_cycle_reference_between_layers(
    residual_trace: Trace, setting: tuple[str, str, str, int]
) -> None:
    arch = _arch(*setting, bandwidth=2)  # DRAM-bound: what stays on chip shows in the cycles
    result = simulate(residual_trace, arch)
    rows = _rows(result)
    for (method, variant), (works, memories) in _memories(residual_trace, arch).items():
        for index, (work, memory) in enumerate(zip(works, memories, strict=True)):
            row = rows[(work.layer.name, method, variant)]
            s = row.stats  # type: ignore[attr-defined]
            ref = simulate_layer_reference(
                residual_trace, index, method, variant, arch, memory, s.dram_prefetch_weight_bytes
            )
            where = f"{work.layer.name}/{method}"
            assert s.cycles == ref.total_cycles, where
            assert s.compute_cycles == ref.compute_cycles, where
            assert s.imbalance_idle_cycles == ref.imbalance_idle_cycles, where
            assert s.transform_stall_cycles == ref.transform_stall_cycles, where
            assert s.dram_stall_cycles == ref.dram_stall_cycles, where
            assert s.pe_array_busy_cycles == ref.busy["pe_array"], where
            assert s.dram_channel_busy_cycles == ref.busy["loader"] + ref.busy["writer"], where


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_both_timing_engines_agree_between_layers(residual_trace: Trace, setting: tuple[str, str, str, int]) -> None:
    arch = _arch(*setting, bandwidth=2)
    events = simulate(residual_trace, arch, engine="events")
    recurrence = simulate(residual_trace, arch, engine="recurrence")
    assert events.records() == recurrence.records()


def test_one_workload_reused_across_the_new_settings_gives_fresh_results(residual_trace: Trace) -> None:
    """The memoised stages do not read the between-layer fields (`winosim.memo`): the network decisions are
    applied after them, so a sweep over these fields through one lowered workload matches fresh runs."""
    shared = lower(residual_trace)
    for setting in SETTINGS:
        arch = _arch(*setting, bandwidth=2)
        assert simulate(residual_trace, arch, workload=shared).records() == simulate(residual_trace, arch).records()
