"""The architecture description and its text layer: validated frozen records, YAML files, `--set` overrides.

An impossible architecture (0 PEs, a buffer smaller than one tile, negative bandwidth, an unknown key) is one
ConfigError naming the key; the default architecture is the shipped preset, which names every key; every
override reaches an architecture through one function; flat dicts round-trip.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from winosim.arch import Arch
from winosim.archio import (
    add_arch_arguments,
    apply_overrides,
    arch_from_args,
    arch_from_dict,
    arch_to_flat_dict,
    default_arch,
    flat_keys,
    load_arch,
    load_preset,
    resolve_arch,
)
from winosim.errors import ConfigError


def test_the_default_architecture_is_the_complete_shipped_preset() -> None:
    assert default_arch() == load_preset("default")
    assert default_arch().pe_array.pe_count == 64
    with pytest.raises(TypeError):
        Arch()  # type: ignore[call-arg]  # no second copy of the defaults in the records
    with pytest.raises(ConfigError, match="missing architecture key"):
        arch_from_dict({"pe_array": {"pe_count": 4}})  # a preset (no base) must name every key


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pe": "0"}, "PEArray: pe_count must be an integer in [1, 1048576], got 0"),
        ({"pe_array.multipliers_per_pe": "1e12"}, "multipliers_per_pe must be an integer in [1, 4096], got 10000000"),
        ({"memory.dram_bandwidth_bytes_per_cycle": "1e300"}, "dram_bandwidth_bytes_per_cycle must be an integer in"),
        ({"memory.global_buffer_bytes": "1e30"}, "global_buffer_bytes must be an integer in [1, 1099511627776]"),
        ({"memory.global_buffer_bytes": "1e400"}, "expected an integer"),
        ({"pe": 2**70}, "pe_count must be an integer in [1, 1048576], got 1.18e+21"),
        ({"pe": float("nan")}, "expected an integer"),
        ({"clock_hz": "nan"}, "clock_hz: expected a number"),
        ({"clock_hz": float("inf")}, "clock_hz must be a finite number"),
        ({"clock_hz": "1e300"}, "clock_hz must be a finite number in [1, 1e+12]"),
        ({"clock_hz": "1e-300"}, "clock_hz must be a finite number in [1, 1e+12], got 1e-300"),
        ({"pe_array.multipliers_per_pe": "-2"}, "multipliers_per_pe"),
        ({"memory.dram_bandwidth_bytes_per_cycle": "-1"}, "Memory: dram_bandwidth_bytes_per_cycle"),
        ({"memory.global_buffer_bytes": "16"}, "global_buffer_bytes must hold at least one 4x4 input tile"),
        ({"pe_array.weight_zeros": "sometimes"}, "weight_zeros must be one of none, gate, skip"),
        ({"pe_array.partition": "rows"}, "partition"),
        ({"data_width_bits": "12"}, "data_width_bits must be one of 8, 16, 32"),
        ({"clock_hz": "0"}, "clock_hz"),
        ({"energy_table": "made_up"}, "energy_table"),
        ({"memory.weight_format": "zip"}, "weight_format"),
        ({"pe_array.pe_kind": "cartesian", "pe_array.partition": "output_channels"}, "partition 'tiles'"),
        ({"pe_array.pe_kind": "cartesian", "pe_array.partition": "tiles", "pe_array.multipliers_per_pe": "8"}, "F"),
        ({"no_such.key": "1"}, "unknown architecture key 'no_such.key'"),
        ({"pe_array": "3"}, "pe_array is a section, not a key; its keys: pe_array.pe_count, "),
        ({"pe": "many"}, "pe_array.pe_count: expected an integer"),
        ({"memory.global_buffer_bytes": "1.5"}, "expected an integer"),
        ({"clock_hz": "3 furlongs"}, "clock_hz: unknown unit"),
    ],
)
def test_impossible_architectures_name_the_key(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(default_arch(), overrides)
    text = str(info.value)
    assert "\n" not in text
    if message == "F":  # cartesian: multipliers must equal F x I
        assert "cartesian_weights x cartesian_activations" in text
    else:
        assert message in text


def test_overrides_parse_types_and_human_units() -> None:
    arch = apply_overrides(
        default_arch(),
        {
            "pe": "128",
            "memory.global_buffer_bytes": "512KiB",
            "clock_hz": "800MHz",
            "pe_array.assignment": "static",
            "memory.dram_bandwidth_bytes_per_cycle": 32,
        },
    )
    assert arch.pe_array.pe_count == 128
    assert arch.memory.global_buffer_bytes == 512 * 1024
    assert arch.clock_hz == 800e6
    assert arch.pe_array.assignment == "static"
    assert arch.memory.dram_bandwidth_bytes_per_cycle == 32
    assert default_arch().pe_array.pe_count == 64  # frozen: the original is untouched


def test_records_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        default_arch().pe_array.pe_count = 3  # type: ignore[misc]


def test_flat_dict_is_stable_json_and_round_trips() -> None:
    arch = apply_overrides(default_arch(), {"pe": "8", "memory.weight_format": "csr"})
    flat = arch_to_flat_dict(arch)
    assert tuple(flat) == flat_keys()
    assert json.loads(json.dumps(flat)) == flat
    assert apply_overrides(default_arch(), {k: str(v) for k, v in flat.items()}) == arch


def test_yaml_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "arch.yaml"
    path.write_text("name: small\npe_array:\n  pe_count: 16\nmemory:\n  global_buffer_bytes: 64KiB\n")
    arch = load_arch(path)
    assert arch.name == "small"
    assert arch.pe_array.pe_count == 16
    assert arch.memory.global_buffer_bytes == 65536
    assert arch.pe_array.multipliers_per_pe == default_arch().pe_array.multipliers_per_pe


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pe_array:\n  pe_count: 0\n", "pe_count must be an integer in \\[1, 1048576\\]"),
        ("pe_array:\n  pe_cuont: 4\n", "unknown architecture key 'pe_array.pe_cuont'"),
        ("memroy:\n  global_buffer_bytes: 4\n", "unknown architecture section 'memroy'"),
        ("memory: 5\n", "memory is a section, not a key; its keys: memory.dram_bandwidth_bytes_per_cycle, "),
        ("pe_array:\n  pe_count:\n    a: 1\n", "pe_array.pe_count takes one value, not a section of keys"),
        ("pe_array: [1, 2\n", "not valid YAML"),
        ("- 1\n- 2\n", "expected a mapping"),
    ],
)
def test_bad_yaml_files_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_arch(path)


def test_missing_file_and_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="architecture file not found"):
        load_arch("/nonexistent/arch.yaml")
    with pytest.raises(ConfigError, match="unknown architecture preset 'nope'; known: default"):
        load_preset("nope")


def test_command_line_arguments(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arch_arguments(parser)
    path = tmp_path / "arch.yaml"
    path.write_text("pe_array:\n  pe_count: 16\n")
    args = parser.parse_args(["--arch", str(path), "--set", "memory.weight_format=csr", "--set", "pe=8"])
    arch = arch_from_args(args)
    assert (arch.pe_array.pe_count, arch.memory.weight_format) == (8, "csr")
    args.pe = 32
    assert arch_from_args(args).pe_array.pe_count == 32  # --pe wins over --set pe=...
    assert arch_from_args(parser.parse_args([])) == default_arch()
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE"):
        arch_from_args(parser.parse_args(["--set", "pe"]))
    with pytest.raises(ConfigError, match="--pe must be >= 1, got 0"):
        arch_from_args(argparse.Namespace(pe=0))
    both = argparse.Namespace(
        arch=str(path), arch_set=["pe_array.multipliers_per_pe=2", "pe=8"], pe=None, multipliers_per_pe=4
    )
    assert resolve_arch(str(path), {"pe": "8", "pe_array.multipliers_per_pe": 4}) == arch_from_args(both)


def test_constructors_validate_directly() -> None:
    arch = default_arch()
    with pytest.raises(ConfigError, match="TransformUnit: count"):
        dataclasses.replace(arch.input_transform, count=0)
    with pytest.raises(ConfigError, match="Memory: register_file_bytes"):
        dataclasses.replace(arch.memory, register_file_bytes=0)
    with pytest.raises(ConfigError, match="PEArray: accumulator_entries"):
        dataclasses.replace(arch.pe_array, accumulator_entries=0)
    with pytest.raises(ConfigError, match="Arch: pe_array must be a PEArray"):
        dataclasses.replace(arch, pe_array={"pe_count": 4})  # type: ignore[arg-type]
