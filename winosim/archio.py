"""Reading and writing architecture descriptions: YAML files, `--set key=value` overrides, flat dicts.

This is the one layer that turns text into an `Arch`; the simulator never sees a dict. The default
architecture is the shipped preset `winosim/presets/default.yaml` (`default_arch`), complete and documented
there; a user's file names only what differs from it. Every override a command takes (`--arch`, `--set`,
`--pe`, `--multipliers-per-pe`, a sweep's grid values) is applied by one function, `resolve_arch`. Keys are dotted paths
into the nested records (`pe_array.pe_count`, `memory.global_buffer_bytes`, `data_width_bits`); `pe` is a
short alias for `pe_array.pe_count`. Values given as text are parsed against the field's type; sizes and
clocks may carry human units at this edge only ("256KiB", "1.5MB", "800MHz", "1GHz"). An unknown key, a
value of the wrong type or an impossible architecture raises `ConfigError` naming the key.

YAML is parsed by `safe_yaml`: PyYAML's safe loader without aliases (an alias bomb, a few lines that expand
to billions of nodes, cannot be written), nested at most `MAX_YAML_DEPTH` levels (no RecursionError) and
from files of at most `MAX_YAML_BYTES`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from winosim.arch import Arch, Memory, PEArray, TransformUnit
from winosim.errors import ConfigError
from winosim.text import first_line

ALIASES: dict[str, str] = {"pe": "pe_array.pe_count"}
_RECORDS: dict[str, type] = {
    "pe_array": PEArray,
    "input_transform": TransformUnit,
    "output_transform": TransformUnit,
    "memory": Memory,
}
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_HZ_UNITS = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}
MAX_YAML_DEPTH = 32
"""Deepest nesting of mappings and lists in an architecture or grid file (a real one nests 2 levels)."""

MAX_YAML_BYTES = 1024**2
"""Largest architecture or grid file (1 MiB; the shipped preset is about 3 KiB)."""


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


class _BoundedSafeLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses aliases and nesting deeper than MAX_YAML_DEPTH while composing, so
    neither alias expansion nor recursion can run away, and a key given twice in one mapping (PyYAML keeps the
    last silently: a grid axis or a parameter the user wrote would vanish)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"YAML aliases (*{event.anchor}) are not supported ({_where(event.start_mark)})")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                where = _where(self.peek_event().start_mark)
                raise ConfigError(f"YAML nested deeper than {MAX_YAML_DEPTH} levels ({where})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the constructor below says so
                continue
            if first is not key_node:
                raise ConfigError(
                    f"YAML key {key!r} given twice ({_where(first.start_mark)} and {_where(key_node.start_mark)})"
                )
        return super().construct_mapping(node, deep=deep)


def safe_yaml(text: str) -> Any:
    """Parse one YAML document with the bounded safe loader; malformed YAML raises `yaml.YAMLError`, an
    alias or too deep a nesting raises `ConfigError`."""
    loader = _BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


_NUMBER_UNIT = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


@functools.cache
def _field_types() -> dict[str, type]:
    """Every settable dotted key and the Python type of its value (int, float or str), in declaration order."""
    types: dict[str, type] = {}

    def scalar(kind: Any) -> type:
        return kind if kind in (int, float) else str  # Literal[...] choices and names are text

    for top in dataclasses.fields(Arch):
        kind = get_type_hints(Arch)[top.name]
        if dataclasses.is_dataclass(kind):
            hints = get_type_hints(kind)
            for sub in dataclasses.fields(kind):
                types[f"{top.name}.{sub.name}"] = scalar(hints[sub.name])
        else:
            types[top.name] = scalar(kind)
    return types


def flat_keys() -> tuple[str, ...]:
    """Every settable dotted key, in the stable order of `arch_to_flat_dict`."""
    return tuple(_field_types())


def arch_to_flat_dict(arch: Arch) -> dict[str, Any]:
    """The architecture as {dotted key: scalar}, in declaration order; JSON-able."""
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(arch):
        value = getattr(arch, f.name)
        if dataclasses.is_dataclass(value):
            for sub in dataclasses.fields(value):
                flat[f"{f.name}.{sub.name}"] = getattr(value, sub.name)
        else:
            flat[f.name] = value
    return flat


def _parse_value(key: str, text: Any, kind: type) -> Any:
    """Parse `text` (a string from the command line, or a YAML scalar) to `kind` (int, float or str)."""
    if kind is int:
        if isinstance(text, bool):
            raise ConfigError(f"{key}: expected an integer, got {text!r}")
        if isinstance(text, int):
            return text
        if isinstance(text, float):
            if text.is_integer():
                return int(text)
            raise ConfigError(f"{key}: expected an integer, got {text!r}")
        match = _NUMBER_UNIT.match(str(text))
        if match is None:
            raise ConfigError(f"{key}: expected an integer, got {text!r}")
        number, unit = match.groups()
        scale = 1
        if unit:
            if not key.endswith("_bytes") or unit.lower() not in _SIZE_UNITS:
                raise ConfigError(f"{key}: unknown unit {unit!r} in {text!r}")
            scale = _SIZE_UNITS[unit.lower()]
        value = float(number) * scale
        if not value.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {text!r}")
        return int(value)
    if kind is float:
        if isinstance(text, bool):
            raise ConfigError(f"{key}: expected a number, got {text!r}")
        if isinstance(text, int | float):
            return float(text)
        match = _NUMBER_UNIT.match(str(text))
        if match is None:
            raise ConfigError(f"{key}: expected a number, got {text!r}")
        number, unit = match.groups()
        if unit and (not key.endswith("_hz") or unit.lower() not in _HZ_UNITS):
            raise ConfigError(f"{key}: unknown unit {unit!r} in {text!r}")
        return float(number) * (_HZ_UNITS[unit.lower()] if unit else 1.0)
    if not isinstance(text, str):
        raise ConfigError(f"{key}: expected text, got {text!r}")
    return text.strip()


def apply_overrides(arch: Arch, overrides: Mapping[str, Any]) -> Arch:
    """A new `Arch` with the dotted `overrides` applied ({"pe": "64", "memory.weight_format": "csr"}).

    Values may be strings (parsed against the field's type) or already typed. The result is validated.
    """
    return _arch_from_flat({**arch_to_flat_dict(arch), **_parsed(overrides)})


def _parsed(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`overrides` with aliases resolved and values parsed; an unknown key raises ConfigError."""
    types = _field_types()
    parsed: dict[str, Any] = {}
    for raw_key, text in overrides.items():
        key = ALIASES.get(raw_key, raw_key)
        if key in _RECORDS:  # a section given one value (--set pe_array=3, `pe_array: 3`)
            inside = ", ".join(k for k in types if k.startswith(f"{key}."))
            raise ConfigError(f"{raw_key} is a section, not a key; its keys: {inside}")
        if key not in types:
            raise ConfigError(f"unknown architecture key {raw_key!r}; known keys: {', '.join([*ALIASES, *types])}")
        parsed[key] = _parse_value(key, text, types[key])
    return parsed


def _arch_from_flat(flat: Mapping[str, Any]) -> Arch:
    missing = [key for key in _field_types() if key not in flat]
    if missing:
        raise ConfigError(f"missing architecture key(s) {', '.join(missing)}")
    nested: dict[str, dict[str, Any]] = {name: {} for name in _RECORDS}
    top: dict[str, Any] = {}
    for key, value in flat.items():
        head, _, tail = key.partition(".")
        if tail:
            nested[head][tail] = value
        else:
            top[key] = value
    records = {name: kind(**nested[name]) for name, kind in _RECORDS.items()}
    return Arch(**records, **top)


def arch_from_dict(data: Mapping[str, Any], *, base: Arch | None = None, where: str = "architecture") -> Arch:
    """Build an `Arch` from a nested mapping (the YAML document), starting from `base`.

    Missing keys keep the base's values (without a base, every key must be given); unknown keys raise
    ConfigError naming them.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of architecture keys, got {type(data).__name__}")
    overrides: dict[str, Any] = {}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for key, value in node.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: keys must be text, got {key!r}")
            dotted = f"{prefix}{key}"
            if isinstance(value, Mapping):
                if dotted in flat_keys():
                    raise ConfigError(f"{where}: {dotted} takes one value, not a section of keys")
                if dotted not in _RECORDS:
                    raise ConfigError(f"{where}: unknown architecture section {dotted!r}")
                walk(f"{dotted}.", value)
            else:
                overrides[dotted] = value

    walk("", data)
    try:
        if base is None:
            return _arch_from_flat(_parsed(overrides))
        return apply_overrides(base, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def read_yaml_file(path: str | os.PathLike[str], what: str) -> Any:
    """Parse a YAML file (an empty file is {}); a missing, unreadable or invalid file raises one-line
    ConfigError naming `what` ("architecture file", "grid file")."""
    source = Path(path)
    try:
        with source.open("rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise ConfigError(f"{source}: {what} larger than {MAX_YAML_BYTES // 1024} KiB")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {source}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read {what} ({exc})") from None
    try:
        data = safe_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({first_line(exc)})") from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return data if data is not None else {}


def load_arch(path: str | os.PathLike[str]) -> Arch:
    """Read an architecture YAML file (a nested mapping; see winosim/presets/default.yaml).

    Keys the file omits take the values of the default preset.
    """
    return arch_from_dict(read_yaml_file(path, "architecture file"), base=default_arch(), where=str(path))


@functools.cache
def load_preset(name: str) -> Arch:
    """A shipped preset from winosim/presets/<name>.yaml, which names every key (parsed once per process:
    the package data is read-only and the returned Arch is frozen)."""
    files = resources.files("winosim") / "presets"
    resource = files / f"{name}.yaml"
    if not resource.is_file():
        known = sorted(p.name.removesuffix(".yaml") for p in files.iterdir() if p.name.endswith(".yaml"))
        raise ConfigError(f"unknown architecture preset {name!r}; known: {', '.join(known)}")
    data = safe_yaml(resource.read_text(encoding="utf-8"))
    return arch_from_dict(data or {}, where=f"preset {name!r}")


def default_arch() -> Arch:
    """The default architecture: the shipped mobile-accelerator preset (winosim/presets/default.yaml)."""
    return load_preset("default")


def parse_set_options(items: Iterable[str]) -> dict[str, str]:
    """Turn repeated `KEY=VALUE` strings into a dict; a malformed item, or one parameter set twice (under
    one name or under an alias and its full name: which value was meant?), raises ConfigError."""
    overrides: dict[str, str] = {}
    given: dict[str, str] = {}  # canonical key -> the item that set it
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        canonical = ALIASES.get(key.strip(), key.strip())
        if canonical in given:
            raise ConfigError(f"--set {canonical} given twice ({given[canonical]!r} and {item!r})")
        given[canonical] = item
        overrides[key.strip()] = value.strip()
    return overrides


def add_arch_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--arch FILE` and repeatable `--set KEY=VALUE` to a command's parser."""
    parser.add_argument(
        "--arch",
        metavar="FILE",
        default=None,
        help="architecture YAML file (default: the shipped mobile preset winosim/presets/default.yaml)",
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="arch_set",
        help="override one architecture key, e.g. --set memory.global_buffer_bytes=512KiB (repeatable)",
    )


def resolve_arch(arch_file: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None) -> Arch:
    """The one way every override reaches an architecture: the file `arch_file` (default: the default
    preset), then the dotted `overrides` (`--set` items, `--pe`, `--multipliers-per-pe`, a grid point's
    values), applied together and validated once."""
    arch = load_arch(arch_file) if arch_file else default_arch()
    return apply_overrides(arch, overrides) if overrides else arch


def arch_from_args(args: argparse.Namespace) -> Arch:
    """The architecture a command's options select: `--arch`/`--set` (see `add_arch_arguments`), and `--pe`
    and `--multipliers-per-pe` where the command has them (they win over `--set` of the same key)."""
    overrides: dict[str, Any] = parse_set_options(getattr(args, "arch_set", None) or [])
    pe = getattr(args, "pe", None)
    if pe is not None:
        if pe < 1:
            raise ConfigError(f"--pe must be >= 1, got {pe}")
        overrides.pop("pe", None)
        overrides["pe_array.pe_count"] = pe
    multipliers = getattr(args, "multipliers_per_pe", None)
    if multipliers is not None:
        overrides["pe_array.multipliers_per_pe"] = multipliers
    return resolve_arch(getattr(args, "arch", None), overrides)
