"""Side by side with an outside model: winosim's dense spatial method against ZigZag on the same layers.

ZigZag (KU Leuven MICAS, `pip install zigzag-dse`, the `validation` extra of pyproject.toml) is an
analytical DNN-accelerator cost model nobody here wrote: it searches temporal mappings (LOMA) of a layer
onto a memory hierarchy and reports latency, memory accesses per level and energy. This script runs it on
the dense layers of ResNet-18 (the paper's ImageNet geometry) and VGG-nagadomi with a configuration
generated from winosim's own architecture (`matched_arch`: the default preset as an 8 x 8 array of single
multipliers), and puts per layer cycles, DRAM traffic and energy of both models next to each other, with a
note on every difference over 10% saying which model assumes what.

    python analyses/validation.py [--out DIR] [--images N]

Writes analyses/out/validation-zigzag.md (the table and the notes), validation-zigzag.csv (every number,
one row per network x layer), validation-zigzag.png (cycle and DRAM-traffic ratios per layer) and the
generated ZigZag inputs validation-zigzag-accelerator.yaml and validation-zigzag-mapping.yaml.

What is matched, and how (every number is read from the `Arch`, so another architecture stays matched):

- the array: `pe_count` PEs as a rows x columns grid (8 x 8), one multiplier each; ZigZag's spatial mapping
  unrolls the output channels K over both grid dimensions, which is winosim's `output_channels` partition;
- the memories: per PE a register file of `register_file_bytes` for weights and inputs and an accumulator of
  `accumulator_entries` 32-bit partial sums; one global buffer of `global_buffer_bytes` for all three
  operands; DRAM on one read/write port of `dram_bandwidth_bytes_per_cycle` x 8 bits per cycle. winosim does
  not limit the buffer's or the register files' bandwidth, so their ports are made wide enough never to stall;
- data: `data_width_bits` for weights, inputs and outputs, 32-bit partial sums;
- energy: both models are priced with winosim's energy table (`arch.energy_table`): a MAC costs a multiply
  at the data width plus a 32-bit add, and every memory access costs the table's per-byte energy of that
  memory's size times the bytes it moves. The energy columns therefore compare access counts under one
  table, not two tables.
- the workload: every layer as a convolution (a fully connected layer as a 1x1 convolution on a 1x1 map)
  with its stride and padding, `--images` images (default 1), dense.

ZigZag evaluates each layer alone, its inputs and weights in DRAM and its outputs written back to DRAM, which
is how winosim runs a layer with activations in DRAM; it picks, per layer, the temporal mapping with the
lowest energy-delay product (`opt="EDP"`; many mappings tie on latency).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from _shared import OUT_DIR, write_markdown

import winosim
from winosim.arch import Arch
from winosim.archio import apply_overrides, default_arch, flat_keys
from winosim.energy import EnergyTable, energy_table
from winosim.geometry import LayerGeometry, NetworkGeometry, network
from winosim.sim.pe_array import ACCUMULATOR_BITS
from winosim.synthetic import synthetic_trace

NETWORKS: tuple[str, ...] = ("resnet18_imagenet", "vgg_nagadomi")
METHOD = "dense_spatial"
TOLERANCE = 0.10
"""Relative difference above which a layer's value needs an explanation (and that compute-bound layers'
cycles must stay within)."""

STEM = "validation-zigzag"
ZIGZAG_DISTRIBUTION = "zigzag-dse"

MATCHED_OVERRIDES: dict[str, Any] = {
    "pe_array.pe_count": 64,
    "pe_array.multipliers_per_pe": 1,
    "pe_array.partition": "output_channels",
}
"""The matched configuration: the default preset as 64 PEs of one multiplier each (an 8 x 8 array), each
PE owning output channels (ZigZag's K x K spatial mapping). Dense layers make zero handling irrelevant."""

OPTIONAL_OVERRIDES: dict[str, Any] = {"memory.activation_residency": "dram", "memory.weight_prefetch": "none"}
"""Applied only where winosim has the key: ZigZag runs every layer alone, from DRAM to DRAM (no activations
kept on chip, no weights loaded during the previous layer)."""

# Names of the generated ZigZag memories (lowest level first) and the winosim energy component each maps to.
RF, ACC, GB, DRAM = "register_file", "accumulator", "global_buffer", "dram"
COMPONENTS: tuple[str, ...] = ("mac", "register_file", "accumulator", "buffer", "dram")
WINOSIM_ENERGY = {
    "register_file": "register_file_pj",
    "accumulator": "accumulator_pj",
    "buffer": "buffer_pj",
    "dram": "dram_pj",
}
ZIGZAG_COMPONENT = {RF: "register_file", ACC: "accumulator", GB: "buffer", DRAM: "dram"}


# --------------------------------------------------------------------------------------------- configuration


def matched_arch(base: Arch | None = None) -> Arch:
    """winosim's side of the matched configuration: `base` (default: the shipped preset) as 64 single
    multipliers owning output channels, activations in DRAM between layers where that is a choice."""
    overrides = dict(MATCHED_OVERRIDES)
    known = set(flat_keys())
    overrides.update({k: v for k, v in OPTIONAL_OVERRIDES.items() if k in known})
    return apply_overrides(base if base is not None else default_arch(), overrides)


def array_shape(pe_count: int) -> tuple[int, int]:
    """The PE count as the most nearly square rows x columns grid (64 -> 8 x 8, 32 -> 4 x 8)."""
    rows = math.isqrt(pe_count)
    while pe_count % rows:
        rows -= 1
    return rows, pe_count // rows


def _check_supported(arch: Arch) -> None:
    pe = arch.pe_array
    if pe.multipliers_per_pe != 1 or pe.pe_kind != "scalar" or pe.partition != "output_channels":
        raise ValueError(
            "the ZigZag comparison models scalar PEs of one multiplier with the output_channels partition; got "
            f"{pe.multipliers_per_pe} multipliers, pe_kind {pe.pe_kind}, partition {pe.partition}"
        )


def _port(name: str, kind: str, min_bits: int, max_bits: int, allocation: Iterable[str]) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "bandwidth_min": min_bits,
        "bandwidth_max": max_bits,
        "allocation": list(allocation),
    }


def _memory(
    size_bits: int, pj_per_access: float, operands: list[str], ports: list[dict[str, Any]], shared: bool
) -> dict[str, Any]:
    return {
        "size": size_bits,
        "r_cost": pj_per_access,
        "w_cost": pj_per_access,
        "area": 0.0,
        "latency": 1,
        "operands": operands,
        "ports": ports,
        "served_dimensions": ["D1", "D2"] if shared else [],
    }


