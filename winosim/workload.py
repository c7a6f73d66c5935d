"""Lowering: from the masks of a trace to the work of every layer under every method, the one source of
every count (the exact counts of `winosim.counts` and the simulator's per-layer work both derive from it).

Every layer, under every method, is a matrix product on the PE array: output (K x columns) = weights
(K x Q) @ activations (Q x columns), where

- a Winograd-domain layer (native pruned Winograd, Winograd-ReLU, dense Winograd on a `kind="winograd"`
  layer) has Q = C * P (input channel, Winograd position) and one column per (image, output tile);
- every other layer (spatial methods, and the stem, 1x1, strided and FC layers in every method) is lowered
  im2col-style: Q = C * R * S and one column per (image, output pixel).

Columns are grouped in *rows* (one row of output tiles, or one row of output pixels, of one image), and rows
in *segments* of `SEGMENT_COLUMNS` consecutive columns (the last one of a row may be narrower): passes are
made of whole rows, and the `tiles` partition's units are segments. `lower` computes once per trace,
vectorised in numpy, what the simulator needs from the masks, for every design point:

- `weight_kq` (K, Q) bool: the weight non-zero mask with Q flattened as (c, position);
- `act_sq` (rows x segments per row, Q) uint8: for each segment, how many of its columns have a non-zero
  activation at q (for spatial layers: whose (r, s)-shifted, zero-padded input at channel c is non-zero);
- `act_rq` (rows, Q) int32: the same per row (the sum of the row's segments);
- `input_nnz_hw` (N, H, W) int32: non-zero input activations per image and input pixel over the channels,
  for the storage size of the spatial input map in DRAM (None when the map is treated as dense).

Dense methods carry no masks (`dense=True`): every operand is non-zero and their work is a closed form.

Two depths of the same lowering: `lower_operands` gives a `LayerOperands` (the matrix product's shape and
the non-zero counts per q over all columns, all the exact counts need: `pair_counts`), and `lower_layer`
a `LayerWork`, the same operands plus the per-row and per-segment arrays above for the simulator.

Every `LayerWork` carries a small `Memo` (`winosim.memo`): what the simulator derives from it for one design
point and needs again for others that share the relevant parameters (the layer's plan for a buffer size,
the per-unit work for a partition and zero handling; `winosim.sim`) is kept there, keyed by the architecture
fields each stage declares it reads, so a sweep that reuses one workload computes each of them once. The
memo holds results of pure functions of the work and the key: it never changes a result, and it is empty
again after pickling.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from winosim.errors import ConfigError
from winosim.geometry import LayerGeometry
from winosim.integers import ceil_div
from winosim.memo import Memo
from winosim.methods import METHODS, Domain, Method, available, check_methods, method
from winosim.trace import Trace, Variant, weight_mask

IntArray = NDArray[np.int64]

SEGMENT_COLUMNS = 4
"""Columns (output tiles or pixels) per segment of a row: the `tiles` partition's unit of work."""


@dataclass(frozen=True, eq=False)
class LayerOperands:
    """One layer under one (method, variant) as a matrix product over the trace's `images`: its shape, and
    the non-zero counts the exact counts need.

    Shapes: `weight_kq` (K, Q) bool, `weight_nnz_q` (Q,), `weight_nnz_k` (K,), `act_nnz_q` (Q,): columns with
    a non-zero activation at each q, over all columns. The mask-derived arrays are None for dense methods.
    """

    layer: LayerGeometry
    layer_index: int
    method: str
    variant: str | None
    domain: Domain
    images: int
    winograd_m: int
    dense: bool
    positions: int
    rows_per_image: int
    columns_per_row: int
    weight_kq: NDArray[np.bool_] | None
    weight_nnz_q: IntArray | None
    weight_nnz_k: IntArray | None
    act_nnz_q: IntArray | None

    @property
    def out_channels(self) -> int:
        return self.layer.out_channels

    @property
    def in_channels(self) -> int:
        return self.layer.in_channels

    @property
    def q(self) -> int:
        """Reduction length per output: C * positions."""
        return self.layer.in_channels * self.positions

    @property
    def rows(self) -> int:
        return self.images * self.rows_per_image

    @property
    def segments_per_row(self) -> int:
        return ceil_div(self.columns_per_row, SEGMENT_COLUMNS)

    def segment_widths(self) -> IntArray:
        """Columns of each segment of a row: (segments_per_row,)."""
        starts = np.arange(0, self.columns_per_row, SEGMENT_COLUMNS, dtype=np.int64)
        return np.minimum(starts + SEGMENT_COLUMNS, self.columns_per_row) - starts

    @property
    def columns(self) -> int:
        return self.rows * self.columns_per_row

    @property
    def algorithmic_multiplies(self) -> int:
        return self.out_channels * self.q * self.columns

    def pair_counts(self) -> dict[tuple[bool, bool], int]:
        """Multiplies restricted to non-zero weights and/or non-zero activations.

        Key (weights_nonzero_only, activations_nonzero_only): (False, False) is the algorithmic count,
        (True, True) the exact zero-skipping count (`winosim.counts`).
        """
        return dict(self._pair_counts)

    @functools.cached_property
    def _pair_counts(self) -> dict[tuple[bool, bool], int]:
        k, q, cols = self.out_channels, self.q, self.columns
        full = k * q * cols
        if self.dense:
            return {(False, False): full, (True, False): full, (False, True): full, (True, True): full}
        if self.weight_nnz_q is None or self.act_nnz_q is None:
            raise ValueError(f"layer {self.layer.name!r} ({self.method}) was lowered without its activation counts")
        return {
            (False, False): full,
            (True, False): int(self.weight_nnz_q.sum()) * cols,
            (False, True): k * int(self.act_nnz_q.sum()),
            (True, True): int(self.weight_nnz_q @ self.act_nnz_q),
        }


