"""analyses/validation.py, the side-by-side check against ZigZag.

What is checked without ZigZag: the hardware description handed to ZigZag is generated from winosim's `Arch`
(change the architecture, the description follows), layers are translated with their stride and padding, the
notes name the cause of a difference, and the committed winosim columns are what the current code makes.
With ZigZag installed (`pip install -e '.[validation]'`) one layer is run through it and compared.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from winosim.arch import Arch
from winosim.archio import apply_overrides, default_arch
from winosim.energy import energy_table
from winosim.geometry import LayerGeometry, NetworkGeometry, resnet18_imagenet, vgg_nagadomi

ROOT = Path(__file__).resolve().parents[1]
ANALYSES = ROOT / "analyses"
COMMITTED_CSV = ANALYSES / "out" / "validation-zigzag.csv"

sys.path.insert(0, str(ANALYSES))
try:
    import validation
finally:
    sys.path.remove(str(ANALYSES))


def test_array_shape_is_the_most_square_grid() -> None:
    assert validation.array_shape(64) == (8, 8)
    assert validation.array_shape(32) == (4, 8)
    assert validation.array_shape(7) == (1, 7)
    assert validation.array_shape(1) == (1, 1)


def test_the_zigzag_description_is_generated_from_the_arch() -> None:
    arch = validation.matched_arch()
    assert (arch.pe_array.pe_count, arch.pe_array.multipliers_per_pe) == (64, 1)
    doc = validation.zigzag_accelerator(arch)
    memories = doc["memories"]
    assert doc["operational_array"]["sizes"] == [8, 8]
    assert memories["global_buffer"]["size"] == arch.memory.global_buffer_bytes * 8
    assert memories["register_file"]["size"] == arch.memory.register_file_bytes * 8
    assert memories["accumulator"]["size"] == arch.pe_array.accumulator_entries * 32
    assert memories["dram"]["ports"][0]["bandwidth_max"] == arch.memory.dram_bandwidth_bytes_per_cycle * 8
    assert validation.zigzag_mapping(arch)[0]["spatial_mapping"] == {"D1": ["K, 8"], "D2": ["K, 8"]}

    other = apply_overrides(
        arch,
        {
            "pe": 32,
            "memory.global_buffer_bytes": "256KiB",
            "memory.dram_bandwidth_bytes_per_cycle": 4,
            "data_width_bits": 8,
        },
    )
    doc = validation.zigzag_accelerator(other)
    assert doc["operational_array"]["sizes"] == [4, 8]
    assert doc["operational_array"]["input_precision"] == [8, 8]
    assert doc["memories"]["global_buffer"]["size"] == 256 * 1024 * 8
    assert doc["memories"]["dram"]["ports"][0]["bandwidth_max"] == 32
    assert validation.zigzag_mapping(other)[0]["spatial_mapping"] == {"D1": ["K, 4"], "D2": ["K, 8"]}


def test_zigzag_is_priced_with_winosims_energy_table() -> None:
    arch = validation.matched_arch()
    table = energy_table(arch.energy_table)
    doc = validation.zigzag_accelerator(arch)
    per_byte = {
        "dram": table.dram_pj_per_byte(),
        "global_buffer": table.sram_pj_per_byte(arch.memory.global_buffer_bytes),
        "register_file": table.sram_pj_per_byte(arch.memory.register_file_bytes),
        "accumulator": table.sram_pj_per_byte(arch.pe_array.accumulator_entries * 4),
    }
    for name, pj in per_byte.items():
        memory = doc["memories"][name]
        access_bytes = memory["ports"][0]["bandwidth_max"] / 8  # a cost is per access of bandwidth_max bits
        assert memory["r_cost"] == pytest.approx(pj * access_bytes)
        assert memory["w_cost"] == memory["r_cost"]
    assert doc["operational_array"]["unit_energy"] == pytest.approx(table.multiply_pj(16) + table.add_pj(32))


def test_unsupported_arrays_are_refused() -> None:
    arch = apply_overrides(validation.matched_arch(), {"pe_array.multipliers_per_pe": 16})
    with pytest.raises(ValueError, match="one multiplier"):
        validation.zigzag_accelerator(arch)


def test_layers_keep_their_stride_and_padding() -> None:
    stem = resnet18_imagenet().layers[0]
    doc = validation.zigzag_layer(stem, 0, 1, 16)
    assert doc["loop_sizes"] == [1, 64, 3, 112, 112, 7, 7]
    assert doc["dimension_relations"] == ["ix=2*ox+1*fx", "iy=2*oy+1*fy"]
    assert doc["pr_loop_sizes"] == [224, 224]
    assert doc["padding"] == [[3, 2], [3, 2]]  # 2 * 111 + 7 = 229 = 3 + 224 + 2
    fc = resnet18_imagenet().layers[-1]
    doc = validation.zigzag_layer(fc, 0, 2, 16)
    assert doc["loop_sizes"] == [2, 1000, 512, 1, 1, 1, 1]
    assert doc["padding"] == [[0, 0], [0, 0]]
    assert doc["operand_precision"] == {"W": 16, "I": 16, "O": 32, "O_final": 16}


def test_roofline_class() -> None:
    arch = validation.matched_arch()
    layers = {layer.name: layer for layer in vgg_nagadomi().layers}
    assert validation.bound(layers["conv2"], arch, 1)[0] == "compute"
    assert validation.bound(layers["fc1"], arch, 1)[0] == "DRAM"


def _winosim_row(network: str, layer_name: str, arch: Arch | None = None) -> dict:
    geometry = resnet18_imagenet() if network == "resnet18_imagenet" else vgg_nagadomi()
    frame = validation.winosim_frame(geometry, arch if arch is not None else validation.matched_arch(), 1)
    row = frame[frame["layer"] == layer_name].iloc[0]
    return {str(k): v for k, v in row.items()}


def _zigzag(busy: int, exposed: int, **kwargs: float) -> validation.ZigZagLayer:
    values = {
        "cycles": float(busy + exposed),
        "ideal_cycles": float(busy),
        "temporal_cycles": float(busy),
        "stall_cycles": 0.0,
        "onloading_cycles": float(exposed // 2),
        "offloading_cycles": float(exposed - exposed // 2),
        "dram_weight_read_bytes": 0.0,
        "dram_input_read_bytes": 0.0,
        "dram_output_write_bytes": 0.0,
        "dram_psum_bytes": 0.0,
        "energy_pj": 0.0,
    }
    values.update(kwargs)
    return validation.ZigZagLayer(**values)


def test_a_k_block_smaller_than_the_array_is_named_as_the_cause() -> None:
    """With half the buffer for weights (`memory.weight_buffer_share: half`, the default until this comparison
    found it), layer4 runs k-blocks of 56 channels on 64 PEs; with the default `pe_fill` every PE has one."""
    arch = validation.matched_arch(apply_overrides(default_arch(), {"memory.weight_buffer_share": "half"}))
    layer = next(x for x in resnet18_imagenet().layers if x.name == "layer4.0.conv2")
    w = _winosim_row("resnet18_imagenet", "layer4.0.conv2", arch)
    z = _zigzag(int(w["compute_cycles"]), 800)
    assert w["cycles"] / z.cycles > 1.1
    assert "56 output channels" in validation.cycle_note(layer, arch, w, z)
    assert "k-block of 56" in validation.cycle_cause(layer, arch, w, z)
    filled = _winosim_row("resnet18_imagenet", "layer4.0.conv2")
    assert filled["cycles"] / z.cycles <= 1.1


def test_a_single_pass_layer_is_named_as_not_overlapping_dram() -> None:
    arch = validation.matched_arch()
    layer = vgg_nagadomi().layers[0]
    w = _winosim_row("vgg_nagadomi", "conv1")
    assert w["passes"] == 1
    z = _zigzag(int(w["pe_array_busy_cycles"]), 856)
    note = validation.cycle_note(layer, arch, w, z)
    assert "single pass, streamed row by row" in note and "PE array" not in note
    assert "single pass" in validation.cycle_cause(layer, arch, w, z)


def test_input_halo_reads_are_explained() -> None:
    arch = validation.matched_arch()
    layer = next(x for x in resnet18_imagenet().layers if x.name == "layer1.0.conv1")
    w = _winosim_row("resnet18_imagenet", "layer1.0.conv1")
    weights, inputs, outputs = validation.tensor_bytes(layer, 1, 2)
    z = _zigzag(
        1806336,
        300,
        dram_weight_read_bytes=weights,
        dram_input_read_bytes=inputs,
        dram_output_write_bytes=outputs,
    )
    note = validation.traffic_note(layer, arch, 1, w, z)
    assert "3 boundaries between passes x 2 halo input rows" in note


def test_the_committed_winosim_columns_are_what_the_code_makes() -> None:
    """When winosim's numbers move, rerun `python analyses/validation.py` (the `validation` extra) and commit
    analyses/out/validation-zigzag.*: the ZigZag columns must be made next to the same winosim numbers."""
    committed = pd.read_csv(COMMITTED_CSV)
    arch = validation.matched_arch()
    for name in validation.NETWORKS:
        frame = validation.winosim_frame(validation.network(name), arch, 1)
        mine = committed[committed["network"] == name].reset_index(drop=True)
        assert list(mine["layer"]) == list(frame["layer"])
        for column, source in (
            ("winosim_cycles", "cycles"),
            ("winosim_dram_bytes", "dram_bytes"),
            ("winosim_pe_array_busy_cycles", "pe_array_busy_cycles"),
            ("winosim_buffer_input_read_bytes", "buffer_input_read_bytes"),
        ):
            assert list(mine[column]) == [int(v) for v in frame[source]], column
        assert list(mine["winosim_energy_pj"]) == pytest.approx(list(frame["energy_pj"]), abs=0.1)


def test_zigzag_agrees_on_a_compute_bound_layer(tmp_path: Path) -> None:
    pytest.importorskip("zigzag")
    arch = validation.matched_arch()
    # 32 -> 64 channels, 16 x 16, 3 x 3: compute-bound (73,728 cycles of MACs, 5,376 of DRAM), small enough
    # for ZigZag's mapping search to take seconds
    layer = LayerGeometry("small", "spatial", "conv", 32, 64, 16, 16, kernel=3, stride=1, padding=1)
    result = validation.run_zigzag([layer], arch, 1, tmp_path)[validation.layer_key(layer)]
    geometry = NetworkGeometry("one_layer", 16, 16, 64, (layer,))
    frame = validation.winosim_frame(geometry, arch, 1)
    w = {str(k): v for k, v in frame.iloc[0].items()}
    assert validation.bound(layer, arch, 1)[0] == "compute"
    assert result.ideal_cycles == math.ceil(layer.dense_spatial_multiplies() / 64)
    assert w["cycles"] / result.cycles == pytest.approx(1.0, abs=validation.TOLERANCE)
    weights, inputs, outputs = validation.tensor_bytes(layer, 1, 2)
    assert (result.dram_weight_read_bytes, result.dram_input_read_bytes) == (weights, inputs)
    assert (result.dram_output_write_bytes, result.dram_psum_bytes) == (outputs, 0)
    assert result.energy_by_component["mac"] == pytest.approx(w["multiply_pj"] + w["add_pj"])
