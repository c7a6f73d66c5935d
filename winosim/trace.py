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
import threading
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

from winosim.errors import ConfigError, TraceError
from winosim.files import atomic_write
from winosim.geometry import LayerGeometry, NetworkGeometry
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
    masks: Sequence[LayerMasks]
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
    """A network's geometry plus its variants' masks, validated on construction (`validate`: every mask's shape,
    dtype and domain against its layer). `Trace.of_network` builds one from a `NetworkGeometry`."""

    network: str
    input_height: int
    input_width: int
    layers: tuple[LayerGeometry, ...]
    variants: tuple[Variant, ...]
    provenance: Provenance
    winograd_m: int = 2

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def of_network(
        cls, geometry: NetworkGeometry, variants: Sequence[Variant], provenance: Provenance, winograd_m: int = 2
    ) -> Trace:
        """The trace of `geometry`'s network, input and layers with `variants`."""
        return cls(
            network=geometry.name,
            input_height=geometry.input_height,
            input_width=geometry.input_width,
            layers=geometry.layers,
            variants=tuple(variants),
            provenance=provenance,
            winograd_m=winograd_m,
        )

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
        return self._density(variant, 0)

    def activation_density(self, variant: Variant) -> float:
        """Measured non-zero fraction of the input activations of the pruned layers (multiply domain)."""
        return self._density(variant, 1)

    def _density(self, variant: Variant, operand: int) -> float:
        nonzero = total = 0
        for i in self.pruned_layers(variant):
            nonzero += mask_nonzero(variant.masks, i)[operand]
            total += math.prod(stored_shapes(variant.masks, i)[operand])
        return nonzero / total if total else 1.0


