"""The trace: the contract between the torch side and the simulator (format v1, docs/trace-format.md).

A trace records, for one network, the geometry of every layer and, for one or more *variants* of that
network (a trained model per method: pruned `spatial`, `native` pruned Winograd, `winograd_relu`), which
weights and which input activations are non-zero *in the domain where the multiplies happen*:

- Winograd layers of a `native` or `winograd_relu` variant: weights (K, C, P) and activations
  (N, C, TH, TW, P), P = p*p Winograd positions in row-major (xi, nu) order, TH x TW output tiles.
- every other layer (and every layer of a `spatial` variant): weights (K, C, R, S) and activations
  (N, C, H, W), the unpadded input map.

On disk a trace is one `.npz` (a zip of `.npy` members) holding a JSON `meta` entry (uint8 bytes) and one
little-endian bit-packed uint8 array per mask. Writing is deterministic (fixed zip timestamps, sorted
members) and atomic; loading never unpickles and validates every array against the geometry.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from winosim.errors import ConfigError, TraceError
from winosim.files import atomic_write
from winosim.geometry import LayerGeometry
from winosim.integers import ceil_div
from winosim.methods import VARIANT_METHODS, Domain, VariantMethod, variant_domain

FORMAT_NAME = "winosim-trace"
SCHEMA_VERSION = 1
BoolArray = NDArray[np.bool_]

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

MAX_WINOGRAD_M = 16
"""The largest output tile size m of F(m x m, 3x3) a trace may declare (F(2x2,3x3) is the paper's)."""


def _valid_winograd_m(m: object) -> bool:
    return isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= MAX_WINOGRAD_M


@dataclass(frozen=True)
class LayerMasks:
    """Non-zero masks of one layer in one variant: `weight` and input `activation` (bool arrays)."""

    weight: BoolArray
    activation: BoolArray

    def __post_init__(self) -> None:
        for name in ("weight", "activation"):
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.dtype != np.bool_:
                raise ConfigError(f"LayerMasks: {name} must be a bool numpy array, got {type(arr).__name__}")
            arr.setflags(write=False)


@dataclass(frozen=True)
class Variant:
    """One trained (or synthetic) model of the network and its masks, one `LayerMasks` per layer.

    `accuracy` and `dense_accuracy` are top-1 fractions in [0, 1] (None when unknown, e.g. synthetic);
    `target_density` is the pruning target for the pruned layers; `recipe` is free-form JSON describing
    how the model was trained.
    """

    name: str
    method: VariantMethod
    masks: tuple[LayerMasks, ...]
    target_density: float | None = None
    accuracy: float | None = None
    dense_accuracy: float | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"Variant: name must be letters, digits, '_' or '-', got {self.name!r}")
        if self.method not in VARIANT_METHODS:
            raise ConfigError(f"Variant {self.name!r}: method must be one of {VARIANT_METHODS}, got {self.method!r}")
        for key in ("target_density", "accuracy", "dense_accuracy"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ConfigError(f"Variant {self.name!r}: {key} must be in [0, 1] or None, got {value!r}")
        try:
            json.dumps(dict(self.recipe))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Variant {self.name!r}: recipe must be JSON-serialisable ({exc})") from None

    def domain(self, layer: LayerGeometry) -> Domain:
        """Where this variant multiplies in `layer`: the Winograd domain or the spatial domain."""
        return variant_domain(self.method, layer)


@dataclass(frozen=True)
class Provenance:
    """Where a trace came from. `synthetic` traces come from a random generator, not a trained model."""

    dataset: str
    images: int
    seed: int
    winosim_version: str
    command: str
    synthetic: bool
    torch_version: str | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.images, int) or self.images < 1:
            raise ConfigError(f"Provenance: images must be an integer >= 1, got {self.images!r}")