@dataclass(frozen=True, eq=False)
class LayerWork(LayerOperands):
    """`LayerOperands` plus what the simulator needs per row and segment of columns.

    Shapes: `act_rq` (rows, Q) int32, `act_sq` (rows * segments_per_row, Q) uint8, `act_nnz_row` (rows,),
    `input_nnz_hw` (N, H, W). The mask-derived arrays are None for dense methods (and `input_nnz_hw` for
    Winograd-domain work).
    """

    act_sq: NDArray[np.uint8] | None
    act_rq: NDArray[np.int32] | None
    act_nnz_row: IntArray | None
    input_nnz_hw: NDArray[np.int32] | None
    memo: Memo = field(default_factory=Memo, init=False, repr=False, compare=False)


@dataclass(frozen=True, eq=False)
class Workload:
    """All layers x all available (method, variant) of a trace, in layer order then `METHODS` order."""

    network: str
    images: int
    winograd_m: int
    layers: tuple[LayerGeometry, ...]
    works: tuple[LayerWork, ...]

    def select(self, methods: tuple[str, ...] | None = None) -> tuple[LayerWork, ...]:
        if methods is None:
            return self.works
        return tuple(w for w in self.works if w.method in methods)


def matrix_shape(layer: LayerGeometry, domain: Domain, winograd_m: int) -> tuple[int, int, int]:
    """(positions, rows per image, columns per row) of `layer` lowered in `domain`: p*p Winograd positions
    and the output tile grid, or R*S kernel taps and the output pixel grid."""
    if domain == "winograd":
        m = winograd_m
        return (m + 2) ** 2, ceil_div(layer.out_height, m), ceil_div(layer.out_width, m)
    return layer.kernel * layer.kernel, layer.out_height, layer.out_width


def _segment_bounds(columns: int) -> tuple[IntArray, IntArray]:
    starts = np.arange(0, columns, SEGMENT_COLUMNS, dtype=np.int64)
    return starts, np.minimum(starts + SEGMENT_COLUMNS, columns)