def stored_shapes(masks: Sequence[LayerMasks], index: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(weight shape, activation shape) of layer `index`'s masks, without unpacking stored masks."""
    if isinstance(masks, StoredMasks):
        return masks.shapes(index)
    layer = masks[index]
    return layer.weight.shape, layer.activation.shape


def weight_mask(masks: Sequence[LayerMasks], index: int) -> NDArray[np.bool_]:
    """Layer `index`'s weight mask, without reading or unpacking its activation mask when it is stored."""
    if isinstance(masks, StoredMasks):
        return masks.weight(index)
    return masks[index].weight


def mask_nonzero(masks: Sequence[LayerMasks], index: int) -> tuple[int, int]:
    """(weight, activation) non-zero counts of layer `index`'s masks, without unpacking stored masks."""
    if isinstance(masks, StoredMasks):
        return masks.nonzero(index)
    layer = masks[index]
    return int(np.count_nonzero(layer.weight)), int(np.count_nonzero(layer.activation))


def check_printable_names(network: str, layer_names: list[str]) -> None:
    """Refuse network and layer names holding control or escape characters (they would reach terminals)."""
    for what, name in [("network", network), *(("layer", n) for n in layer_names)]:
        if not name.isprintable():
            raise TraceError(f"{what} name {name!r} holds control or escape characters")


def validate(trace: Trace) -> None:
    """Check every invariant of a trace; raise TraceError naming the first violation."""
    if not trace.layers:
        raise TraceError("trace has no layers")
    if not _valid_winograd_m(trace.winograd_m):
        raise TraceError(f"winograd_m must be an integer in [1, {MAX_WINOGRAD_M}], got {trace.winograd_m!r}")
    names = [layer.name for layer in trace.layers]
    check_printable_names(trace.network, names)
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
        for index, layer in enumerate(trace.layers):
            expected = trace.expected_shapes(variant, layer)
            for kind, shape, want in zip(
                ("weight", "activation"), stored_shapes(variant.masks, index), expected, strict=True
            ):
                if shape != want:
                    raise TraceError(
                        f"variant {variant.name!r} layer {layer.name!r}: {kind} mask shape {shape} "
                        f"disagrees with the geometry, expected {want}"
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
    _check_padding(packed, count, what)
    return np.unpackbits(packed, count=count, bitorder="little").view(np.bool_).reshape(shape)  # 0/1: valid bools


def _check_padding(packed: NDArray[np.uint8], count: int, what: str) -> None:
    """Refuse set bits after element `count` of a packed mask (a mask of another size, or corruption)."""
    spare = packed.size * 8 - count
    if spare and int(packed[-1]) >> (8 - spare):
        raise TraceError(f"{what}: padding bits after the last element are not zero (corrupt mask)")


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

LIMIT_ENV = "WINOSIM_TRACE_LIMIT_MIB"
"""Environment variable: the largest array (MiB) a trace may make winosim unpack or lower, default below."""

DEFAULT_LIMIT_MIB = 1024
_NPY_HEADER_MAX_BYTES = 4096
_SUPPORTED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_MASK_CACHE_LAYERS = 1


def size_limit_bytes() -> int:
    """The largest unpacked mask, lowered array or metadata document a trace may declare, in bytes:
    `WINOSIM_TRACE_LIMIT_MIB` MiB (default 1024). Checked against the declared sizes before reading."""
    raw = os.environ.get(LIMIT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_LIMIT_MIB * 1024**2
    try:
        mib = int(raw)
    except ValueError:
        raise TraceError(f"{LIMIT_ENV} must be a whole number of MiB, got {raw!r}") from None
    if mib < 1:
        raise TraceError(f"{LIMIT_ENV} must be >= 1 (MiB), got {mib}")
    return mib * 1024**2


@dataclass(frozen=True)
class _Member:
    """One mask entry of the archive: its zip member name, its mask shape and its non-zero count."""

    name: str
    shape: tuple[int, ...]
    nonzero: int
    label: str


class StoredMasks(Sequence[LayerMasks]):
    """A variant's masks left in their trace file and unpacked one layer at a time, on access.

    `load_trace` checks every entry once (declared sizes, npy header, CRC, padding bits) and records each
    mask's shape and non-zero count; `masks[i]` re-reads layer i's two entries and unpacks them. The layer
    last unpacked is kept (so that the methods of one layer share one unpacking); the rest is released, so
    memory follows one layer, not the network. The file must not change after loading (its size and
    modification time are checked on every access). Picklable: a copy re-reads the same path.
    """

    def __init__(self, path: Path, stamp: tuple[int, int], members: tuple[tuple[_Member, _Member], ...]) -> None:
        self._path = path
        self._stamp = stamp
        self._members = members
        self._cache: OrderedDict[int, LayerMasks] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._members)

    @overload
    def __getitem__(self, index: int) -> LayerMasks: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[LayerMasks, ...]: ...

    def __getitem__(self, index: int | slice) -> LayerMasks | tuple[LayerMasks, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        i = range(len(self))[index]
        with self._lock:
            if i in self._cache:
                self._cache.move_to_end(i)
                return self._cache[i]
        masks = self._read(i)
        with self._lock:
            self._cache[i] = masks
            while len(self._cache) > _MASK_CACHE_LAYERS:
                self._cache.popitem(last=False)
        return masks

    def shapes(self, index: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(weight shape, activation shape) of layer `index`, without unpacking."""
        weight, activation = self._members[index]
        return weight.shape, activation.shape

    def nonzero(self, index: int) -> tuple[int, int]:
        """(weight, activation) non-zero counts of layer `index`, as counted at load, without unpacking."""
        weight, activation = self._members[index]
        return weight.nonzero, activation.nonzero

    def weight(self, index: int) -> NDArray[np.bool_]:
        """Layer `index`'s weight mask alone (from the cache when the layer is there; not cached)."""
        i = range(len(self))[index]
        with self._lock:
            if i in self._cache:
                return self._cache[i].weight
        self._check_unchanged()
        weight, _ = self._members[i]
        with _open_zip(self._path) as archive:
            return unpack_mask(_read_packed(archive, weight, self._path), weight.shape, weight.label)

    def _check_unchanged(self) -> None:
        if _stamp(self._path) != self._stamp:
            raise TraceError(f"{self._path}: the trace file changed after it was loaded")

    def _read(self, index: int) -> LayerMasks:
        self._check_unchanged()
        weight, activation = self._members[index]
        with _open_zip(self._path) as archive:
            return LayerMasks(
                weight=unpack_mask(_read_packed(archive, weight, self._path), weight.shape, weight.label),
                activation=unpack_mask(
                    _read_packed(archive, activation, self._path), activation.shape, activation.label
                ),
            )

    def __reduce__(self) -> tuple[Any, ...]:
        return (StoredMasks, (self._path, self._stamp, self._members))


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise TraceError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return stat.st_size, stat.st_mtime_ns


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise TraceError(f"{path}: not a readable npz archive ({exc})") from None


def _member_info(archive: zipfile.ZipFile, name: str, payload_bytes: int, path: Path) -> zipfile.ZipInfo:
    """The zip entry `name`, checked to be readable (not encrypted, stored or Deflate-compressed) and to
    declare no more than an npy header plus `payload_bytes`: nothing larger is ever inflated."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise TraceError(f"{path}: missing entry {name[: -len('.npy')]!r} (truncated or incomplete trace)") from None
    if info.flag_bits & 0x1:
        raise TraceError(f"{path}: entry {name!r} is encrypted, which winosim does not read")
    if info.compress_type not in _SUPPORTED_COMPRESSION:
        raise TraceError(
            f"{path}: entry {name!r} uses zip compression method {info.compress_type}; a trace must be stored "
            "or Deflate-compressed"
        )
    if info.file_size > payload_bytes + _NPY_HEADER_MAX_BYTES:
        raise TraceError(
            f"{path}: entry {name!r} declares {info.file_size} bytes, more than its geometry allows "
            f"({payload_bytes} bytes of data)"
        )
    return info


def _read_npy(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    payload_bytes: int | None,
    path: Path,
    mask: tuple[str, tuple[int, ...]] | None = None,
) -> bytes:
    """The data bytes of a 1-D uint8 npy entry, its header checked before any data is read: exactly
    `payload_bytes` bytes, or (None) as many as the header declares within the entry's declared size.
    `mask` (what, shape) names the mask an entry holds, for the messages."""
    name = info.filename.removesuffix(".npy")
    try:
        with archive.open(info) as handle:
            try:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    reader = np.lib.format.read_array_header_1_0
                elif version in ((2, 0), (3, 0)):
                    reader = np.lib.format.read_array_header_2_0
                else:
                    raise ValueError(f"npy format version {version} is not supported")
                shape, fortran, dtype = reader(handle, max_header_size=_NPY_HEADER_MAX_BYTES)
            except (ValueError, SyntaxError, TypeError) as exc:
                raise TraceError(f"{path}: entry {name!r} has no valid npy header ({exc})") from None
            if dtype.hasobject:
                raise TraceError(f"{path}: {name!r} holds a pickled object array, which winosim refuses to load")
            if dtype != np.uint8 or fortran or len(shape) != 1:
                raise TraceError(f"{path}: {name!r} must be a 1-D uint8 array, got {dtype} with shape {shape}")
            size = shape[0] if payload_bytes is None else payload_bytes
            if shape[0] != size or size > info.file_size:
                what, geometry = mask if mask is not None else (f"{path}: entry {name!r}", "")
                raise TraceError(
                    f"{what}: holds {shape[0]} bytes, the geometry {geometry} needs {size} "
                    "(mask shape disagrees with the geometry)"
                )
            data = handle.read(size)
            if len(data) != size or handle.read(1):
                raise TraceError(f"{path}: entry {name!r} is truncated or has trailing bytes")
            return data
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise TraceError(f"{path}: entry {name!r} is corrupt or truncated ({exc})") from None


def _read_packed(archive: zipfile.ZipFile, member: _Member, path: Path) -> NDArray[np.uint8]:
    payload = ceil_div(math.prod(member.shape), 8)
    info = _member_info(archive, _member(member.name), payload, path)
    return np.frombuffer(_read_npy(archive, info, payload, path, (member.label, member.shape)), dtype=np.uint8)


def _count_packed(data: bytes, count: int, what: str) -> int:
    """Non-zero elements of a packed mask of `count` elements; refuses non-zero padding bits."""
    packed = np.frombuffer(data, dtype=np.uint8)
    _check_padding(packed, count, what)
    return int(np.bitwise_count(packed).sum(dtype=np.int64))


def _check_sizes(layers: tuple[LayerGeometry, ...], images: int, winograd_m: int, limit: int, where: str) -> None:
    """Refuse geometry whose masks or lowered arrays would exceed `limit` bytes, before anything is read."""
    for layer in layers:
        out_h = max(layer.out_height, 1)
        out_w = max(layer.out_width, 1)
        padded = (layer.in_height + 2 * layer.padding) * (layer.in_width + 2 * layer.padding)
        tiles = ceil_div(out_h, winograd_m) * ceil_div(out_w, winograd_m)
        positions = (winograd_m + 2) ** 2
        sizes = {
            "weight mask": layer.out_channels * layer.in_channels * max(layer.kernel**2, positions),
            "activation mask": images * layer.in_channels * max(padded, tiles * positions),
            "lowered activations": images * layer.in_channels * max(out_h * out_w * layer.kernel**2, tiles * positions),
        }
        for what, size in sizes.items():
            if size > limit:
                raise TraceError(
                    f"{where}: layer {layer.name!r} needs a {what} of {size} bytes, more than the limit of "
                    f"{limit // 1024**2} MiB (raise it with {LIMIT_ENV}=MiB)"
                )


def _require(meta: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in meta:
        raise TraceError(f"{where}: metadata lacks {key!r}")
    value = meta[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        raise TraceError(f"{where}: metadata {key!r} has the wrong type ({type(value).__name__})")
    return value


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Load and fully validate a trace file; its masks stay in the file (`StoredMasks`) and are unpacked
    per layer when used. Every problem raises TraceError with one clear line."""
    source = Path(path)
    if not source.exists():
        raise TraceError(f"trace file not found: {source}")
    if source.is_dir():
        raise TraceError(f"{source}: is a directory, not a trace file")
    stamp = _stamp(source)
    if not zipfile.is_zipfile(source):
        try:
            with source.open("rb") as handle:
                starts_like_zip = handle.read(4) == b"PK\x03\x04"
        except OSError as exc:
            raise TraceError(f"{source}: cannot be read ({exc.strerror or exc})") from None
        if starts_like_zip:
            raise TraceError(f"{source}: truncated or corrupt npz archive (its zip directory is missing)")
        raise TraceError(f"{source}: not an npz archive (a winosim trace is a .npz zip file)")
    with _open_zip(source) as archive:
        trace = _decode(archive, source, stamp, size_limit_bytes())
    if _stamp(source) != stamp:
        raise TraceError(f"{source}: the trace file changed while it was loaded")
    return trace


def _decode(archive: zipfile.ZipFile, source: Path, stamp: tuple[int, int], limit: int) -> Trace:
    """A trace from an opened archive: the metadata, then every variant's entries, then the whole validated."""
    where = str(source)
    names = archive.namelist()
    if len(set(names)) != len(names):
        raise TraceError(f"{where}: the archive holds duplicate entries")
    meta = _read_meta(archive, source, limit)
    layers, winograd_m, provenance = _decode_geometry(meta, where)
    _check_sizes(layers, provenance.images, winograd_m, limit, where)
    variant_metas = _require(meta, "variants", list, where)
    expected = {_member("meta")}
    variants: list[Variant] = []
    for vi, vmeta in enumerate(variant_metas):
        variant, members = _decode_variant(archive, source, stamp, vi, vmeta, layers, provenance.images, winograd_m)
        variants.append(variant)
        expected |= members
    unexpected = set(names) - expected
    if unexpected:
        shown = sorted(name.removesuffix(".npy") for name in unexpected)[:5]
        raise TraceError(f"{where}: unexpected entries {shown} (not written by a v1 writer)")
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
        measured = trace.weight_density(variant)
        if stored is not None and (
            not isinstance(stored, int | float) or not math.isclose(stored, measured, rel_tol=1e-9, abs_tol=1e-12)
        ):
            raise TraceError(
                f"{where}: variant {variant.name!r} states weight density {stored}, its masks have {measured}"
            )
    return trace


def _read_meta(archive: zipfile.ZipFile, source: Path, limit: int) -> dict[str, Any]:
    """The archive's JSON metadata, checked to be a winosim trace of the supported schema version."""
    where = str(source)
    name = _member("meta")
    if name not in archive.NameToInfo:
        raise TraceError(f"{where}: not a winosim trace (no 'meta' entry)")
    declared = archive.getinfo(name).file_size
    if declared > limit:
        raise TraceError(
            f"{where}: entry 'meta' declares {declared} bytes, more than the limit of {limit // 1024**2} MiB "
            f"(raise it with {LIMIT_ENV}=MiB)"
        )
    raw = _read_npy(archive, _member_info(archive, name, declared, source), None, source)
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceError(f"{where}: 'meta' is not valid JSON ({exc})") from None
    except RecursionError:
        raise TraceError(f"{where}: 'meta' is nested too deeply to be a trace's metadata") from None
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
    archive: zipfile.ZipFile,
    source: Path,
    stamp: tuple[int, int],
    vi: int,
    vmeta: Any,
    layers: tuple[LayerGeometry, ...],
    images: int,
    winograd_m: int,
) -> tuple[Variant, set[str]]:
    """Variant `vi` with every entry checked (declared size, header, CRC, padding bits) and counted, its
    masks left in the file; and the zip member names it uses."""
    where = str(source)
    if not isinstance(vmeta, dict):
        raise TraceError(f"{where}: variant {vi} metadata is not a mapping")
    vname = _require(vmeta, "name", str, where)
    method = _require(vmeta, "method", str, where)
    if method not in VARIANT_METHODS:
        raise TraceError(f"{where}: variant {vname!r} has unknown method {method!r}; expected one of {VARIANT_METHODS}")
    names: set[str] = set()
    members: list[tuple[_Member, _Member]] = []
    for li, layer in enumerate(layers):
        pair: list[_Member] = []
        for key, shape, kind in zip(
            _mask_keys(vi, li), mask_shapes(method, layer, images, winograd_m), ("weight", "activation"), strict=True
        ):
            count = math.prod(shape)
            payload = ceil_div(count, 8)
            info = _member_info(archive, _member(key), payload, source)
            what = f"{where}: variant {vname!r} layer {layer.name!r} {kind} mask"
            nonzero = _count_packed(_read_npy(archive, info, payload, source, (what, shape)), count, what)
            pair.append(_Member(key, shape, nonzero, what))
            names.add(_member(key))
        members.append((pair[0], pair[1]))
    try:
        variant = Variant(
            name=vname,
            method=method,
            masks=StoredMasks(source, stamp, tuple(members)),
            target_density=vmeta.get("target_density"),
            accuracy=vmeta.get("accuracy"),
            dense_accuracy=vmeta.get("dense_accuracy"),
            recipe=vmeta.get("recipe") or {},
        )
    except ConfigError as exc:
        raise TraceError(f"{where}: {exc}") from None
    return variant, names


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