def zigzag_accelerator(arch: Arch, table: EnergyTable | None = None) -> dict[str, Any]:
    """ZigZag's hardware description (the accelerator YAML document), generated from `arch`.

    Bandwidths are in bits per cycle, sizes in bits, costs in pJ per access of `bandwidth_max` bits; an access
    of `bandwidth_min` bits is charged min/max of that, so every memory costs the table's energy per byte of
    its size times the bytes moved, as in winosim (`winosim.cost`)."""
    _check_supported(arch)
    table = table if table is not None else energy_table(arch.energy_table)
    width = arch.data_width_bits
    psum = ACCUMULATOR_BITS
    mem, pe = arch.memory, arch.pe_array
    rows, cols = array_shape(pe.pe_count)
    dram_bits = mem.dram_bandwidth_bytes_per_cycle * 8
    # winosim does not model the buffer's bandwidth: wide enough for every PE to take a new weight, input and
    # partial sum and give back a partial sum in every cycle
    buffer_bits = pe.pe_count * (2 * width + 2 * psum)
    rf_pj = table.sram_pj_per_byte(mem.register_file_bytes)
    acc_pj = table.sram_pj_per_byte(pe.accumulator_entries * psum // 8)
    gb_pj = table.sram_pj_per_byte(mem.global_buffer_bytes)
    everything = ["I1, fh", "I1, tl", "I2, fh", "I2, tl", "O, fh", "O, tl", "O, fl", "O, th"]
    memories = {
        RF: _memory(
            mem.register_file_bytes * 8,
            rf_pj * width / 8,
            ["I1", "I2"],
            [
                _port("r_port_1", "read", width, width, ["I1, tl"]),
                _port("r_port_2", "read", width, width, ["I2, tl"]),
                _port("w_port_1", "write", width, width, ["I1, fh"]),
                _port("w_port_2", "write", width, width, ["I2, fh"]),
            ],
            shared=False,
        ),
        ACC: _memory(
            pe.accumulator_entries * psum,
            acc_pj * psum / 8,
            ["O"],
            [
                _port("r_port_1", "read", psum, psum, ["O, tl", "O, th"]),
                _port("w_port_1", "write", psum, psum, ["O, fl", "O, fh"]),
            ],
            shared=False,
        ),
        GB: _memory(
            mem.global_buffer_bytes * 8,
            gb_pj * buffer_bits / 8,
            ["I1", "I2", "O"],
            [
                _port("r_port_1", "read", width, buffer_bits, ["I1, tl", "I2, tl", "O, tl", "O, th"]),
                _port("w_port_1", "write", width, buffer_bits, ["I1, fh", "I2, fh", "O, fh", "O, fl"]),
            ],
            shared=True,
        ),
        DRAM: _memory(
            1 << 40,
            table.dram_pj_per_byte() * dram_bits / 8,
            ["I1", "I2", "O"],
            [_port("rw_port_1", "read_write", width, dram_bits, everything)],
            shared=True,
        ),
    }
    return {
        "name": f"winosim_{arch.name}_{rows}x{cols}",
        "memories": memories,
        "operational_array": {
            "input_precision": [width, width],
            "unit_energy": table.multiply_pj(width) + table.add_pj(psum),
            "unit_area": 1.0,
            "dimensions": ["D1", "D2"],
            "sizes": [rows, cols],
        },
    }


def zigzag_mapping(arch: Arch) -> list[dict[str, Any]]:
    """ZigZag's mapping document: output channels unrolled over both array dimensions (winosim's
    `output_channels` partition); the temporal mapping is left to ZigZag's search."""
    _check_supported(arch)
    rows, cols = array_shape(arch.pe_array.pe_count)
    return [
        {
            "name": "default",
            "spatial_mapping": {"D1": [f"K, {rows}"], "D2": [f"K, {cols}"]},
            "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"},
        }
    ]


def zigzag_layer(layer: LayerGeometry, layer_id: int, images: int, data_width_bits: int) -> dict[str, Any]:
    """One layer of ZigZag's workload document: a convolution (an FC layer is a 1x1 convolution on a 1x1 map),
    weights and inputs both read from outside (DRAM)."""
    pad, stride = layer.padding, layer.stride
    extent_h = stride * (layer.out_height - 1) + layer.kernel
    extent_w = stride * (layer.out_width - 1) + layer.kernel
    return {
        "id": layer_id,
        "name": layer.name,
        "operator_type": "Conv",
        "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
        "dimension_relations": [f"ix={stride}*ox+1*fx", f"iy={stride}*oy+1*fy"],
        "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"],
        "loop_sizes": [
            images,
            layer.out_channels,
            layer.in_channels,
            layer.out_height,
            layer.out_width,
            layer.kernel,
            layer.kernel,
        ],
        "operand_precision": {
            "W": data_width_bits,
            "I": data_width_bits,
            "O": ACCUMULATOR_BITS,
            "O_final": data_width_bits,
        },
        "operand_source": {"W": layer_id, "I": layer_id},
        "pr_loop_dims": ["IY", "IX"],
        "pr_loop_sizes": [layer.in_height, layer.in_width],
        # the padded extent minus the real input: the padding on the far side may be smaller (stride 2)
        "padding": [[pad, extent_h - layer.in_height - pad], [pad, extent_w - layer.in_width - pad]],
    }


def layer_key(layer: LayerGeometry) -> tuple[int, ...]:
    """What ZigZag's result depends on (two layers with equal keys are evaluated once)."""
    return (
        layer.in_channels,
        layer.out_channels,
        layer.in_height,
        layer.in_width,
        layer.kernel,
        layer.stride,
        layer.padding,
    )


def unique_layers(layers: Iterable[LayerGeometry]) -> list[LayerGeometry]:
    """The first layer of every distinct shape, in order."""
    seen: set[tuple[int, ...]] = set()
    out = []
    for layer in layers:
        if layer_key(layer) not in seen:
            seen.add(layer_key(layer))
            out.append(layer)
    return out


# ------------------------------------------------------------------------------------------------ ZigZag run


@dataclass(frozen=True)
class ZigZagLayer:
    """What ZigZag reports for one layer (one image batch), in winosim's units (cycles, bytes, pJ)."""

    cycles: float
    ideal_cycles: float
    temporal_cycles: float
    stall_cycles: float
    onloading_cycles: float
    offloading_cycles: float
    dram_weight_read_bytes: float
    dram_input_read_bytes: float
    dram_output_write_bytes: float
    dram_psum_bytes: float
    energy_pj: float
    energy_by_component: Mapping[str, float] = field(default_factory=dict)
    rf_read_bytes: float = 0.0
    """Register-file reads of weights and inputs (a word read again by the next cycle is not counted)."""
    rf_fill_bytes: float = 0.0
    buffer_fill_bytes: float = 0.0
    """Weights and inputs written into the global buffer from DRAM."""
    buffer_weight_read_bytes: float = 0.0
    buffer_input_read_bytes: float = 0.0
    buffer_output_bytes: float = 0.0
    """Outputs and partial sums written into and read out of the global buffer."""
    temporal_mapping: str = ""

    @property
    def dram_bytes(self) -> float:
        return (
            self.dram_weight_read_bytes
            + self.dram_input_read_bytes
            + self.dram_output_write_bytes
            + self.dram_psum_bytes
        )


