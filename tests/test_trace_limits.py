"""Hostile trace files: every one is refused with one TraceError, quickly and in bounded memory, or loads.

The loader trusts nothing it has not checked against the geometry (docs/trace-format.md, "Size limits"):
declared entry sizes and npy headers are compared with what the layer shapes allow before anything is
inflated or allocated; the layer shapes themselves must fit `WINOSIM_TRACE_LIMIT_MIB`. Loading streams:
masks stay in the file and are unpacked one layer at a time (`StoredMasks`). The property-based tests at the
end mutate a valid trace at random (byte flips, truncation, swapped, duplicated or edited entries, extreme
numbers) and accept only two outcomes: a TraceError, or a trace whose every mask can be read.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import tempfile
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from winosim.archio import default_arch
from winosim.counts import count_trace
from winosim.errors import TraceError
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.simulate import simulate
from winosim.synthetic import synthetic_trace
from winosim.trace import LIMIT_ENV, StoredMasks, load_trace, size_limit_bytes, write_trace

LAYERS = (
    LayerGeometry("stem", "spatial", "conv", 3, 4, 6, 5, kernel=3, stride=1, padding=1),
    LayerGeometry("wino", "winograd", "conv", 4, 6, 6, 5, kernel=3, stride=1, padding=1),
    LayerGeometry("down", "spatial", "conv", 6, 8, 6, 5, kernel=3, stride=2, padding=1),
    LayerGeometry("fc", "spatial", "fc", 8, 3, 1, 1, kernel=1),
)
BOMB_PEAK_BYTES = 16 * 1024**2
BOMB_SECONDS = 1.0


def _tiny_trace_bytes() -> bytes:
    trace = synthetic_trace(NetworkGeometry("tiny", 6, 5, 3, LAYERS), images=2, seed=3)
    with tempfile.TemporaryDirectory() as folder:
        return write_trace(trace, Path(folder) / "tiny.npz").read_bytes()


VALID = _tiny_trace_bytes()


@pytest.fixture
def written(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.npz"
    path.write_bytes(VALID)
    return path


def _members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(name, archive.read(name)) for name in archive.namelist()]


def _zip(members: list[tuple[str, bytes]], path: Path) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _meta(members: list[tuple[str, bytes]]) -> dict[str, Any]:
    raw = dict(members)["meta.npy"]
    return json.loads(np.load(io.BytesIO(raw)).tobytes())


def _with_meta_text(members: list[tuple[str, bytes]], text: str) -> list[tuple[str, bytes]]:
    meta = _npy(np.frombuffer(text.encode(), dtype=np.uint8))
    return [(name, meta if name == "meta.npy" else data) for name, data in members]


def _with_meta(members: list[tuple[str, bytes]], edit: Callable[[dict[str, Any]], None]) -> list[tuple[str, bytes]]:
    meta = _meta(members)
    edit(meta)
    return _with_meta_text(members, json.dumps(meta))


@contextmanager
def _bounded(peak_bytes: int = BOMB_PEAK_BYTES, seconds: float = BOMB_SECONDS) -> Iterator[None]:
    """The block's peak traced memory stays below `peak_bytes` and it takes under `seconds`."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < peak_bytes, f"peak traced memory {peak / 1024**2:.1f} MiB"
    assert elapsed < seconds, f"took {elapsed:.2f} s"


def _refused(path: Path, match: str) -> None:
    with _bounded(), pytest.raises(TraceError, match=match):
        load_trace(path)


# --------------------------------------------------------------------------- streaming


def test_loaded_masks_stay_in_the_file_and_are_read_per_layer(written: Path) -> None:
    loaded = load_trace(written)
    variant = loaded.variants[0]
    assert isinstance(variant.masks, StoredMasks)
    assert len(variant.masks) == len(LAYERS)
    assert [m.weight.shape for m in variant.masks] == [loaded.expected_shapes(variant, x)[0] for x in LAYERS]
    first = variant.masks[1]
    assert variant.masks[1] is first  # the layer read last is kept
    assert variant.masks[-1].activation.shape == variant.masks[3].activation.shape
    assert len(variant.masks[1:3]) == 2


def test_densities_at_load_agree_with_the_unpacked_masks(written: Path) -> None:
    loaded = load_trace(written)
    for variant in loaded.variants:
        pruned = loaded.pruned_layers(variant)
        weights = np.concatenate([variant.masks[i].weight.ravel() for i in pruned])
        acts = np.concatenate([variant.masks[i].activation.ravel() for i in pruned])
        assert loaded.weight_density(variant) == np.count_nonzero(weights) / weights.size
        assert loaded.activation_density(variant) == np.count_nonzero(acts) / acts.size


def test_stored_masks_pickle_and_count_like_masks_in_memory(written: Path) -> None:
    loaded = load_trace(written)
    copy = pickle.loads(pickle.dumps(loaded))
    assert count_trace(copy) == count_trace(loaded)
    in_memory = synthetic_trace(NetworkGeometry("tiny", 6, 5, 3, LAYERS), images=2, seed=3)
    assert count_trace(in_memory) == count_trace(loaded)