@dataclass(frozen=True)
class Trace:
    """A network's geometry plus its variants' masks. Construct with `make_trace` to validate shapes."""

    network: str
    input_height: int
    input_width: int
    layers: tuple[LayerGeometry, ...]
    variants: tuple[Variant, ...]
    provenance: Provenance
    winograd_m: int = 2

    def __post_init__(self) -> None:
        validate(self)

    @property
    def images(self) -> int:
        """Number of sampled input images N behind every activation mask."""
        return self.provenance.images

    @property
    def positions(self) -> int:
        """Winograd positions per tile, (m + 2)^2: 16 for F(2x2,3x3)."""
        return (self.winograd_m + 2) ** 2

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise TraceError(f"trace has no variant {name!r}; it has {', '.join(v.name for v in self.variants) or 'none'}")

    def tiles(self, layer: LayerGeometry) -> tuple[int, int]:
        """Output tile grid of a Winograd layer for F(m x m, 3x3)."""
        m = self.winograd_m
        return ceil_div(layer.out_height, m), ceil_div(layer.out_width, m)

    def expected_shapes(self, variant: Variant, layer: LayerGeometry) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(weight shape, activation shape) that `variant`'s masks of `layer` must have."""
        return mask_shapes(variant.method, layer, self.images, self.winograd_m)

    def pruned_layers(self, variant: Variant) -> tuple[int, ...]:
        """Indices of the layers a variant prunes: its Winograd-eligible (`kind="winograd"`) layers."""
        del variant  # same set for every method: the layers that can run as Winograd
        return tuple(i for i, layer in enumerate(self.layers) if layer.kind == "winograd")

    def weight_density(self, variant: Variant) -> float:
        """Measured non-zero fraction of the weights of the pruned layers, in their multiply domain."""
        nonzero = total = 0
        for i in self.pruned_layers(variant):
            w = variant.masks[i].weight
            nonzero += int(np.count_nonzero(w))
            total += w.size
        return nonzero / total if total else 1.0

    def activation_density(self, variant: Variant) -> float:
        """Measured non-zero fraction of the input activations of the pruned layers (multiply domain)."""
        nonzero = total = 0
        for i in self.pruned_layers(variant):
            a = variant.masks[i].activation
            nonzero += int(np.count_nonzero(a))
            total += a.size
        return nonzero / total if total else 1.0


def validate(trace: Trace) -> None:
    """Check every invariant of a trace; raise TraceError naming the first violation."""
    if not trace.layers:
        raise TraceError("trace has no layers")
    if not _valid_winograd_m(trace.winograd_m):
        raise TraceError(f"winograd_m must be an integer in [1, {MAX_WINOGRAD_M}], got {trace.winograd_m!r}")
    names = [layer.name for layer in trace.layers]
    if len(set(names)) != len(names):
        raise TraceError(f"layer names are not unique: {names}")
    variant_names = [v.name for v in trace.variants]
    if len(set(variant_names)) != len(variant_names):
        raise TraceError(f"variant names are not unique: {variant_names}")
    for variant in trace.variants:
        if len(variant.masks) != len(trace.layers):
            raise TraceError(
                f"variant {variant.name!r} has masks for {len(variant.masks)} layers, "
                f"the geometry has {len(trace.layers)}"
            )
        for layer, masks in zip(trace.layers, variant.masks, strict=True):
            weight_shape, act_shape = trace.expected_shapes(variant, layer)
            if masks.weight.shape != weight_shape:
                raise TraceError(
                    f"variant {variant.name!r} layer {layer.name!r}: weight mask shape {masks.weight.shape} "
                    f"disagrees with the geometry, expected {weight_shape}"
                )
            if masks.activation.shape != act_shape:
                raise TraceError(
                    f"variant {variant.name!r} layer {layer.name!r}: activation mask shape "
                    f"{masks.activation.shape} disagrees with the geometry, expected {act_shape}"
                )


# --------------------------------------------------------------------------- bit packing


def pack_mask(mask: BoolArray) -> NDArray[np.uint8]:
    """Flatten (C order) and pack a bool mask, 8 elements per byte, first element in the lowest bit."""
    return np.packbits(np.ascontiguousarray(mask, dtype=np.bool_).ravel(), bitorder="little")