def zigzag_version() -> str:
    from importlib.metadata import version

    return version(ZIGZAG_DISTRIBUTION)


def _moved_bytes(cme: Any, operand: str, level: int, direction: str) -> float:
    """Bytes that ZigZag's mapping moves for one operand at one memory level in one direction (all units)."""
    from zigzag.datatypes import LayerOperand
    from zigzag.mapping.data_movement import DataDirection, DataMoveAttr

    layer_op = LayerOperand(operand)
    pattern = cme.mapping.unit_mem_data_movement[layer_op][level]
    data_dir = DataDirection(direction)
    amount = pattern.get_attribute(DataMoveAttr.DATA_TRANS_AMOUNT_PER_PERIOD).get(data_dir)
    precision = pattern.get_attribute(DataMoveAttr.DATA_PRECISION).get(data_dir)
    periods = pattern.get_attribute(DataMoveAttr.DATA_TRANS_PERIOD_COUNT).get(data_dir)
    units = cme.mapping.spatial_mapping.unit_count[layer_op][level + 1]
    return float(amount * precision * periods * units) / 8


def _level(cme: Any, operand: str, name: str) -> int:
    """Index of the memory called `name` among the levels that hold `operand` (lowest first)."""
    from zigzag.datatypes import LayerOperand

    mem_op = cme.memory_operand_links.layer_to_mem_op(LayerOperand(operand))
    names = [level.name for level in cme.accelerator.memory_hierarchy.get_memory_levels(mem_op)]
    return names.index(name)


def _summarise(cme: Any) -> ZigZagLayer:

    energy = {"mac": float(cme.mac_energy)}
    for layer_op, per_level in cme.mem_energy_breakdown.items():
        mem_op = cme.memory_operand_links.layer_to_mem_op(layer_op)
        levels = cme.accelerator.memory_hierarchy.get_memory_levels(mem_op)
        for level, pj in zip(levels, per_level, strict=True):
            component = ZIGZAG_COMPONENT[level.name]
            energy[component] = energy.get(component, 0.0) + float(pj)
    top = {op: _level(cme, op, DRAM) for op in ("I", "W", "O")}
    rf = {op: _level(cme, op, RF) for op in ("I", "W")}
    gb = {op: _level(cme, op, GB) for op in ("I", "W", "O")}
    out_directions = ("wr_in_by_low", "rd_out_to_high", "rd_out_to_low", "wr_in_by_high")
    return ZigZagLayer(
        cycles=float(cme.latency_total2),
        ideal_cycles=float(cme.ideal_cycle),
        temporal_cycles=float(cme.ideal_temporal_cycle),
        stall_cycles=float(cme.stall_slack_comb),
        onloading_cycles=float(cme.data_onloading_cycle),
        offloading_cycles=float(cme.data_offloading_cycle),
        dram_weight_read_bytes=_moved_bytes(cme, "W", top["W"], "rd_out_to_low"),
        dram_input_read_bytes=_moved_bytes(cme, "I", top["I"], "rd_out_to_low"),
        dram_output_write_bytes=_moved_bytes(cme, "O", top["O"], "wr_in_by_low"),
        dram_psum_bytes=_moved_bytes(cme, "O", top["O"], "rd_out_to_low"),
        energy_pj=float(cme.energy_total),
        energy_by_component={c: energy.get(c, 0.0) for c in COMPONENTS},
        rf_read_bytes=sum(_moved_bytes(cme, op, rf[op], "rd_out_to_low") for op in ("I", "W")),
        rf_fill_bytes=sum(_moved_bytes(cme, op, rf[op], "wr_in_by_high") for op in ("I", "W")),
        buffer_fill_bytes=sum(_moved_bytes(cme, op, gb[op], "wr_in_by_high") for op in ("I", "W")),
        buffer_weight_read_bytes=_moved_bytes(cme, "W", gb["W"], "rd_out_to_low"),
        buffer_input_read_bytes=_moved_bytes(cme, "I", gb["I"], "rd_out_to_low"),
        buffer_output_bytes=sum(_moved_bytes(cme, "O", gb["O"], d) for d in out_directions),
        temporal_mapping=str(cme.temporal_mapping),
    )


def run_zigzag(
    layers: list[LayerGeometry], arch: Arch, images: int, workdir: Path
) -> dict[tuple[int, ...], ZigZagLayer]:
    """ZigZag's result for every distinct layer shape of `layers` on the configuration matched to `arch`."""
    from zigzag.api import get_hardware_performance_zigzag

    workdir.mkdir(parents=True, exist_ok=True)
    accelerator = workdir / "accelerator.yaml"
    mapping = workdir / "mapping.yaml"
    accelerator.write_text(yaml.safe_dump(zigzag_accelerator(arch), sort_keys=False), encoding="utf-8")
    mapping.write_text(yaml.safe_dump(zigzag_mapping(arch), sort_keys=False), encoding="utf-8")
    results: dict[tuple[int, ...], ZigZagLayer] = {}
    for index, layer in enumerate(unique_layers(layers)):
        workload = workdir / f"layer{index}.yaml"
        document = [zigzag_layer(layer, 0, images, arch.data_width_bits)]
        workload.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        answer = get_hardware_performance_zigzag(
            str(workload),
            str(accelerator),
            str(mapping),
            opt="EDP",
            dump_folder=str(workdir / f"out{index}"),
            loma_show_progress_bar=False,
        )
        cmes = answer[-1]  # (energy, latency, cmes); the in-memory-compute variant returns five values
        cme = cmes[0][1][0][0]
        results[layer_key(layer)] = _summarise(cme)
        print(f"  zigzag {layer.name}: {cme.latency_total2:.0f} cycles", file=sys.stderr)
    return results


# ----------------------------------------------------------------------------------------------- winosim run


def winosim_frame(geometry: NetworkGeometry, arch: Arch, images: int) -> pd.DataFrame:
    """winosim's dense spatial rows for every layer of `geometry` (one per layer, over `images` images)."""
    # dense methods ignore the masks: the trace only carries the geometry and the image count
    trace = synthetic_trace(geometry, images=images, methods=("spatial",), seed=0)
    return winosim.simulate(trace, arch, methods=(METHOD,)).to_frame()


# -------------------------------------------------------------------------------------------------- compare


def _ratio(a: float, b: float) -> float:
    return a / b if b else (1.0 if a == 0 else math.inf)


def _off(ratio: float) -> bool:
    return abs(ratio - 1.0) > TOLERANCE


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def tensor_bytes(layer: LayerGeometry, images: int, width_bytes: int) -> tuple[int, int, int]:
    """(weights, inputs, outputs) of a layer, each stored once, in bytes."""
    weights = layer.out_channels * layer.in_channels * layer.kernel * layer.kernel * width_bytes
    inputs = images * layer.in_channels * layer.in_height * layer.in_width * width_bytes
    outputs = images * layer.out_channels * layer.out_height * layer.out_width * width_bytes
    return weights, inputs, outputs


