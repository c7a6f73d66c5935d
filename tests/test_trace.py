"""The trace file (format v1): what is written is what is read, bit for bit, and nothing else is accepted.

A trace is the contract between the torch side and the simulator (docs/trace-format.md). Writing is
deterministic and atomic; loading never unpickles and rejects every malformed file with one TraceError
naming the problem.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from winosim.errors import ConfigError, OutputError, TraceError
from winosim.geometry import LayerGeometry
from winosim.trace import (
    SCHEMA_VERSION,
    LayerMasks,
    Provenance,
    Trace,
    Variant,
    load_trace,
    mask_shapes,
    pack_mask,
    trace_metadata,
    unpack_mask,
    write_trace,
)

LAYERS = (
    LayerGeometry("stem", "spatial", "conv", 3, 4, 6, 5, kernel=3, stride=1, padding=1),
    LayerGeometry("wino", "winograd", "conv", 4, 6, 6, 5, kernel=3, stride=1, padding=1),
    LayerGeometry("down", "spatial", "conv", 6, 8, 6, 5, kernel=3, stride=2, padding=1),
    LayerGeometry("fc", "spatial", "fc", 8, 3, 1, 1, kernel=1),
)
IMAGES = 2


def _provenance(images: int = IMAGES) -> Provenance:
    return Provenance(
        dataset="unit-test",
        images=images,
        seed=1,
        winosim_version="0.1.0",
        command="pytest",
        synthetic=True,
        torch_version=None,
        notes="random masks",
    )


def _variant(name: str, method: str, seed: int, layers: Any = LAYERS, images: int = IMAGES) -> Variant:
    rng = np.random.default_rng(seed)
    masks = []
    for layer in layers:
        weight_shape, act_shape = mask_shapes(method, layer, images)
        masks.append(LayerMasks(weight=rng.random(weight_shape) < 0.4, activation=rng.random(act_shape) < 0.6))
    return Variant(
        name=name,
        method=method,  # type: ignore[arg-type]
        masks=tuple(masks),
        target_density=0.4,
        recipe={"lr": 0.1},
    )


def _trace(methods: Any = ("spatial", "native", "winograd_relu")) -> Trace:
    return Trace(
        network="tiny",
        input_height=6,
        input_width=5,
        layers=LAYERS,
        variants=tuple(_variant(f"v_{m}", m, seed) for seed, m in enumerate(methods)),
        provenance=_provenance(),
    )


@pytest.fixture
def written(tmp_path: Path) -> Path:
    return write_trace(_trace(), tmp_path / "tiny.npz")


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes | None]) -> Path:
    """Copy an npz member by member, replacing (or, for None, dropping) members by name."""
    members = _members(src)
    for name, data in replace.items():
        if data is None:
            members.pop(name)
        else:
            members[name] = data
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return dst


def _meta(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(npz["meta"].tobytes())


def _with_meta(src: Path, dst: Path, meta: dict) -> Path:
    raw = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return _rewrite(src, dst, {"meta.npy": _npy(raw)})


# --------------------------------------------------------------------------- bit packing


def test_packing_is_c_order_little_endian_within_bytes():
    mask = np.zeros((2, 5), dtype=bool)
    mask[0, 0] = True  # element 0 -> bit 0 of byte 0
    mask[1, 3] = True  # element 8 -> bit 0 of byte 1
    mask[1, 4] = True  # element 9 -> bit 1 of byte 1
    np.testing.assert_array_equal(pack_mask(mask), np.array([0b00000001, 0b00000011], dtype=np.uint8))


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (9,), (3, 5, 7), (2, 3, 4, 4, 16)])
def test_pack_unpack_round_trip(shape):
    mask = np.random.default_rng(0).random(shape) < 0.5
    packed = pack_mask(mask)
    assert packed.size == -(-mask.size // 8)
    np.testing.assert_array_equal(unpack_mask(packed, shape, "m"), mask)


def test_unpack_rejects_wrong_size_dtype_and_padding_bits():
    packed = pack_mask(np.ones(9, dtype=bool))
    with pytest.raises(TraceError, match="holds 2 bytes, the geometry \\(17,\\) needs 3"):
        unpack_mask(packed, (17,), "m")
    with pytest.raises(TraceError, match="1-D uint8"):
        unpack_mask(packed.astype(np.int16), (9,), "m")
    with pytest.raises(TraceError, match="padding bits"):
        unpack_mask(np.array([0xFF, 0xFF], dtype=np.uint8), (9,), "m")


# --------------------------------------------------------------------------- round trip and determinism


def test_round_trip_preserves_everything(written: Path) -> None:
    original = _trace()
    loaded = load_trace(written)
    assert loaded.network == original.network
    assert loaded.layers == original.layers
    assert loaded.provenance == original.provenance
    assert (loaded.input_height, loaded.input_width, loaded.winograd_m) == (6, 5, 2)
    for a, b in zip(original.variants, loaded.variants, strict=True):
        assert (a.name, a.method, a.target_density, a.accuracy, dict(a.recipe)) == (
            b.name,
            b.method,
            b.target_density,
            b.accuracy,
            dict(b.recipe),
        )
        for ma, mb in zip(a.masks, b.masks, strict=True):
            np.testing.assert_array_equal(ma.weight, mb.weight)
            np.testing.assert_array_equal(ma.activation, mb.activation)
    assert trace_metadata(loaded) == trace_metadata(original)


def test_writing_is_bit_for_bit_deterministic(tmp_path: Path, written: Path) -> None:
    again = write_trace(_trace(), tmp_path / "again.npz")
    assert again.read_bytes() == written.read_bytes()
    rewritten = write_trace(load_trace(written), tmp_path / "rewritten.npz")
    assert rewritten.read_bytes() == written.read_bytes()


def test_file_layout_matches_the_documented_keys(written: Path) -> None:
    names = sorted(_members(written))
    assert names[-1] == "variant2/layer003/weight.npy"
    assert "meta.npy" in names
    assert "variant0/layer001/activation.npy" in names
    assert len(names) == 1 + 3 * len(LAYERS) * 2
    meta = _meta(written)
    assert meta["format"] == "winosim-trace"
    assert meta["schema_version"] == SCHEMA_VERSION == 1
    assert meta["synthetic"] is True
    assert "SYNTHETIC" in meta["WARNING"]


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import winosim.trace as trace_module

    calls = {"n": 0}
    real = trace_module._npy_bytes

    def failing(array: np.ndarray) -> bytes:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(array)

    monkeypatch.setattr(trace_module, "_npy_bytes", failing)
    with pytest.raises(OutputError, match="disk full"):
        write_trace(_trace(), tmp_path / "new.npz")
    assert list(tmp_path.iterdir()) == []

    old = tmp_path / "old.npz"
    old.write_bytes(b"previous content")
    calls["n"] = 0
    with pytest.raises(OutputError, match="disk full"):
        write_trace(_trace(), old)
    assert old.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["old.npz"]


# --------------------------------------------------------------------------- the in-memory model


def test_mask_shapes_per_domain():
    wino, stem = LAYERS[1], LAYERS[0]
    assert mask_shapes("winograd_relu", wino, 2) == ((6, 4, 16), (2, 4, 3, 3, 16))
    assert mask_shapes("native", wino, 2) == ((6, 4, 16), (2, 4, 3, 3, 16))
    assert mask_shapes("spatial", wino, 2) == ((6, 4, 3, 3), (2, 4, 6, 5))
    assert mask_shapes("winograd_relu", stem, 2) == ((4, 3, 3, 3), (2, 3, 6, 5))
    assert mask_shapes("native", wino, 1, winograd_m=4) == ((6, 4, 36), (1, 4, 2, 2, 36))


def test_variant_domain_follows_method_and_layer_kind():
    variant = _variant("v", "native", 0)
    assert [variant.domain(layer) for layer in LAYERS] == ["spatial", "winograd", "spatial", "spatial"]
    assert {_variant("s", "spatial", 0).domain(layer) for layer in LAYERS} == {"spatial"}


def test_densities_are_over_the_pruned_layers_only():
    trace = _trace(("winograd_relu",))
    variant = trace.variants[0]
    assert trace.pruned_layers(variant) == (1,)
    assert trace.weight_density(variant) == np.count_nonzero(variant.masks[1].weight) / variant.masks[1].weight.size
    masks = variant.masks[1].activation
    assert trace.activation_density(variant) == np.count_nonzero(masks) / masks.size


def test_trace_rejects_masks_that_disagree_with_the_geometry():
    good = _variant("v", "native", 0)
    bad_masks = list(good.masks)
    bad_masks[1] = LayerMasks(weight=np.ones((6, 4, 3, 3), dtype=bool), activation=good.masks[1].activation)
    with pytest.raises(TraceError, match=r"layer 'wino': weight mask shape \(6, 4, 3, 3\) disagrees.*\(6, 4, 16\)"):
        Trace("tiny", 6, 5, LAYERS, (Variant("v", "native", tuple(bad_masks)),), _provenance())
    with pytest.raises(TraceError, match="has masks for 3 layers, the geometry has 4"):
        Trace("tiny", 6, 5, LAYERS, (Variant("v", "native", good.masks[:3]),), _provenance())
    with pytest.raises(TraceError, match="activation mask shape"):
        Trace("tiny", 6, 5, LAYERS, (good,), _provenance(images=3))


def test_trace_rejects_duplicate_variants_and_bad_records():
    v = _variant("v", "spatial", 0)
    with pytest.raises(TraceError, match="variant names are not unique"):
        Trace("tiny", 6, 5, LAYERS, (v, v), _provenance())
    with pytest.raises(ConfigError, match="method must be one of"):
        Variant("x", "dense", v.masks)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="name must be letters"):
        Variant("a b", "spatial", v.masks)
    with pytest.raises(ConfigError, match="accuracy must be in \\[0, 1\\] or None, got 75"):
        Variant("x", "spatial", v.masks, accuracy=75)
    with pytest.raises(ConfigError, match="JSON-serialisable"):
        Variant("x", "spatial", v.masks, recipe={"f": object()})
    with pytest.raises(ConfigError, match="bool numpy array"):
        LayerMasks(weight=np.ones(3), activation=np.ones(3, dtype=bool))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="images must be an integer >= 1, got 0"):
        _provenance(images=0)


def test_variant_lookup_names_the_available_variants():
    trace = _trace(("spatial", "native"))
    assert trace.variant("v_native").method == "native"
    with pytest.raises(TraceError, match="no variant 'x'; it has v_spatial, v_native"):
        trace.variant("x")


# --------------------------------------------------------------------------- every malformed file


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="trace file not found"):
        load_trace(tmp_path / "nope.npz")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="is a directory"):
        load_trace(tmp_path)


def test_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "notes.npz"
    path.write_text("hello, I am text\n")
    with pytest.raises(TraceError, match="not an npz archive"):
        load_trace(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_truncated_npz(tmp_path: Path, written: Path, fraction: float) -> None:
    data = written.read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(TraceError, match="truncated or corrupt npz archive"):
        load_trace(path)


def test_corrupt_member(tmp_path: Path, written: Path) -> None:
    data = bytearray(written.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path = tmp_path / "corrupt.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(TraceError, match="corrupt"):
        load_trace(path)


def test_pickled_object_is_refused(tmp_path: Path, written: Path) -> None:
    pickled = _npy(np.array([{"evil": "payload"}], dtype=object))
    path = _rewrite(written, tmp_path / "pickle.npz", {"variant0/layer001/weight.npy": pickled})
    with pytest.raises(TraceError, match="pickled object array, which winosim refuses to load"):
        load_trace(path)
    path = tmp_path / "pickled-meta.npz"
    np.savez(path, meta=np.array([{"format": "winosim-trace"}], dtype=object))
    with pytest.raises(TraceError, match="'meta' holds a pickled object array"):
        load_trace(path)


def test_foreign_npz_without_meta(tmp_path: Path) -> None:
    path = tmp_path / "foreign.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(TraceError, match="not a winosim trace \\(no 'meta' entry\\)"):
        load_trace(path)


def test_meta_not_json(tmp_path: Path, written: Path) -> None:
    path = _rewrite(written, tmp_path / "bad.npz", {"meta.npy": _npy(np.frombuffer(b"{not json", dtype=np.uint8))})
    with pytest.raises(TraceError, match="'meta' is not valid JSON"):
        load_trace(path)


def test_meta_of_the_wrong_dtype(tmp_path: Path, written: Path) -> None:
    path = _rewrite(written, tmp_path / "bad.npz", {"meta.npy": _npy(np.zeros(4, dtype=np.float32))})
    with pytest.raises(TraceError, match="'meta' must be a 1-D uint8 array"):
        load_trace(path)


def test_wrong_format_name(tmp_path: Path, written: Path) -> None:
    path = _with_meta(written, tmp_path / "bad.npz", _meta(written) | {"format": "someone-else"})
    with pytest.raises(TraceError, match="not a winosim trace \\(meta 'format'"):
        load_trace(path)


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_wrong_schema_version(tmp_path: Path, written: Path, version: Any) -> None:
    path = _with_meta(written, tmp_path / "bad.npz", _meta(written) | {"schema_version": version})
    with pytest.raises(TraceError, match=f"trace schema version {version!r} is not supported"):
        load_trace(path)


def test_mask_bytes_disagreeing_with_the_geometry(tmp_path: Path, written: Path) -> None:
    short = _npy(np.zeros(3, dtype=np.uint8))
    path = _rewrite(written, tmp_path / "bad.npz", {"variant1/layer001/weight.npy": short})
    with pytest.raises(TraceError, match=r"variant 'v_native' layer 'wino' weight mask: holds 3 bytes.*disagrees"):
        load_trace(path)


def test_geometry_disagreeing_with_the_masks(tmp_path: Path, written: Path) -> None:
    meta = _meta(written)
    meta["layers"][1]["out_channels"] = 7
    path = _with_meta(written, tmp_path / "bad.npz", meta)
    with pytest.raises(TraceError, match=r"layer 'wino' weight mask: holds .* the geometry \(7, 4, 3, 3\) needs"):
        load_trace(path)


def test_invalid_geometry_in_meta(tmp_path: Path, written: Path) -> None:
    meta = _meta(written)
    meta["layers"][1]["stride"] = 2
    path = _with_meta(written, tmp_path / "bad.npz", meta)
    with pytest.raises(TraceError, match="invalid geometry or provenance: LayerGeometry 'wino'"):
        load_trace(path)


def test_missing_mask_entry(tmp_path: Path, written: Path) -> None:
    path = _rewrite(written, tmp_path / "bad.npz", {"variant2/layer003/activation.npy": None})
    with pytest.raises(TraceError, match="missing entry 'variant2/layer003/activation'"):
        load_trace(path)


def test_unexpected_entry(tmp_path: Path, written: Path) -> None:
    path = _rewrite(written, tmp_path / "bad.npz", {"extra.npy": _npy(np.zeros(2, dtype=np.uint8))})
    with pytest.raises(TraceError, match="unexpected entries \\['extra'\\]"):
        load_trace(path)


def test_images_disagreeing_with_provenance(tmp_path: Path, written: Path) -> None:
    path = _with_meta(written, tmp_path / "bad.npz", _meta(written) | {"images": 5})
    with pytest.raises(TraceError, match="meta 'images' disagrees with provenance images"):
        load_trace(path)


def test_unknown_variant_method(tmp_path: Path, written: Path) -> None:
    meta = _meta(written)
    meta["variants"][0]["method"] = "magic"
    path = _with_meta(written, tmp_path / "bad.npz", meta)
    with pytest.raises(TraceError, match="unknown method 'magic'"):
        load_trace(path)


def test_stated_density_disagreeing_with_the_masks(tmp_path: Path, written: Path) -> None:
    meta = _meta(written)
    meta["variants"][2]["weight_density"] = 0.99
    path = _with_meta(written, tmp_path / "bad.npz", meta)
    with pytest.raises(TraceError, match=r"states weight density 0\.99, its masks have"):
        load_trace(path)


def test_missing_metadata_field(tmp_path: Path, written: Path) -> None:
    meta = _meta(written)
    del meta["provenance"]["seed"]
    path = _with_meta(written, tmp_path / "bad.npz", meta)
    with pytest.raises(TraceError, match="metadata lacks 'seed'"):
        load_trace(path)


def test_padding_bits_set(tmp_path: Path, written: Path) -> None:
    # stem weight mask: 4*3*3*3 = 108 bits -> 14 bytes, the last 4 bits are padding
    with np.load(written, allow_pickle=False) as npz:
        packed = npz["variant0/layer000/weight"].copy()
    packed[-1] |= 0b1000_0000
    path = _rewrite(written, tmp_path / "bad.npz", {"variant0/layer000/weight.npy": _npy(packed)})
    with pytest.raises(TraceError, match="padding bits after the last element are not zero"):
        load_trace(path)


# --------------------------------------------------------------------------- the documentation


def test_the_documented_example_writes_a_valid_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/trace-format.md shows how to write a trace with plain numpy; that code must produce a trace
    the loader accepts, with the masks it wrote."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "trace-format.md").read_text()
    code = page.split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/trace-format.md", "exec"), namespace)
    trace = load_trace(tmp_path / "my_net.npz")
    assert [layer.name for layer in trace.layers] == ["conv", "fc"]
    assert trace.variants[0].method == "winograd_relu"
    np.testing.assert_array_equal(trace.variants[0].masks[0].activation, namespace["conv_activation"])
    np.testing.assert_array_equal(trace.variants[0].masks[1].weight, namespace["fc_weight"])
    assert trace.provenance.synthetic is False


def test_a_weight_mask_is_read_alone_and_equals_the_layers(written: Path) -> None:
    """`weight_mask` reads only the weight member of a stored layer (the activation mask is left in the
    file), and gives the same mask as the whole layer, stored or in memory; a changed file is refused."""
    from winosim.trace import StoredMasks, weight_mask

    trace = load_trace(written)
    for variant in trace.variants:
        assert isinstance(variant.masks, StoredMasks)
        in_memory = tuple(variant.masks)
        for index in range(len(variant.masks)):
            alone = weight_mask(StoredMasks(*variant.masks.__reduce__()[1]), index)  # nothing cached
            assert np.array_equal(alone, variant.masks[index].weight)
            assert np.array_equal(weight_mask(in_memory, index), alone)
    stored = StoredMasks(*trace.variants[0].masks.__reduce__()[1])
    written.write_bytes(written.read_bytes() + b"\0")
    with pytest.raises(TraceError, match="changed after it was loaded"):
        stored.weight(0)
