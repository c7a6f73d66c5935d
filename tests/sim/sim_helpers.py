"""Helpers of the simulator tests: a tiny network with every kind of layer and small architectures that force
tiling (several k-blocks and row groups) on it."""

from __future__ import annotations

import dataclasses

from winosim.arch import Arch, Memory, TransformUnit
from winosim.archio import default_arch
from winosim.geometry import LayerGeometry, NetworkGeometry


def tiny_network() -> NetworkGeometry:
    """Stem (3 channels, spatial), two Winograd layers (one not square), a strided 3x3, a 1x1 projection and an FC
    layer."""
    return NetworkGeometry(
        name="tiny_sim",
        input_height=8,
        input_width=8,
        num_classes=10,
        layers=(
            LayerGeometry("conv1", "spatial", "conv", 3, 8, 8, 8, 3, 1, 1),
            LayerGeometry("conv2", "winograd", "conv", 8, 12, 8, 12, 3, 1, 1),  # 6 tiles wide: 2 segments
            LayerGeometry("down", "spatial", "conv", 12, 16, 7, 7, 3, 2, 1),
            LayerGeometry("conv3", "winograd", "conv", 16, 16, 5, 5, 3, 1, 1),
            LayerGeometry("proj", "spatial", "conv", 16, 8, 5, 5, 1, 1, 0),
            LayerGeometry("fc", "spatial", "fc", 8, 10, 1, 1, 1),
        ),
    )


def small_arch(**pe_fields: object) -> Arch:
    """4 PEs x 2 multipliers, a 6 KiB buffer (forces k-blocks and row groups), dense storage."""
    pe = {"pe_count": 4, "multipliers_per_pe": 2, "accumulator_entries": 256, **pe_fields}
    if pe.get("pe_kind") == "cartesian":
        pe.setdefault("cartesian_weights", 2)
        pe.setdefault("cartesian_activations", 2)
        pe["multipliers_per_pe"] = int(pe["cartesian_weights"]) * int(pe["cartesian_activations"])  # type: ignore[call-overload]
    default = default_arch()
    return dataclasses.replace(
        default,
        pe_array=dataclasses.replace(default.pe_array, **pe),  # type: ignore[arg-type]
        input_transform=TransformUnit(count=2, tiles_per_cycle=1),
        output_transform=TransformUnit(count=1, tiles_per_cycle=2),
        memory=Memory(
            dram_bandwidth_bytes_per_cycle=8,
            global_buffer_bytes=6144,
            register_file_bytes=256,
            weight_format="dense",
            activation_format="dense",
            activation_residency=default.memory.activation_residency,
            batch_order=default.memory.batch_order,
            weight_prefetch=default.memory.weight_prefetch,
            weight_buffer_share=default.memory.weight_buffer_share,
        ),
        data_width_bits=16,
    )