def bound(layer: LayerGeometry, arch: Arch, images: int) -> tuple[str, int, int]:
    """Roofline class of a layer on `arch`, independent of both models: ("compute" or "DRAM", the array's
    cycles at full use, the DRAM cycles to move every tensor once)."""
    macs = images * layer.dense_spatial_multiplies()
    compute = _ceil_div(macs, arch.pe_array.multipliers)
    dram = _ceil_div(
        sum(tensor_bytes(layer, images, arch.data_width_bytes)), arch.memory.dram_bandwidth_bytes_per_cycle
    )
    return ("compute" if compute >= dram else "DRAM"), compute, dram


def _array_note(layer: LayerGeometry, arch: Arch, w: Mapping[str, Any], z: ZigZagLayer) -> str:
    pe = arch.pe_array.pe_count
    busy, z_busy = int(w["pe_array_busy_cycles"]), round(z.temporal_cycles)
    z_use = z.ideal_cycles / z.temporal_cycles if z.temporal_cycles else 1.0
    per_channel = layer.in_channels * layer.kernel * layer.kernel * arch.data_width_bytes
    half = arch.memory.global_buffer_bytes // 2
    fit = half // per_channel
    if layer.out_channels < pe:
        return (
            f"PE array: only K = {layer.out_channels} output channels for {pe} PEs. winosim gives one channel to each "
            f"of {layer.out_channels} PEs ({busy} busy cycles); ZigZag drops the K unrolling of one array dimension "
            f"that exceeds K and runs {z_busy} cycles ({z_use:.1%} of its multipliers busy)."
        )
    if 1 <= fit < pe and int(w["imbalance_idle_cycles"]) > 0:
        return (
            f"PE array: winosim reserves half of the {arch.memory.global_buffer_bytes} B global buffer for weights "
            f"and keeps a k-block's weights resident, so a k-block holds {half} // {per_channel} B = {fit} output "
            f"channels, fewer than the {pe} PEs: {pe - fit} PEs idle in every k-block "
            f"({int(w['imbalance_idle_cycles'])} idle cycles, {busy} busy against {int(w['compute_cycles'])} of "
            f"balanced work). ZigZag shares the whole buffer among the operands and keeps {pe} channels' weights "
            f"({pe * per_channel} B) in it, all {pe} PEs busy for {z_busy} cycles."
        )
    return f"PE array: busy {busy} cycles in winosim, {z_busy} in ZigZag ({z_use:.1%} of its multipliers busy)."


def _exposure_note(arch: Arch, w: Mapping[str, Any], z: ZigZagLayer) -> str:
    bandwidth = arch.memory.dram_bandwidth_bytes_per_cycle
    exposed = int(w["cycles"]) - int(w["pe_array_busy_cycles"])
    passes = int(w["passes"])
    reads = _ceil_div(int(w["dram_weight_read_bytes"]) + int(w["dram_input_read_bytes"]), bandwidth)
    writes = _ceil_div(int(w["dram_output_write_bytes"]), bandwidth)
    z_exposed = round(z.cycles - z.temporal_cycles)
    weight_cycles = _ceil_div(int(w["dram_weight_read_bytes"]), bandwidth)
    if passes == 1:
        how = (
            f"this layer is a single pass, streamed row by row: its weights ({weight_cycles} of its {reads} read "
            f"cycles at {bandwidth} B/cycle) and its first row's inputs come before the first multiply, its last "
            f"row's outputs (of {writes} write cycles) after the last"
        )
    else:
        how = (
            f"of its {passes} passes, the first streams its reads and the last its writes row by row: the first "
            "k-block's weights and the first row's inputs come before the first multiply, the last row's outputs "
            "after the last"
        )
    return (
        f"DRAM time not hidden: winosim {exposed} cycles. It double-buffers whole passes and streams each "
        f"layer's first and last pass by rows (docs/simulator.md, timing); {how}. ZigZag {z_exposed} cycles "
        f"({round(z.onloading_cycles)} initial loading + {round(z.stall_cycles)} stalls + "
        f"{round(z.offloading_cycles)} final offloading): it overlaps DRAM transfers with computation at the "
        "granularity of its temporal-mapping tiles and exposes only the first tile's loads and the last tile's "
        "writes."
    )


def cycle_note(layer: LayerGeometry, arch: Arch, w: Mapping[str, Any], z: ZigZagLayer) -> str:
    """Why winosim's and ZigZag's cycles differ: the PE array's busy time and the DRAM time left exposed,
    each explained where it makes at least a quarter of the difference."""
    gap = float(w["cycles"]) - z.cycles
    array_gap = float(w["pe_array_busy_cycles"]) - z.temporal_cycles
    exposed_gap = gap - array_gap
    parts = []
    if abs(array_gap) >= 0.25 * abs(gap):
        parts.append(_array_note(layer, arch, w, z))
    if abs(exposed_gap) >= 0.25 * abs(gap):
        parts.append(_exposure_note(arch, w, z))
    return " ".join(parts)


def cycle_cause(layer: LayerGeometry, arch: Arch, w: Mapping[str, Any], z: ZigZagLayer) -> str:
    """The cycle difference's main cause in a few words: the larger of the PE array's and the exposed DRAM
    time's share of the gap."""
    array_gap = float(w["pe_array_busy_cycles"]) - z.temporal_cycles
    exposed_gap = float(w["cycles"]) - z.cycles - array_gap
    if abs(array_gap) >= abs(exposed_gap):
        per_channel = layer.in_channels * layer.kernel * layer.kernel * arch.data_width_bytes
        fit = arch.memory.global_buffer_bytes // 2 // per_channel
        if layer.out_channels < arch.pe_array.pe_count:
            return f"PE array: K = {layer.out_channels} < {arch.pe_array.pe_count} PEs, mapped differently"
        if 1 <= fit < arch.pe_array.pe_count:
            return f"PE array: winosim's k-block of {fit} channels < {arch.pe_array.pe_count} PEs"
        return "PE array busy time"
    if int(w["passes"]) == 1:
        return "DRAM exposed: a single pass, its first row's reads and last row's writes"
    return "DRAM exposed: the first pass's first row, the last pass's last row"


def _halo(layer: LayerGeometry, extra: int, width_bytes: int) -> str:
    rows = max(layer.kernel - layer.stride, 0)
    per_boundary = rows * layer.in_width * layer.in_channels * width_bytes
    if per_boundary and extra % per_boundary == 0:
        boundaries = extra // per_boundary
        return (
            f"= {boundaries} boundaries between passes x {rows} halo input rows (kernel {layer.kernel}, stride "
            f"{layer.stride}) x {layer.in_width} x {layer.in_channels} channels x {width_bytes} B: winosim's passes "
            "are groups of whole output rows and each reads the input rows it needs, so rows shared by two "
            "groups are read twice"
        )
    return "winosim reads the input rows each pass needs, halo included"


