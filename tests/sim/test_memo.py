"""Memo keys come from the architecture fields each stage declares, and a stage can read only those.

The danger this guards against: a stage that starts reading a new architecture field while its memo key
does not name it would silently hand a sweep the entry computed for another value of that field. With
`winosim.memo` the stage reads through a view that refuses undeclared fields, and its key is built from the
declared ones, so the new field is either refused or part of the key.
"""

from __future__ import annotations

import dataclasses

import pytest
from sim_helpers import small_arch

from winosim.arch import Arch
from winosim.archio import apply_overrides
from winosim.memo import Memo, MemoKey, Stage, UndeclaredRead
from winosim.sim.layer import COUNT, TIMELINE
from winosim.sim.pe_array import MAKESPANS, PASSES, UNITS
from winosim.sim.plan import PLAN
from winosim.sim.traffic import GROUP_TRAFFIC, TRAFFIC
from winosim.trace import Trace
from winosim.workload import lower

STAGES = (PLAN, GROUP_TRAFFIC, TRAFFIC, UNITS, PASSES, MAKESPANS, COUNT, TIMELINE)

VALUES = {
    "pe_array.pe_count": "3",
    "pe_array.multipliers_per_pe": "3",
    "pe_array.accumulator_entries": "4096",
    "pe_array.weight_zeros": "gate",
    "pe_array.activation_zeros": "none",
    "pe_array.partition": "tiles",
    "pe_array.assignment": "static",
    "input_transform.count": "5",
    "input_transform.tiles_per_cycle": "3",
    "output_transform.count": "5",
    "output_transform.tiles_per_cycle": "3",
    "memory.dram_bandwidth_bytes_per_cycle": "7",
    "memory.global_buffer_bytes": "65536",
    "memory.weight_format": "csr",
    "memory.activation_format": "csr",
    "memory.weight_buffer_share": "half",  # the default is pe_fill
    "data_width_bits": "8",
}


def test_a_stage_reading_a_field_it_does_not_declare_fails() -> None:
    stage = Stage("example", reads=("memory.global_buffer_bytes",))
    view = stage.view(small_arch())
    assert view.memory.global_buffer_bytes == small_arch().memory.global_buffer_bytes
    with pytest.raises(UndeclaredRead, match=r"'memory\.weight_format'"):
        _ = view.memory.weight_format
    with pytest.raises(UndeclaredRead, match="'data_width_bits'"):
        _ = view.data_width_bytes  # a property reads through the same check


def test_a_stage_reading_a_new_field_cannot_hit_a_stale_entry() -> None:
    """The same computation as a stage that declares the field it reads: two architectures that differ only
    in that field get two entries, never one."""
    memo = Memo()
    before = Stage("example", reads=("memory.global_buffer_bytes",))
    after = dataclasses.replace(before, reads=(*before.reads, "memory.weight_format"))
    dense = small_arch()
    csr = apply_overrides(dense, {"memory.weight_format": "csr"})

    def compute(stage: Stage, arch: object) -> str:
        view = stage.view(arch)  # type: ignore[arg-type]
        return f"{view.memory.global_buffer_bytes} {view.memory.weight_format}"

    with pytest.raises(UndeclaredRead):
        memo.get(before.key(dense), lambda: compute(before, dense))
    assert memo.get(after.key(dense), lambda: compute(after, dense)).endswith("dense")
    assert memo.get(after.key(csr), lambda: compute(after, csr)).endswith("csr")
    assert len(memo) == 2


def _pair_differing_in(field: str) -> tuple[Arch, Arch]:
    """Two valid architectures that differ in `field` only."""
    if field == "pe_array.pe_kind":
        scalar = small_arch(partition="tiles", multipliers_per_pe=4)
        return scalar, small_arch(partition="tiles", pe_kind="cartesian")
    if field in ("pe_array.cartesian_weights", "pe_array.cartesian_activations"):
        kind = {"partition": "tiles", "pe_kind": "cartesian"}
        return small_arch(**kind, cartesian_weights=2, cartesian_activations=4), small_arch(
            **kind, cartesian_weights=4, cartesian_activations=2
        )
    base = small_arch()
    return base, apply_overrides(base, {field: VALUES[field]})


@pytest.mark.parametrize("stage", STAGES, ids=[s.name for s in STAGES])
def test_every_declared_field_is_in_the_key(stage: Stage) -> None:
    for field in stage.reads:
        base, changed = _pair_differing_in(field)
        if field in stage.reads_when:  # a conditional field: where its condition holds
            condition, value = stage.reads_when[field]
            base, changed = (apply_overrides(arch, {condition: str(value)}) for arch in (base, changed))
        assert stage.key(base) != stage.key(changed), f"{stage.name}: {field} is declared but not in the key"


def test_a_conditional_field_is_neither_read_nor_keyed_when_its_condition_fails() -> None:
    tiles = apply_overrides(small_arch(), {"pe_array.partition": "tiles"})
    assert PLAN.key(tiles) == PLAN.key(apply_overrides(tiles, {"pe": "5"}))
    with pytest.raises(UndeclaredRead, match=r"pe_array\.pe_count"):
        _ = PLAN.view(tiles).pe_array.pe_count
    channels = apply_overrides(small_arch(), {"pe_array.partition": "output_channels"})
    assert PLAN.key(channels) != PLAN.key(apply_overrides(channels, {"pe": "5"}))


def test_a_stage_must_declare_real_fields() -> None:
    with pytest.raises(ValueError, match="not an architecture field"):
        Stage("typo", reads=("memory.global_buffer_byte",))


def test_simulating_fills_the_memo_with_typed_keys_only(tiny_trace: Trace) -> None:
    from winosim import simulate

    workload = lower(tiny_trace)
    simulate(tiny_trace, small_arch(), workload=workload)
    stages = {s.name for s in STAGES}
    for work in workload.works:
        keys = work.memo.keys()
        assert keys and all(isinstance(key, MemoKey) for key in keys)
        assert {key.stage for key in keys} <= stages