def test_a_trace_file_changed_after_loading_is_refused(written: Path) -> None:
    loaded = load_trace(written)
    written.write_bytes(VALID + b"\0")
    with pytest.raises(TraceError, match="changed after it was loaded"):
        loaded.variants[0].masks[2]


def _simulate_peak_bytes(tmp_path: Path, layers: int) -> int:
    """Peak traced memory of loading and simulating a file trace of `layers` identical Winograd layers."""
    stack = tuple(
        LayerGeometry(f"conv{i}", "winograd", "conv", 32, 32, 24, 24, kernel=3, stride=1, padding=1)
        for i in range(layers)
    )
    trace = synthetic_trace(NetworkGeometry(f"stack{layers}", 24, 24, 10, stack), images=4, seed=1)
    path = write_trace(trace, tmp_path / f"stack{layers}.npz")
    del trace
    arch = default_arch()
    tracemalloc.start()
    try:
        simulate(load_trace(path), arch, engine="recurrence")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def test_memory_of_loading_and_simulating_does_not_grow_with_the_number_of_layers(tmp_path: Path) -> None:
    few, many = _simulate_peak_bytes(tmp_path, 2), _simulate_peak_bytes(tmp_path, 16)
    assert many < 1.5 * few, f"2 layers: {few / 1024**2:.1f} MiB, 16 layers: {many / 1024**2:.1f} MiB"


# --------------------------------------------------------------------------- resource bombs


def test_an_entry_inflating_far_beyond_its_geometry_is_refused_before_inflating(tmp_path: Path) -> None:
    members = _members(VALID)
    name = "variant0/layer001/activation.npy"
    path = tmp_path / "inflating.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in members:
            if member != name:
                archive.writestr(member, data)
        with archive.open(name, "w", force_zip64=True) as handle:  # 64 MiB of zeros, about 64 KiB deflated
            header = _npy(np.zeros(0, dtype=np.uint8))
            handle.write(header)
            chunk = bytes(1024**2)
            for _ in range(64):
                handle.write(chunk)
    _refused(path, r"declares \d+ bytes, more than its geometry allows")


def test_an_npy_header_declaring_a_terabyte_is_refused_before_allocating(tmp_path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (2**40,)})
    members = [
        (n, header.getvalue() + b"\0" * 16 if n.endswith("layer001/activation.npy") else d) for n, d in _members(VALID)
    ]
    _refused(_zip(members, tmp_path / "terabyte.npz"), "holds 1099511627776 bytes, the geometry .* needs")
    members = [(n, header.getvalue() + b"{}" if n == "meta.npy" else d) for n, d in _members(VALID)]
    _refused(_zip(members, tmp_path / "terabyte-meta.npz"), "holds 1099511627776 bytes")


@pytest.mark.parametrize(
    ("field", "value"),
    [("in_channels", 2**40), ("out_channels", 2**40), ("padding", 100000), ("in_height", 2**31)],
)
def test_a_huge_layer_in_the_metadata_is_refused_before_reading_masks(tmp_path: Path, field: str, value: int) -> None:
    members = _with_meta(_members(VALID), lambda meta: meta["layers"][0].__setitem__(field, value))
    _refused(
        _zip(members, tmp_path / "huge.npz"), f"layer 'stem' needs a .* more than the limit of 1024 MiB.*{LIMIT_ENV}"
    )


def test_the_size_limit_is_overridable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: Path) -> None:
    monkeypatch.setenv(LIMIT_ENV, "1")
    assert size_limit_bytes() == 1024**2
    load_trace(written)
    members = _with_meta(_members(VALID), lambda meta: meta["layers"][0].__setitem__("in_channels", 5000))
    _refused(_zip(members, tmp_path / "wide.npz"), "more than the limit of 1 MiB")
    for bad in ("0", "lots", "-5"):
        monkeypatch.setenv(LIMIT_ENV, bad)
        with pytest.raises(TraceError, match=LIMIT_ENV):
            load_trace(written)


# --------------------------------------------------------------------------- parsers


def test_deeply_nested_metadata_is_a_trace_error(tmp_path: Path) -> None:
    members = _with_meta_text(_members(VALID), "[" * 200_000 + "]" * 200_000)
    _refused(_zip(members, tmp_path / "deep.npz"), "nested too deeply")


def _patch_central_directory(path: Path, member: str, *, flags: int | None = None, method: int | None = None) -> None:
    """Rewrite one member's flag bits or compression method in the zip's local and central headers."""
    data = bytearray(path.read_bytes())
    encoded = member.encode()
    for signature, flag_at, method_at, name_at in ((b"PK\x01\x02", 8, 10, 46), (b"PK\x03\x04", 6, 8, 30)):
        at = data.find(signature)
        while at >= 0:
            if data[at + name_at : at + name_at + len(encoded)] == encoded:
                if flags is not None:
                    struct.pack_into("<H", data, at + flag_at, struct.unpack_from("<H", data, at + flag_at)[0] | flags)
                if method is not None:
                    struct.pack_into("<H", data, at + method_at, method)
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"flags": 0x1}, "is encrypted"),
        ({"method": 9}, "compression method 9"),
        ({"method": 14}, "compression method 14"),
    ],
)
def test_encrypted_and_unsupported_compression_entries_are_trace_errors(
    written: Path, patch: dict[str, int], match: str
) -> None:
    _patch_central_directory(written, "variant1/layer002/weight.npy", **patch)
    _refused(written, match)