def traffic_note(layer: LayerGeometry, arch: Arch, images: int, w: Mapping[str, Any], z: ZigZagLayer) -> str:
    """Why the DRAM traffic of an operand differs by more than the tolerance (empty when none does)."""
    wb = arch.data_width_bytes
    weights, inputs, outputs = tensor_bytes(layer, images, wb)
    notes = []
    w_in, w_wt = int(w["dram_input_read_bytes"]), int(w["dram_weight_read_bytes"])
    if _off(_ratio(w_in, z.dram_input_read_bytes)):
        text = f"inputs: winosim {w_in} B, ZigZag {z.dram_input_read_bytes:.0f} B, the map is {inputs} B."
        if w_in > inputs and abs(z.dram_input_read_bytes - inputs) <= 0.01 * inputs:
            text += f" The extra {w_in - inputs} B {_halo(layer, w_in - inputs, wb)}; ZigZag reads the map once."
        notes.append(text)
    if _off(_ratio(w_wt, z.dram_weight_read_bytes)):
        text = f"weights: winosim {w_wt} B, ZigZag {z.dram_weight_read_bytes:.0f} B, the weights are {weights} B."
        if z.dram_weight_read_bytes > weights and w_wt == weights:
            text += " ZigZag charges the traffic of its padded spatial unrolling of K."
        notes.append(text)
    if _off(_ratio(int(w["dram_output_write_bytes"]), z.dram_output_write_bytes)) or z.dram_psum_bytes:
        notes.append(
            f"outputs: winosim writes {int(w['dram_output_write_bytes'])} B, ZigZag {z.dram_output_write_bytes:.0f} B "
            f"and moves {z.dram_psum_bytes:.0f} B of partial sums through DRAM; the outputs are {outputs} B."
        )
    return " ".join(f"DRAM {n}" for n in notes)


def energy_note(arch: Arch, w: Mapping[str, Any], z: ZigZagLayer) -> str:
    """Why an energy component differs by more than the tolerance: what each model counts at that memory
    (DRAM is the traffic note's; MACs and accumulators are counted alike)."""
    parts = []
    rf, theirs_rf = _winosim_component(w, "register_file"), z.energy_by_component["register_file"]
    if _off(_ratio(rf, theirs_rf)):
        parts.append(
            f"register file {rf / 1e6:.2f} vs {theirs_rf / 1e6:.2f} uJ: winosim charges two operand reads per MAC "
            f"({int(w['rf_access_bytes'])} B) and no fills; ZigZag charges {z.rf_read_bytes:.0f} B of reads, a "
            f"word that stays at the register file's output for consecutive cycles read once, and "
            f"{z.rf_fill_bytes:.0f} B of fills from the buffer."
        )
    gb, theirs_gb = _winosim_component(w, "buffer"), z.energy_by_component["buffer"]
    if _off(_ratio(gb, theirs_gb)):
        parts.append(
            f"buffer {gb / 1e6:.2f} vs {theirs_gb / 1e6:.2f} uJ: winosim moves {int(w['buffer_fill_bytes'])} B in "
            f"from DRAM, reads {int(w['buffer_weight_read_bytes'])} B of weights (once per accumulator chunk) and "
            f"{int(w['buffer_input_read_bytes'])} B of inputs (once per pass: the PEs reuse the sliding window "
            f"whatever the register file's size) and moves {int(w['buffer_output_bytes'])} B of outputs; ZigZag "
            f"{z.buffer_fill_bytes:.0f} B in, {z.buffer_weight_read_bytes:.0f} B of weights and "
            f"{z.buffer_input_read_bytes:.0f} B of inputs read, as often as its loop nest refills the "
            f"{arch.memory.register_file_bytes} B register file, {z.buffer_output_bytes:.0f} B of outputs."
        )
    for component in ("mac", "accumulator"):
        mine, theirs = _winosim_component(w, component), z.energy_by_component[component]
        if _off(_ratio(mine, theirs)):
            parts.append(f"{component} {mine / 1e6:.2f} vs {theirs / 1e6:.2f} uJ.")
    return " ".join(parts)


def _winosim_component(w: Mapping[str, Any], component: str) -> float:
    if component == "mac":
        return float(w["multiply_pj"]) + float(w["add_pj"])
    return float(w[WINOSIM_ENERGY[component]])


