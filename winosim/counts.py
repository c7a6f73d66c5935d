"""Exact multiply and transform-add counts of the five methods, from the masks of a trace.

The paper's metric is the number of multiplies a zero-skipping machine issues. It is counted here
exactly, never from products of average densities (which assume independence):

- Winograd layer: sum over tiles t, input channels c and positions xi of
  1[V(t,c,xi) != 0] * nnz_k(U(xi,c,:)) = sum_{c,xi} (non-zero activations at (c,xi)) * (non-zero weights
  at (c,xi)), because every non-zero activation meets every non-zero weight of its (channel, position).
- Spatial layer: sum over (c, r, s) of (non-zero weights at (c,r,s) over k) * (output positions whose
  (r,s)-shifted input at channel c is non-zero). Zero padding counts as zero activations.

Dense methods come from closed forms of the geometry. Layers of kind "spatial" (the stem, strided and 1x1
convolutions, FC) count spatially in every method. Counts are totals over the trace's N images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from winosim.errors import ConfigError
from winosim.geometry import LayerGeometry
from winosim.integers import ceil_div
from winosim.trace import Trace, Variant
from winosim.winograd import transform_for

METHODS: tuple[str, ...] = ("dense_spatial", "pruned_spatial", "dense_winograd", "native_winograd", "winograd_relu")
"""The rows of every comparison table, in display order."""

SPARSE_METHOD_SOURCE: dict[str, str] = {
    "pruned_spatial": "spatial",
    "native_winograd": "native",
    "winograd_relu": "winograd_relu",
}
"""Which variant method supplies the masks of each sparse method."""

DENSE_METHODS: tuple[str, ...] = ("dense_spatial", "dense_winograd")


@dataclass(frozen=True)
class LayerCount:
    """Exact operation counts of one layer under one method, summed over the trace's `images`.

    `multiplies` are those a machine skipping every zero operand issues; `algorithmic_multiplies` are those
    of the same method in the same domain with no skipping. Transform adds are zero for spatial layers.
    """

    layer: str
    layer_index: int
    method: str
    variant: str | None
    domain: Literal["winograd", "spatial"]
    images: int
    multiplies: int
    algorithmic_multiplies: int
    input_transform_adds: int
    output_transform_adds: int

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"LayerCount: method must be one of {METHODS}, got {self.method!r}")
        if not 0 <= self.multiplies <= self.algorithmic_multiplies:
            raise ConfigError(
                f"LayerCount {self.layer!r}/{self.method}: multiplies must be in [0, algorithmic_multiplies="
                f"{self.algorithmic_multiplies}], got {self.multiplies}"
            )

    @property
    def multiplies_per_image(self) -> float:
        return self.multiplies / self.images


def winograd_multiplies(weight_kcp: NDArray[np.bool_], act_nctp: NDArray[np.bool_]) -> int:
    """Exact zero-skipping multiplies of a Winograd element-wise stage.

    weight_kcp: (K, C, P) bool; act_nctp: (N, C, TH, TW, P) bool. Returns an exact Python int.
    """
    weights_per_cp = np.count_nonzero(weight_kcp, axis=0).astype(np.int64)  # (C, P)
    acts_per_cp = np.count_nonzero(act_nctp, axis=(0, 2, 3)).astype(np.int64)  # (C, P)
    return int(np.einsum("cp,cp->", weights_per_cp, acts_per_cp))


def spatial_multiplies(weight_kcrs: NDArray[np.bool_], act_nchw: NDArray[np.bool_], stride: int, padding: int) -> int:
    """Exact zero-skipping multiplies of a direct convolution (padding counts as zero activations).

    weight_kcrs: (K, C, R, S) bool; act_nchw: (N, C, H, W) bool. Returns an exact Python int.
    """
    _, channels, kernel_h, kernel_w = weight_kcrs.shape
    height, width = act_nchw.shape[-2:]
    out_h = (height + 2 * padding - kernel_h) // stride + 1
    out_w = (width + 2 * padding - kernel_w) // stride + 1
    weights_per_crs = np.count_nonzero(weight_kcrs, axis=0).astype(np.int64)  # (C, R, S)
    padded = np.pad(act_nchw, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else act_nchw
    total = 0
    for r in range(kernel_h):
        for s in range(kernel_w):
            if not weights_per_crs[:, r, s].any():
                continue
            window = padded[:, :, r : r + stride * (out_h - 1) + 1 : stride, s : s + stride * (out_w - 1) + 1 : stride]
            acts_per_c = np.count_nonzero(window, axis=(0, 2, 3)).astype(np.int64)  # (C,)
            total += int(weights_per_crs[:, r, s] @ acts_per_c)
    del channels
    return total


def dense_multiplies(layer: LayerGeometry, domain: str, images: int, winograd_m: int = 2) -> int:
    """Closed-form multiplies with no skipping: K*C*R*S*Ho*Wo (spatial) or K*C*P*TH*TW (Winograd), x N."""
    if domain == "winograd":
        th, tw = ceil_div(layer.out_height, winograd_m), ceil_div(layer.out_width, winograd_m)
        return layer.out_channels * layer.in_channels * (winograd_m + 2) ** 2 * th * tw * images
    return layer.dense_spatial_multiplies() * images


def _transform_adds(layer: LayerGeometry, domain: str, images: int, winograd_m: int) -> tuple[int, int]:
    if domain != "winograd":
        return 0, 0
    transform = transform_for(winograd_m, 3)
    th, tw = ceil_div(layer.out_height, winograd_m), ceil_div(layer.out_width, winograd_m)
    tiles = th * tw * images
    return (
        transform.input_cost().adds * layer.in_channels * tiles,
        transform.output_cost().adds * layer.out_channels * tiles,
    )


def available(trace: Trace) -> dict[str, tuple[str | None, ...]]:
    """For each method, the variants that supply its masks (None for the dense methods); () = unavailable."""
    result: dict[str, tuple[str | None, ...]] = {}
    for method in METHODS:
        if method in DENSE_METHODS:
            result[method] = (None,)
        else:
            source = SPARSE_METHOD_SOURCE[method]
            result[method] = tuple(v.name for v in trace.variants if v.method == source)
    return result


def count_layer(trace: Trace, layer_index: int, method: str, variant: Variant | None = None) -> LayerCount:
    """Exact counts of one layer under one method. Sparse methods need the variant that supplies masks."""
    if method not in METHODS:
        raise ConfigError(f"count_layer: method must be one of {METHODS}, got {method!r}")
    layer = trace.layers[layer_index]
    n, m = trace.images, trace.winograd_m
    if method in DENSE_METHODS:
        domain: Literal["winograd", "spatial"] = (
            "winograd" if method == "dense_winograd" and layer.kind == "winograd" else "spatial"
        )
        dense = dense_multiplies(layer, domain, n, m)
        multiplies = dense
        variant_name = None
    else:
        if variant is None or variant.method != SPARSE_METHOD_SOURCE[method]:
            raise ConfigError(
                f"count_layer: method {method!r} needs a variant of method {SPARSE_METHOD_SOURCE[method]!r}, "
                f"got {None if variant is None else variant.method!r}"
            )
        domain = variant.domain(layer)
        masks = variant.masks[layer_index]
        dense = dense_multiplies(layer, domain, n, m)
        if domain == "winograd":
            multiplies = winograd_multiplies(masks.weight, masks.activation)
        else:
            multiplies = spatial_multiplies(masks.weight, masks.activation, layer.stride, layer.padding)
        variant_name = variant.name
    input_adds, output_adds = _transform_adds(layer, domain, n, m)
    return LayerCount(
        layer=layer.name,
        layer_index=layer_index,
        method=method,
        variant=variant_name,
        domain=domain,
        images=n,
        multiplies=multiplies,
        algorithmic_multiplies=dense,
        input_transform_adds=input_adds,
        output_transform_adds=output_adds,
    )


def count_trace(trace: Trace) -> tuple[LayerCount, ...]:
    """Counts of every layer under every available (method, variant): layer order, then METHODS order,
    then the trace's variant order."""
    sources = available(trace)
    rows: list[LayerCount] = []
    for index in range(len(trace.layers)):
        for method in METHODS:
            for name in sources[method]:
                variant = None if name is None else trace.variant(name)
                rows.append(count_layer(trace, index, method, variant))
    return tuple(rows)