def test_duplicate_entries_are_refused(tmp_path: Path) -> None:
    members = _members(VALID)
    with pytest.warns(UserWarning, match="Duplicate name"):
        path = _zip([*members, members[3]], tmp_path / "duplicate.npz")
    _refused(path, "duplicate entries")


@pytest.mark.parametrize("name", ["conv\x1b[31m", "conv\nfake row", "conv\u202egnp", "conv\x00"])
def test_layer_names_with_control_or_escape_characters_are_refused(tmp_path: Path, name: str) -> None:
    members = _with_meta(_members(VALID), lambda meta: meta["layers"][1].__setitem__("name", name))
    _refused(_zip(members, tmp_path / "name.npz"), "control or escape characters")


def test_variant_names_with_control_characters_are_refused(tmp_path: Path) -> None:
    members = _with_meta(_members(VALID), lambda meta: meta["variants"][0].__setitem__("name", "v\x1b[2J"))
    _refused(_zip(members, tmp_path / "variant.npz"), "name must be letters, digits")


# --------------------------------------------------------------------------- mutations (hypothesis)


def _load_fully(path: Path) -> None:
    """Load, then read every mask of every variant: a mutated trace must fail only with TraceError."""
    try:
        trace = load_trace(path)
        for variant in trace.variants:
            for masks in variant.masks:
                assert masks.weight.dtype == np.bool_
    except TraceError:
        return


MUTATION_SETTINGS = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@MUTATION_SETTINGS
@given(flips=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)), min_size=1, max_size=8))
def test_byte_flips(tmp_path: Path, flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for at, mask in flips:
        data[at] ^= mask
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(data))
    _load_fully(path)


@MUTATION_SETTINGS
@given(length=st.integers(0, len(VALID) - 1))
def test_truncation(tmp_path: Path, length: int) -> None:
    path = tmp_path / "truncated.npz"
    path.write_bytes(VALID[:length])
    _load_fully(path)


@MUTATION_SETTINGS
@given(data=st.data())
def test_swapped_dropped_and_duplicated_entries(tmp_path: Path, data: st.DataObject) -> None:
    members = _members(VALID)
    names = [name for name, _ in members]
    contents = dict(members)
    a, b = data.draw(st.sampled_from(names)), data.draw(st.sampled_from(names))
    contents[a], contents[b] = contents[b], contents[a]
    action = data.draw(st.sampled_from(["swap", "drop", "duplicate"]))
    out = list(contents.items())
    if action == "drop":
        out = [m for m in out if m[0] != a]
    elif action == "duplicate":
        out.append((b, contents[a]))
    path = tmp_path / "shuffled.npz"
    with pytest.warns(UserWarning) if action == "duplicate" else _nothing():
        _zip(out, path)
    _load_fully(path)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


EXTREME = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
LAYER_FIELDS = [
    "name",
    "kind",
    "op",
    "in_channels",
    "out_channels",
    "in_height",
    "in_width",
    "kernel",
    "stride",
    "padding",
]


@MUTATION_SETTINGS
@given(data=st.data(), value=EXTREME)
def test_edited_metadata_fields(tmp_path: Path, data: st.DataObject, value: Any) -> None:
    where = data.draw(st.sampled_from(["top", "layer", "variant", "provenance", "winograd"]))
    top = ["format", "schema_version", "network", "input_height", "input_width", "images", "layers", "variants"]
    variant = ["name", "method", "target_density", "weight_density", "accuracy", "recipe"]
    provenance = ["dataset", "images", "seed", "winosim_version", "command", "synthetic", "torch_version", "notes"]

    def edit(meta: dict[str, Any]) -> None:
        if where == "top":
            meta[data.draw(st.sampled_from(top))] = value
        elif where == "layer":
            meta["layers"][data.draw(st.integers(0, len(LAYERS) - 1))][data.draw(st.sampled_from(LAYER_FIELDS))] = value
        elif where == "variant":
            meta["variants"][data.draw(st.integers(0, 2))][data.draw(st.sampled_from(variant))] = value
        elif where == "provenance":
            meta["provenance"][data.draw(st.sampled_from(provenance))] = value
        else:
            meta["winograd"][data.draw(st.sampled_from(["m", "r"]))] = value

    path = _zip(_with_meta(_members(VALID), edit), tmp_path / "edited.npz")
    tracemalloc.start()
    try:
        _load_fully(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < BOMB_PEAK_BYTES


def test_the_unmutated_trace_loads(written: Path) -> None:
    """The mutation tests' starting point is valid, so their refusals come from the mutations."""
    trace = load_trace(written)
    assert [v.method for v in trace.variants] == ["spatial", "native", "winograd_relu"]
    assert zlib.crc32(VALID) == zlib.crc32(written.read_bytes())