def compare(
    geometry: NetworkGeometry,
    arch: Arch,
    images: int,
    frame: pd.DataFrame,
    zigzag: Mapping[tuple[int, ...], ZigZagLayer],
) -> pd.DataFrame:
    """One row per layer: both models' cycles, DRAM bytes and energy, their ratios (winosim / ZigZag), the
    roofline class, the decomposition of each model's cycles and the note on every difference over 10%."""
    rows = []
    by_layer: dict[str, Mapping[str, Any]] = {
        str(r["layer"]): {str(k): v for k, v in r.items()} for r in frame.to_dict("records")
    }
    for layer in geometry.layers:
        w = by_layer[layer.name]
        z = zigzag[layer_key(layer)]
        kind, compute_floor, dram_floor = bound(layer, arch, images)
        cycles_ratio = _ratio(float(w["cycles"]), z.cycles)
        dram_ratio = _ratio(float(w["dram_bytes"]), z.dram_bytes)
        energy_ratio = _ratio(float(w["energy_pj"]), z.energy_pj)
        row: dict[str, Any] = {
            "network": geometry.name,
            "layer": layer.name,
            "shape": f"{layer.in_channels}x{layer.in_height}x{layer.in_width} -> {layer.out_channels}x"
            f"{layer.out_height}x{layer.out_width}, {layer.kernel}x{layer.kernel}/{layer.stride}",
            "macs": images * layer.dense_spatial_multiplies(),
            "bound": kind,
            "roofline_compute_cycles": compute_floor,
            "roofline_dram_cycles": dram_floor,
            "winosim_cycles": int(w["cycles"]),
            "zigzag_cycles": round(z.cycles),
            "cycles_ratio": cycles_ratio,
            "cycles_within_10pct": not _off(cycles_ratio),
            "winosim_pe_array_busy_cycles": int(w["pe_array_busy_cycles"]),
            "winosim_exposed_dram_cycles": int(w["cycles"]) - int(w["pe_array_busy_cycles"]),
            "winosim_passes": int(w["passes"]),
            "zigzag_temporal_cycles": round(z.temporal_cycles),
            "zigzag_exposed_cycles": round(z.cycles - z.temporal_cycles),
            "zigzag_onloading_cycles": round(z.onloading_cycles),
            "zigzag_stall_cycles": round(z.stall_cycles),
            "zigzag_offloading_cycles": round(z.offloading_cycles),
            "winosim_dram_bytes": int(w["dram_bytes"]),
            "zigzag_dram_bytes": round(z.dram_bytes),
            "dram_ratio": dram_ratio,
            "winosim_dram_weight_bytes": int(w["dram_weight_read_bytes"]),
            "zigzag_dram_weight_bytes": round(z.dram_weight_read_bytes),
            "winosim_dram_input_bytes": int(w["dram_input_read_bytes"]),
            "zigzag_dram_input_bytes": round(z.dram_input_read_bytes),
            "winosim_dram_output_bytes": int(w["dram_output_write_bytes"]),
            "zigzag_dram_output_bytes": round(z.dram_output_write_bytes),
            "zigzag_dram_psum_bytes": round(z.dram_psum_bytes),
            "winosim_energy_pj": float(w["energy_pj"]),
            "zigzag_energy_pj": z.energy_pj,
            "energy_ratio": energy_ratio,
        }
        for component in COMPONENTS:
            row[f"winosim_{component}_pj"] = _winosim_component(w, component)
            row[f"zigzag_{component}_pj"] = z.energy_by_component[component]
        row.update(
            {
                "winosim_rf_access_bytes": int(w["rf_access_bytes"]),
                "zigzag_rf_read_bytes": round(z.rf_read_bytes),
                "zigzag_rf_fill_bytes": round(z.rf_fill_bytes),
                "winosim_buffer_fill_bytes": int(w["buffer_fill_bytes"]),
                "zigzag_buffer_fill_bytes": round(z.buffer_fill_bytes),
                "winosim_buffer_weight_read_bytes": int(w["buffer_weight_read_bytes"]),
                "zigzag_buffer_weight_read_bytes": round(z.buffer_weight_read_bytes),
                "winosim_buffer_input_read_bytes": int(w["buffer_input_read_bytes"]),
                "zigzag_buffer_input_read_bytes": round(z.buffer_input_read_bytes),
                "winosim_buffer_output_bytes": int(w["buffer_output_bytes"]),
                "zigzag_buffer_output_bytes": round(z.buffer_output_bytes),
            }
        )
        row["cycles_note"] = cycle_note(layer, arch, w, z) if _off(cycles_ratio) else ""
        row["dram_note"] = traffic_note(layer, arch, images, w, z)
        row["cycles_cause"] = cycle_cause(layer, arch, w, z) if _off(cycles_ratio) else ""
        row["energy_note"] = energy_note(arch, w, z)
        row["zigzag_temporal_mapping"] = z.temporal_mapping
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------- outputs

NETWORK_TITLES = {
    "resnet18_imagenet": "ResNet-18, the paper's ImageNet geometry (224x224)",
    "vgg_nagadomi": "VGG-nagadomi (CIFAR-10, 32x32)",
}

ASSUMPTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "spatial dataflow",
        "`output_channels` partition: each PE owns output channels, inputs go to every PE",
        "spatial mapping K 8 x K 8 (generated): the same; where K < 64 it drops the unrolling of one dimension",
    ),
    (
        "temporal mapping",
        "fixed: passes of (k-block x group of whole output rows), k-block-major; each PE accumulates its channel "
        "in chunks of `accumulator_entries` columns",
        "searched per layer (LOMA: loop orders and tilings over the memory levels); the lowest energy-delay "
        "product is kept",
    ),
    (
        "buffer allocation",
        "half the buffer for a k-block's weights (kept resident), half for double-buffered inputs and outputs; "
        "the input map stays across k-blocks when it fits",
        "one buffer shared freely by the three operands; an operand's transfers overlap computation (double "
        "buffering) at a level when the tiles held there use at most half of that memory",
    ),
    (
        "overlap of DRAM and compute",
        "discrete-event: loader -> PE array -> writer per pass with buffers for two passes and one DRAM channel "
        "(writes first); a layer's first and last pass stream by rows, so their first row's reads and last row's "
        "writes are exposed",
        "analytical: each transfer's cycles against the window its loop nest allows (stall or slack per memory "
        "port), plus the first tile's loading and the last tile's offloading",
    ),
    (
        "DRAM traffic",
        "per pass the input rows it needs (halo rows again), each k-block's weights once (again per group when "
        "streamed), outputs once; 16-bit, no metadata for dense layers",
        "what its loop nest moves between DRAM and the buffer, tile halos included; partial sums only if the "
        "mapping spills them",
    ),
    (
        "energy (same table)",
        "register file: 2 operand reads per MAC; accumulator: a 32-bit read and write per MAC; buffer: every byte "
        "written and read (fills, weights once per accumulator chunk, a pass's inputs once, outputs in and out)",
        "every read and write at every level in its loop nest, fills included; a word read again by the next "
        "cycle costs nothing (`access_same_data_considered_as_no_access`, the API default)",
    ),
)


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f}"


def _x(r: float) -> str:
    mark = "" if not _off(r) else " **!**"
    return f"{r:.3f}{mark}"