def unpack_mask(packed: NDArray[np.uint8], shape: tuple[int, ...], what: str) -> BoolArray:
    """Inverse of `pack_mask`; checks the byte count and that the padding bits are zero."""
    count = math.prod(shape)
    if packed.dtype != np.uint8 or packed.ndim != 1:
        raise TraceError(f"{what}: expected a 1-D uint8 bit-packed array, got {packed.dtype} with shape {packed.shape}")
    if packed.size != ceil_div(count, 8):
        raise TraceError(
            f"{what}: holds {packed.size} bytes, the geometry {shape} needs {ceil_div(count, 8)} "
            "(mask shape disagrees with the geometry)"
        )
    bits = np.unpackbits(packed, bitorder="little")
    if bits[count:].any():
        raise TraceError(f"{what}: padding bits after the last element are not zero (corrupt mask)")
    return bits[:count].reshape(shape).astype(np.bool_)


# --------------------------------------------------------------------------- writing


def _member(key: str) -> str:
    return f"{key}.npy"


def _mask_keys(variant_index: int, layer_index: int) -> tuple[str, str]:
    base = f"variant{variant_index}/layer{layer_index:03d}"
    return f"{base}/weight", f"{base}/activation"


def variant_summary(trace: Trace, variant: Variant) -> dict[str, Any]:
    """A variant's metadata as stored in `meta.variants`: method, densities (measured), accuracies, recipe."""
    return {
        "name": variant.name,
        "method": variant.method,
        "target_density": variant.target_density,
        "weight_density": trace.weight_density(variant),
        "activation_density": trace.activation_density(variant),
        "accuracy": variant.accuracy,
        "dense_accuracy": variant.dense_accuracy,
        "recipe": dict(variant.recipe),
    }


def trace_metadata(trace: Trace) -> dict[str, Any]:
    """The JSON `meta` document of a trace (also what `inspect` shows)."""
    prov = trace.provenance
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "network": trace.network,
        "synthetic": prov.synthetic,
        "input_height": trace.input_height,
        "input_width": trace.input_width,
        "winograd": {"m": trace.winograd_m, "r": 3},
        "images": trace.images,
        "layers": [layer.to_dict() for layer in trace.layers],
        "variants": [variant_summary(trace, v) for v in trace.variants],
        "provenance": {
            "dataset": prov.dataset,
            "images": prov.images,
            "seed": prov.seed,
            "torch_version": prov.torch_version,
            "winosim_version": prov.winosim_version,
            "command": prov.command,
            "synthetic": prov.synthetic,
            "notes": prov.notes,
        },
    }
    if prov.synthetic:
        meta["WARNING"] = "SYNTHETIC TRACE: random masks from a generator, not from a trained model"
    return meta


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def write_trace(trace: Trace, path: str | os.PathLike[str]) -> Path:
    """Write `trace` to `path` atomically (temp file in the same folder, then rename); bit-for-bit
    deterministic for the same trace. Returns the path written."""
    target = Path(path)
    members: dict[str, np.ndarray] = {
        "meta": np.frombuffer(json.dumps(trace_metadata(trace), sort_keys=True, indent=1).encode(), dtype=np.uint8)
    }
    for vi, variant in enumerate(trace.variants):
        for li, masks in enumerate(variant.masks):
            weight_key, act_key = _mask_keys(vi, li)
            members[weight_key] = pack_mask(masks.weight)
            members[act_key] = pack_mask(masks.activation)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for key in sorted(members):
                info = zipfile.ZipInfo(_member(key), date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, _npy_bytes(members[key]), compresslevel=6)

    return atomic_write(target, write)


# --------------------------------------------------------------------------- loading


class _Archive:
    """Read-only access to the members of an npz, turning every low-level failure into a TraceError."""

    def __init__(self, path: Path, npz: Any) -> None:
        self.path = path
        self.npz = npz

    def names(self) -> set[str]:
        return set(self.npz.files)

    def get(self, key: str) -> np.ndarray:
        if key not in self.npz.files:
            raise TraceError(f"{self.path}: missing entry {key!r} (truncated or incomplete trace)")
        try:
            return np.asarray(self.npz[key])
        except ValueError as exc:
            if "pickle" in str(exc).lower() or "object arrays" in str(exc).lower():
                raise TraceError(
                    f"{self.path}: entry {key!r} holds a pickled object array, which winosim refuses to load"
                ) from None
            raise TraceError(f"{self.path}: entry {key!r} is unreadable ({exc})") from None
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise TraceError(f"{self.path}: entry {key!r} is corrupt or truncated ({exc})") from None