def _winograd_segments(act: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """(N, C, TH, TW, P) bool -> (N*TH*segments, C*P) uint8 counts over each segment of a tile row."""
    n, c, th, tw, p = act.shape
    bits = act.view(np.uint8)
    segments = ceil_div(tw, SEGMENT_COLUMNS)
    counts = np.zeros((n, c, th, segments, p), dtype=np.uint8)
    for offset in range(min(SEGMENT_COLUMNS, tw)):  # uint8 slice adds (at most SEGMENT_COLUMNS per count)
        columns = bits[:, :, :, offset::SEGMENT_COLUMNS]
        counts[:, :, :, : columns.shape[3]] += columns
    return np.ascontiguousarray(counts.transpose(0, 2, 3, 1, 4)).reshape(n * th * segments, c * p)


def _spatial_segments(act: NDArray[np.bool_], layer: LayerGeometry) -> NDArray[np.uint8]:
    """(N, C, H, W) bool -> (N*OH*segments, C*R*S) uint8: per segment of an output row, how many of its
    columns have a non-zero (r, s)-shifted, zero-padded input at channel c. Window sums along the width come
    from one prefix sum per residue class of the stride."""
    n, c, h, w = act.shape
    kern, st, pad = layer.kernel, layer.stride, layer.padding
    oh, ow = layer.out_height, layer.out_width
    seg_starts, seg_ends = _segment_bounds(ow)
    segments = len(seg_starts)
    padded = np.zeros((w + 2 * pad, n, c, h + 2 * pad), dtype=np.uint8)
    padded[pad : pad + w, :, :, pad : pad + h] = act.view(np.uint8).transpose(3, 0, 1, 2)
    dtype = np.int32 if padded.shape[0] >= 2**15 else np.int16
    prefix = []
    for residue in range(st):
        part = padded[residue::st]
        cumulative = np.zeros((part.shape[0] + 1, n, c, h + 2 * pad), dtype=dtype)
        for column in range(part.shape[0]):  # contiguous slice adds: faster than a casting cumsum
            np.add(cumulative[column], part[column], out=cumulative[column + 1])
        prefix.append(cumulative)
    out = np.empty((n, oh, segments, c, kern, kern), dtype=np.uint8)
    for s in range(kern):
        cumulative, first = prefix[s % st], s // st
        sums = (cumulative[first + seg_ends] - cumulative[first + seg_starts]).astype(np.uint8)  # (seg, N, C, Hp)
        for r in range(kern):
            out[:, :, :, :, r, s] = sums[:, :, :, r : r + st * (oh - 1) + 1 : st].transpose(1, 3, 0, 2)
    return out.reshape(n * oh * segments, c * kern * kern)


def _channel_counts(act: NDArray[np.bool_]) -> NDArray[np.int32]:
    """(N, C, H, W) bool -> (N, H, W) int32: non-zero channels per pixel."""
    bits = act.view(np.uint8)
    counts = np.zeros((act.shape[0], act.shape[2], act.shape[3]), dtype=np.int32)
    for channel in range(act.shape[1]):  # contiguous slice adds
        counts += bits[:, channel]
    return counts


def winograd_activation_counts(act: NDArray[np.bool_]) -> IntArray:
    """(N, C, TH, TW, P) bool -> (C * P,) int64: tiles with a non-zero activation at each (c, position)."""
    return np.count_nonzero(act, axis=(0, 2, 3)).astype(np.int64).ravel()


def spatial_activation_counts(act: NDArray[np.bool_], kernel: int, stride: int, padding: int) -> IntArray:
    """(N, C, H, W) bool -> (C * R * S,) int64: for each (c, r, s), the output pixels whose (r, s)-shifted,
    zero-padded input at channel c is non-zero (zero padding counts as a zero activation)."""
    n, channels, height, width = act.shape
    out_h = (height + 2 * padding - kernel) // stride + 1
    out_w = (width + 2 * padding - kernel) // stride + 1
    padded = np.pad(act, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else act
    counts = np.empty((channels, kernel, kernel), dtype=np.int64)
    for r in range(kernel):
        for s in range(kernel):
            window = padded[:, :, r : r + stride * (out_h - 1) + 1 : stride, s : s + stride * (out_w - 1) + 1 : stride]
            counts[:, r, s] = np.count_nonzero(window, axis=(0, 2, 3))
    del n
    return counts.ravel()


def _checked_method(method_name: str, variant: Variant | None) -> Method:
    """The method called `method_name`, after checking that `variant` can supply its masks."""
    spec = method(method_name)
    if not spec.dense and (variant is None or variant.method != spec.source):
        raise ConfigError(
            f"method {method_name!r} needs a variant of method {spec.source!r}, "
            f"got {None if variant is None else variant.method!r}"
        )
    return spec


def _operands(
    trace: Trace,
    layer_index: int,
    method_name: str,
    variant: Variant | None,
    act_nnz_q: IntArray | None = None,
    activation_counts: bool = True,
) -> LayerOperands:
    """The lowering rule: the domain, the matrix shape and the weights of one layer under one method; the
    activations' per-q counts are `act_nnz_q` when given, else counted from the masks (left None without
    `activation_counts`: no exact count can be taken from such operands)."""
    spec = _checked_method(method_name, variant)
    layer = trace.layers[layer_index]
    domain = spec.domain(layer)
    positions, rows_per_image, columns_per_row = matrix_shape(layer, domain, trace.winograd_m)
    common = {
        "layer": layer,
        "layer_index": layer_index,
        "method": method_name,
        "domain": domain,
        "images": trace.images,
        "winograd_m": trace.winograd_m,
        "positions": positions,
        "rows_per_image": rows_per_image,
        "columns_per_row": columns_per_row,
    }
    if spec.dense or variant is None:
        return LayerOperands(
            **common,  # type: ignore[arg-type]
            variant=None,
            dense=True,
            weight_kq=None,
            weight_nnz_q=None,
            weight_nnz_k=None,
            act_nnz_q=None,
        )
    weight_kq = weight_mask(variant.masks, layer_index).reshape(layer.out_channels, -1)
    if act_nnz_q is None and activation_counts:
        activation = variant.masks[layer_index].activation
        if domain == "winograd":
            act_nnz_q = winograd_activation_counts(activation)
        else:
            act_nnz_q = spatial_activation_counts(activation, layer.kernel, layer.stride, layer.padding)
    return LayerOperands(
        **common,  # type: ignore[arg-type]
        variant=variant.name,
        dense=False,
        weight_kq=weight_kq,
        weight_nnz_q=np.count_nonzero(weight_kq, axis=0).astype(np.int64),
        weight_nnz_k=np.count_nonzero(weight_kq, axis=1).astype(np.int64),
        act_nnz_q=act_nnz_q,
    )


def lower_operands(trace: Trace, layer_index: int, method_name: str, variant: Variant | None = None) -> LayerOperands:
    """The `LayerOperands` of one layer under one method (a sparse method needs the variant with its masks)."""
    return _operands(trace, layer_index, method_name, variant)


def lower_layer(
    trace: Trace, layer_index: int, method_name: str, variant: Variant | None, *, segments: bool = True
) -> LayerWork:
    """The `LayerWork` of one layer under one method (a sparse method needs the variant with its masks).

    `segments=False` leaves out the activation counts (`act_sq`, `act_rq`, `act_nnz_row`, `act_nnz_q`), most
    of the lowering's time: enough for the plan, the traffic and the buffer footprint (what `simulate` needs
    of every layer before it runs the first), not for the PE array or the exact counts, which refuse it."""
    spec = _checked_method(method_name, variant)
    if spec.dense or variant is None:
        operands = _operands(trace, layer_index, method_name, variant)
        return _work(operands, act_sq=None, act_rq=None, act_nnz_row=None, input_nnz_hw=None)
    layer = trace.layers[layer_index]
    input_nnz_hw: NDArray[np.int32] | None
    if not segments:  # a Winograd-domain layer's outline reads no activation mask (its input is held dense)
        spatial = spec.domain(layer) == "spatial"
        input_nnz_hw = _channel_counts(variant.masks[layer_index].activation) if spatial else None
        if input_nnz_hw is not None:
            input_nnz_hw.setflags(write=False)
        operands = _operands(trace, layer_index, method_name, variant, activation_counts=False)
        return _work(operands, act_sq=None, act_rq=None, act_nnz_row=None, input_nnz_hw=input_nnz_hw)
    activation = variant.masks[layer_index].activation
    if spec.domain(layer) == "winograd":
        act_sq = _winograd_segments(activation)
        input_nnz_hw = None  # the spatial map feeding the input transform is held dense (docs/simulator.md)
    else:
        act_sq = _spatial_segments(activation, layer)
        input_nnz_hw = _channel_counts(activation)
        input_nnz_hw.setflags(write=False)
    _, _, columns_per_row = matrix_shape(layer, spec.domain(layer), trace.winograd_m)
    per_row = ceil_div(columns_per_row, SEGMENT_COLUMNS)
    by_row = act_sq.reshape(-1, per_row, act_sq.shape[1])
    act_rq = by_row[:, 0].astype(np.int32)
    for segment in range(1, per_row):
        act_rq += by_row[:, segment]
    act_sq.setflags(write=False)
    act_rq.setflags(write=False)
    operands = _operands(trace, layer_index, method_name, variant, act_rq.sum(axis=0, dtype=np.int64))
    return _work(
        operands,
        act_sq=act_sq,
        act_rq=act_rq,
        act_nnz_row=act_rq.sum(axis=1, dtype=np.int64),
        input_nnz_hw=input_nnz_hw,
    )


def _work(operands: LayerOperands, **arrays: object) -> LayerWork:
    fields = {f.name: getattr(operands, f.name) for f in dataclasses.fields(LayerOperands)}
    return LayerWork(**fields, **arrays)  # type: ignore[arg-type]


def work_items(trace: Trace, methods: tuple[str, ...] | None = None) -> Iterator[tuple[int, str, Variant | None]]:
    """(layer index, method, variant or None) of every available pair of `trace`, or only of `methods`: layer
    order, then `METHODS` order, then the trace's variant order."""
    if methods is not None:
        check_methods(methods)
    sources = available(trace)
    for index in range(len(trace.layers)):
        for name in METHODS:
            if methods is not None and name not in methods:
                continue
            for variant in sources[name]:
                yield index, name, None if variant is None else trace.variant(variant)


def lower(trace: Trace, methods: tuple[str, ...] | None = None) -> Workload:
    """Lower every layer of `trace` under every available (method, variant), or only `methods`."""
    works = tuple(lower_layer(trace, index, name, variant) for index, name, variant in work_items(trace, methods))
    return Workload(
        network=trace.network,
        images=trace.images,
        winograd_m=trace.winograd_m,
        layers=trace.layers,
        works=works,
    )