def layer_table(table: pd.DataFrame) -> str:
    head = (
        "| layer | shape (C x H x W -> K x OH x OW, kernel/stride) | bound | kcycles winosim | kcycles ZigZag | ratio "
        "| DRAM KiB winosim | DRAM KiB ZigZag | ratio | energy uJ winosim | energy uJ ZigZag | ratio |\n"
        "|:---|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in table.to_dict("records"):
        lines.append(
            f"| {r['layer']} | {r['shape']} | {r['bound']} | {r['winosim_cycles'] / 1e3:,.1f} | "
            f"{r['zigzag_cycles'] / 1e3:,.1f} | {_x(r['cycles_ratio'])} | {_kib(r['winosim_dram_bytes'])} | "
            f"{_kib(r['zigzag_dram_bytes'])} | {_x(r['dram_ratio'])} | {r['winosim_energy_pj'] / 1e6:,.2f} | "
            f"{r['zigzag_energy_pj'] / 1e6:,.2f} | {_x(r['energy_ratio'])} |"
        )
    w, z = table[["winosim_cycles", "zigzag_cycles"]].sum()
    wd, zd = table[["winosim_dram_bytes", "zigzag_dram_bytes"]].sum()
    we, ze = table[["winosim_energy_pj", "zigzag_energy_pj"]].sum()
    lines.append(
        f"| **total** | | | {w / 1e3:,.1f} | {z / 1e3:,.1f} | {_x(w / z)} | {_kib(wd)} | {_kib(zd)} | {_x(wd / zd)} "
        f"| {we / 1e6:,.2f} | {ze / 1e6:,.2f} | {_x(we / ze)} |"
    )
    return "\n".join(lines)


def notes(table: pd.DataFrame) -> list[str]:
    """One bullet per distinct note of a network, naming every layer it applies to: cycles and energy where
    their ratio is off by more than the tolerance, DRAM traffic where an operand's is."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for r in table.to_dict("records"):
        for what, column, ratio in (
            ("cycles", "cycles_note", "cycles_ratio"),
            ("DRAM traffic", "dram_note", "dram_ratio"),
            ("energy", "energy_note", "energy_ratio"),
        ):
            if r[column] and (what == "DRAM traffic" or _off(r[ratio])):
                total = " in total, an operand over 10%" if what == "DRAM traffic" else ""
                key = (str(r["network"]), f"{what} {r[ratio]:.3f}x{total}", str(r[column]))
                grouped.setdefault(key, []).append(str(r["layer"]))
    bullets = [f"- **{net}: {', '.join(layers)}** ({label}): {text}" for (net, label, text), layers in grouped.items()]
    for net, part in table.groupby("network", sort=False):
        mine, theirs = part["winosim_cycles"].sum(), part["zigzag_cycles"].sum()
        if _off(_ratio(mine, theirs)):
            off = part[~part["cycles_within_10pct"]]
            share = (off["winosim_cycles"] - off["zigzag_cycles"]).sum() / (mine - theirs)
            bullets.append(
                f"- **{net}: total** (cycles {mine / theirs:.3f}x): the sum of the layers; {share:.0%} of the "
                f"{mine - theirs:,} cycles of difference come from the layers over 10% above "
                f"({', '.join(off['layer'])})."
            )
    return bullets


def energy_table_md(table: pd.DataFrame) -> str:
    """Per layer, winosim / ZigZag of every energy component (both priced with the same table)."""
    lines = [
        "| layer | " + " | ".join(COMPONENTS) + " |",
        "|:---|" + "---:|" * len(COMPONENTS),
    ]
    for r in table.to_dict("records"):
        cells = [_x(_ratio(r[f"winosim_{c}_pj"], r[f"zigzag_{c}_pj"])) for c in COMPONENTS]
        lines.append(f"| {r['layer']} | " + " | ".join(cells) + " |")
    mine = [table[f"winosim_{c}_pj"].sum() for c in COMPONENTS]
    theirs = [table[f"zigzag_{c}_pj"].sum() for c in COMPONENTS]
    lines.append("| **total uJ, winosim** | " + " | ".join(f"{m / 1e6:,.2f}" for m in mine) + " |")
    lines.append("| **total uJ, ZigZag** | " + " | ".join(f"{t / 1e6:,.2f}" for t in theirs) + " |")
    lines.append(
        "| **total ratio** | " + " | ".join(_x(_ratio(m, t)) for m, t in zip(mine, theirs, strict=True)) + " |"
    )
    return "\n".join(lines)


def energy_paragraph(table: pd.DataFrame, arch: Arch) -> str:
    """What the two models count at the register files and the buffer, in bytes over a network's layers."""
    t = table.sum(numeric_only=True)
    return (
        "MACs and accumulators are counted alike (a multiply, a 32-bit add and a 32-bit accumulator read and "
        "write per MAC) and are most of the energy, so the totals agree closely. The register files and the "
        "buffer are counted differently. Register files: winosim charges two operand reads per MAC "
        f"({t['winosim_rf_access_bytes'] / 1e6:,.1f} MB over these layers) and no fills; ZigZag reads "
        f"{t['zigzag_rf_read_bytes'] / 1e6:,.1f} MB (a word that stays at the register file's output for "
        "consecutive cycles is read once: ZigZag's API evaluates with `access_same_data_considered_as_no_access`) "
        f"and fills {t['zigzag_rf_fill_bytes'] / 1e6:,.1f} MB. Buffer: winosim reads "
        f"{t['winosim_buffer_input_read_bytes'] / 1e6:,.1f} MB of inputs (a pass's inputs once: it assumes the PEs "
        "reuse the sliding window, whatever the register file's size) and "
        f"{t['winosim_buffer_weight_read_bytes'] / 1e6:,.1f} MB of weights (once per accumulator chunk); ZigZag "
        f"reads {t['zigzag_buffer_input_read_bytes'] / 1e6:,.1f} MB of inputs and "
        f"{t['zigzag_buffer_weight_read_bytes'] / 1e6:,.1f} MB of weights, as often as its loop nest refills a "
        f"{arch.memory.register_file_bytes} B register file that holds both. Per layer: the `energy_note` column "
        "of the CSV."
    )


def summary(table: pd.DataFrame) -> list[str]:
    n = len(table)
    within = int(table["cycles_within_10pct"].sum())
    compute = table[table["bound"] == "compute"]
    compute_within = int(compute["cycles_within_10pct"].sum())
    misses = table[~table["cycles_within_10pct"]]
    dram_within = int((~table["dram_ratio"].map(_off)).sum())
    energy_within = int((~table["energy_ratio"].map(_off)).sum())
    lines = [
        f"- **cycles**: {within} of {n} layers within 10%; compute-bound layers: {compute_within} of {len(compute)} "
        f"within 10% (ratio winosim / ZigZag {compute['cycles_ratio'].min():.3f} to "
        f"{compute['cycles_ratio'].max():.3f}).",
        f"- **DRAM traffic**: {dram_within} of {n} layers within 10% (ratio {table['dram_ratio'].min():.3f} to "
        f"{table['dram_ratio'].max():.3f}).",
        f"- **energy** (both priced with winosim's table): {energy_within} of {n} layers within 10% (ratio "
        f"{table['energy_ratio'].min():.3f} to {table['energy_ratio'].max():.3f}); by component, the register "
        "files and the buffer differ more (Energy by component).",
    ]
    if len(misses):
        lines += [
            "",
            "Layers whose cycles differ by more than 10%, with the two parts of each model's cycles: the PE array's "
            "busy time (winosim) or the cycles of the temporal mapping (ZigZag), and the DRAM time left exposed. "
            "Notes below say why.",
            "",
            "| network | layer | bound | ratio | array busy winosim | ZigZag | exposed DRAM winosim | ZigZag "
            "| main cause |",
            "|:---|:---|:---|---:|---:|---:|---:|---:|:---|",
        ]
        for r in misses.to_dict("records"):
            lines.append(
                f"| {r['network']} | {r['layer']} | {r['bound']} | {r['cycles_ratio']:.3f} | "
                f"{r['winosim_pe_array_busy_cycles']:,} | {r['zigzag_temporal_cycles']:,} | "
                f"{r['winosim_exposed_dram_cycles']:,} | {r['zigzag_exposed_cycles']:,} | {r['cycles_cause']} |"
            )
    return lines


def configuration_table(arch: Arch) -> str:
    accel = zigzag_accelerator(arch)
    mems = accel["memories"]
    rows, cols = array_shape(arch.pe_array.pe_count)
    mem, pe = arch.memory, arch.pe_array
    return "\n".join(
        [
            "| quantity | winosim (`Arch`) | ZigZag (generated from it) |",
            "|:---|:---|:---|",
            f"| array | {pe.pe_count} PEs x {pe.multipliers_per_pe} multiplier, `{pe.partition}` partition | "
            f"operational array {rows} x {cols}, spatial mapping D1: K {rows}, D2: K {cols} |",
            f"| register file | {mem.register_file_bytes} B per PE | `{RF}`: {mems[RF]['size']} bits per PE, inputs "
            "and weights |",
            f"| accumulators | {pe.accumulator_entries} x {ACCUMULATOR_BITS}-bit per PE | `{ACC}`: {mems[ACC]['size']} "
            "bits per PE, outputs |",
            f"| global buffer | {mem.global_buffer_bytes} B | `{GB}`: {mems[GB]['size']} bits, all operands, ports of "
            f"{mems[GB]['ports'][0]['bandwidth_max']} bits/cycle (winosim does not limit it) |",
            f"| DRAM | {mem.dram_bandwidth_bytes_per_cycle} B/cycle, one channel | `{DRAM}`: one read/write port of "
            f"{mems[DRAM]['ports'][0]['bandwidth_max']} bits/cycle |",
            f"| data | {arch.data_width_bits}-bit, {ACCUMULATOR_BITS}-bit partial sums | precision W, I "
            f"{arch.data_width_bits}, O {ACCUMULATOR_BITS}, O_final {arch.data_width_bits} |",
            f"| energy | table `{arch.energy_table}` | the same table: "
            f"{accel['operational_array']['unit_energy']:.4g} pJ "
            "per MAC (multiply + 32-bit add); per access, the table's pJ per byte of that memory's size x bytes "
            "moved |",
        ]
    )


def markdown(table: pd.DataFrame, arch: Arch, images: int, version: str) -> str:
    parts = [
        "# winosim against an outside model: ZigZag on the same dense layers",
        "",
        f"- outside model: **ZigZag** (`{ZIGZAG_DISTRIBUTION}` {version}, KU Leuven MICAS), an analytical "
        'accelerator cost model with a temporal-mapping search (LOMA), `opt="EDP"`; nobody here wrote it',
        f"- winosim {winosim.__version__}: the dense spatial method (`winosim.simulate(trace, arch)` with "
        f"`methods=('{METHOD}',)`), {images} image(s) per layer; every layer starts and ends in DRAM in both models",
        "- made by: `pip install -e '.[validation]' && python analyses/validation.py` "
        "(generated ZigZag inputs: `validation-zigzag-accelerator.yaml`, `validation-zigzag-mapping.yaml`; every "
        "number: `validation-zigzag.csv`; ratios per layer: `validation-zigzag.png`)",
        "- ratio = winosim / ZigZag; **!** marks a difference over 10%, explained under Notes. `bound` is the "
        "roofline class, from neither model: compute-bound when the array at full use needs at least as many "
        "cycles as DRAM needs to move every tensor once.",
        "",
        "## Matched configuration",
        "",
        configuration_table(arch),
        "",
        "## Summary",
        "",
        *summary(table),
        "",
    ]
    for name, part in table.groupby("network", sort=False):
        parts += [f"## {NETWORK_TITLES.get(str(name), str(name))}", "", layer_table(part), ""]
    parts += ["## Notes: every difference over 10%", "", *notes(table), ""]
    parts += ["## Energy by component (winosim / ZigZag, the same energy table)", ""]
    for name, part in table.groupby("network", sort=False):
        parts += [f"### {NETWORK_TITLES.get(str(name), str(name))}", "", energy_table_md(part), ""]
        parts += [energy_paragraph(part, arch), ""]
    parts += [
        "## What each model assumes",
        "",
        "| | winosim | ZigZag |",
        "|:---|:---|:---|",
        *(f"| {what} | {mine} | {theirs} |" for what, mine, theirs in ASSUMPTIONS),
        "",
    ]
    return "\n".join(parts)


CSV_ROUNDING = {"cycles_ratio": 6, "dram_ratio": 6, "energy_ratio": 6}


def csv_text(table: pd.DataFrame) -> str:
    out = table.copy()
    for column in out.columns:
        if column.endswith("_ratio"):
            out[column] = out[column].round(6)
        elif column.endswith("_pj"):
            out[column] = out[column].round(1)
    return str(out.to_csv(index=False, lineterminator="\n"))


def ratio_figure(table: pd.DataFrame) -> Any:
    from winosim.figures import new_figure

    networks = list(dict.fromkeys(table["network"]))
    figure = new_figure(11.0, 3.2 * len(networks))
    axes = figure.subplots(len(networks), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, networks, strict=True):
        part = table[table["network"] == name]
        x = np.arange(len(part))
        for offset, column, label in (
            (-0.27, "cycles_ratio", "cycles"),
            (0.0, "dram_ratio", "DRAM bytes"),
            (0.27, "energy_ratio", "energy"),
        ):
            ax.bar(x + offset, part[column], width=0.27, label=label)
        ax.axhspan(1 - TOLERANCE, 1 + TOLERANCE, color="0.9", zorder=0, label="within 10%")
        ax.axhline(1.0, color="0.3", linewidth=0.8)
        ax.set_xticks(x, part["layer"], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("winosim / ZigZag", fontsize=8)
        ax.set_ylim(0.6, 1.4)
        ax.set_title(f"{NETWORK_TITLES.get(name, name)}: dense spatial, matched 8 x 8 array", fontsize=9)
        ax.legend(fontsize=7, ncols=4, loc="upper left")
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: analyses/out/)")
    parser.add_argument("--images", type=int, default=1, help="images per layer (default 1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)  # before ZigZag's API configures the root logger at INFO
    try:
        version = zigzag_version()
    except ImportError:
        raise SystemExit("analyses/validation.py needs ZigZag: pip install -e '.[validation]'") from None
    from winosim.figures import save_png

    arch = matched_arch()
    tables = []
    with tempfile.TemporaryDirectory(prefix="winosim-validation-") as work:
        for name in NETWORKS:
            geometry = network(name)
            print(f"{name}: winosim", file=sys.stderr)
            frame = winosim_frame(geometry, arch, args.images)
            zigzag = run_zigzag(list(geometry.layers), arch, args.images, Path(work) / name)
            tables.append(compare(geometry, arch, args.images, frame, zigzag))
    table = pd.concat(tables, ignore_index=True)
    out: Path = args.out
    write_markdown(out / f"{STEM}.md", markdown(table, arch, args.images, version))
    write_markdown(out / f"{STEM}.csv", csv_text(table))
    write_markdown(out / f"{STEM}-accelerator.yaml", yaml.safe_dump(zigzag_accelerator(arch), sort_keys=False))
    write_markdown(out / f"{STEM}-mapping.yaml", yaml.safe_dump(zigzag_mapping(arch), sort_keys=False))
    save_png(ratio_figure(table), out / f"{STEM}.png")
    print(f"wrote {out / STEM}.md, .csv, .png, -accelerator.yaml, -mapping.yaml", file=sys.stderr)


if __name__ == "__main__":
    main()