def _require(meta: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in meta:
        raise TraceError(f"{where}: metadata lacks {key!r}")
    value = meta[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        raise TraceError(f"{where}: metadata {key!r} has the wrong type ({type(value).__name__})")
    return value


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Load and fully validate a trace file. Every problem raises TraceError with one clear line."""
    source = Path(path)
    if not source.exists():
        raise TraceError(f"trace file not found: {source}")
    if source.is_dir():
        raise TraceError(f"{source}: is a directory, not a trace file")
    if not zipfile.is_zipfile(source):
        try:
            with source.open("rb") as handle:
                starts_like_zip = handle.read(4) == b"PK\x03\x04"
        except OSError as exc:
            raise TraceError(f"{source}: cannot be read ({exc.strerror or exc})") from None
        if starts_like_zip:
            raise TraceError(f"{source}: truncated or corrupt npz archive (its zip directory is missing)")
        raise TraceError(f"{source}: not an npz archive (a winosim trace is a .npz zip file)")
    try:
        npz = np.load(source, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise TraceError(f"{source}: not a readable npz archive ({exc})") from None
    with npz:
        try:
            archive = _Archive(source, npz)
            return _decode(archive)
        except zipfile.BadZipFile as exc:
            raise TraceError(f"{source}: corrupt npz archive ({exc})") from None


def _decode(archive: _Archive) -> Trace:
    """A trace from an opened archive: the metadata, then every variant's masks, then the whole validated."""
    where = str(archive.path)
    meta = _read_meta(archive, where)
    layers, winograd_m, provenance = _decode_geometry(meta, where)
    variant_metas = _require(meta, "variants", list, where)
    expected_keys = {"meta"}
    variants: list[Variant] = []
    for vi, vmeta in enumerate(variant_metas):
        variant, keys = _decode_variant(archive, vi, vmeta, layers, provenance.images, winograd_m, where)
        variants.append(variant)
        expected_keys |= keys
    unexpected = archive.names() - expected_keys
    if unexpected:
        raise TraceError(f"{where}: unexpected entries {sorted(unexpected)[:5]} (not written by a v1 writer)")
    try:
        trace = Trace(
            network=str(_require(meta, "network", str, where)),
            input_height=int(_require(meta, "input_height", int, where)),
            input_width=int(_require(meta, "input_width", int, where)),
            layers=layers,
            variants=tuple(variants),
            provenance=provenance,
            winograd_m=winograd_m,
        )
    except ConfigError as exc:
        raise TraceError(f"{where}: {exc}") from None
    for vmeta, variant in zip(variant_metas, trace.variants, strict=True):
        stored = vmeta.get("weight_density")
        if stored is not None and not math.isclose(stored, trace.weight_density(variant), rel_tol=1e-9, abs_tol=1e-12):
            raise TraceError(
                f"{where}: variant {variant.name!r} states weight density {stored}, its masks have "
                f"{trace.weight_density(variant)}"
            )
    return trace


def _read_meta(archive: _Archive, where: str) -> dict[str, Any]:
    """The archive's JSON metadata, checked to be a winosim trace of the supported schema version."""
    if "meta" not in archive.names():
        raise TraceError(f"{where}: not a winosim trace (no 'meta' entry)")
    raw = archive.get("meta")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise TraceError(f"{where}: 'meta' must be a 1-D uint8 array of JSON bytes")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceError(f"{where}: 'meta' is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise TraceError(f"{where}: not a winosim trace (meta 'format' is not {FORMAT_NAME!r})")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise TraceError(
            f"{where}: trace schema version {version!r} is not supported (this winosim reads {SCHEMA_VERSION})"
        )
    return meta


def _decode_geometry(meta: dict[str, Any], where: str) -> tuple[tuple[LayerGeometry, ...], int, Provenance]:
    """The layers, the Winograd m and the provenance of the metadata."""
    try:
        layers = tuple(LayerGeometry.from_dict(d) for d in _require(meta, "layers", list, where))
        winograd = _require(meta, "winograd", dict, where)
        if winograd.get("r") != 3 or not _valid_winograd_m(winograd.get("m")):
            raise TraceError(
                f"{where}: meta 'winograd' must be {{'m': an integer in [1, {MAX_WINOGRAD_M}], 'r': 3}}, got {winograd}"
            )
        prov_meta = _require(meta, "provenance", dict, where)
        provenance = Provenance(
            dataset=str(_require(prov_meta, "dataset", str, where)),
            images=int(_require(prov_meta, "images", int, where)),
            seed=int(_require(prov_meta, "seed", int, where)),
            winosim_version=str(_require(prov_meta, "winosim_version", str, where)),
            command=str(_require(prov_meta, "command", str, where)),
            synthetic=bool(_require(prov_meta, "synthetic", bool, where)),
            torch_version=prov_meta.get("torch_version"),
            notes=str(prov_meta.get("notes", "")),
        )
    except ConfigError as exc:
        raise TraceError(f"{where}: invalid geometry or provenance: {exc}") from None
    images = provenance.images
    if _require(meta, "images", int, where) != images:
        raise TraceError(f"{where}: meta 'images' disagrees with provenance images ({meta['images']} vs {images})")
    return layers, int(winograd["m"]), provenance


def _decode_variant(
    archive: _Archive,
    vi: int,
    vmeta: Any,
    layers: tuple[LayerGeometry, ...],
    images: int,
    winograd_m: int,
    where: str,
) -> tuple[Variant, set[str]]:
    """Variant `vi` with its masks unpacked and checked against the geometry, and the archive keys it used."""
    if not isinstance(vmeta, dict):
        raise TraceError(f"{where}: variant {vi} metadata is not a mapping")
    vname = _require(vmeta, "name", str, where)
    method = _require(vmeta, "method", str, where)
    if method not in VARIANT_METHODS:
        raise TraceError(f"{where}: variant {vname!r} has unknown method {method!r}; expected one of {VARIANT_METHODS}")
    keys: set[str] = set()
    masks: list[LayerMasks] = []
    for li, layer in enumerate(layers):
        weight_key, act_key = _mask_keys(vi, li)
        keys |= {weight_key, act_key}
        weight_shape, act_shape = mask_shapes(method, layer, images, winograd_m)
        what = f"{where}: variant {vname!r} layer {layer.name!r}"
        masks.append(
            LayerMasks(
                weight=unpack_mask(archive.get(weight_key), weight_shape, f"{what} weight mask"),
                activation=unpack_mask(archive.get(act_key), act_shape, f"{what} activation mask"),
            )
        )
    try:
        variant = Variant(
            name=vname,
            method=method,
            masks=tuple(masks),
            target_density=vmeta.get("target_density"),
            accuracy=vmeta.get("accuracy"),
            dense_accuracy=vmeta.get("dense_accuracy"),
            recipe=vmeta.get("recipe") or {},
        )
    except ConfigError as exc:
        raise TraceError(f"{where}: {exc}") from None
    return variant, keys


def mask_shapes(
    method: str, layer: LayerGeometry, images: int, winograd_m: int = 2
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(weight shape, activation shape) of a layer's masks for a variant of `method` with N = `images`."""
    if variant_domain(method, layer) == "winograd":
        th, tw = ceil_div(layer.out_height, winograd_m), ceil_div(layer.out_width, winograd_m)
        p = (winograd_m + 2) ** 2
        return (layer.out_channels, layer.in_channels, p), (images, layer.in_channels, th, tw, p)
    return (
        (layer.out_channels, layer.in_channels, layer.kernel, layer.kernel),
        (images, layer.in_channels, layer.in_height, layer.in_width),
    )
