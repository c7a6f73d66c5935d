"""Exact multiply and transform-add counts of the five methods, derived from the lowering of the masks.

The paper's metric is the number of multiplies a zero-skipping machine issues. It is counted here
exactly, never from products of average densities (which assume independence). `winosim.workload` lowers
every layer under every method to a matrix product weights (K x Q) @ activations (Q x columns) and counts,
for every q, the non-zero weights and the columns with a non-zero activation; then

- the exact count is sum_q (non-zero weights at q) * (columns with a non-zero activation at q), because
  every non-zero activation meets every non-zero weight of its q. For a Winograd layer q is (input channel
  c, position xi): sum over tiles t, c and xi of 1[V(t,c,xi) != 0] * nnz_k(U(xi,c,:)). For a spatial layer q
  is (c, r, s) and the columns are output positions whose (r,s)-shifted input at channel c is non-zero (zero
  padding counts as zero activations);
- the algorithmic count (no skipping) is K * Q * columns: the closed form of the dense methods.

Layers of kind "spatial" (the stem, strided and 1x1 convolutions, FC) count spatially in every method
(`winosim.methods`). Counts are totals over the trace's N images.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from winosim.errors import ConfigError
from winosim.geometry import LayerGeometry
from winosim.methods import METHODS, Domain
from winosim.trace import Trace, Variant
from winosim.winograd import transform_for
from winosim.workload import (
    LayerOperands,
    lower_operands,
    matrix_shape,
    spatial_activation_counts,
    winograd_activation_counts,
    work_items,
)


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
    domain: Domain
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
    weights_per_q = np.count_nonzero(weight_kcp, axis=0).astype(np.int64).ravel()  # (C * P,)
    return int(weights_per_q @ winograd_activation_counts(act_nctp))


def spatial_multiplies(weight_kcrs: NDArray[np.bool_], act_nchw: NDArray[np.bool_], stride: int, padding: int) -> int:
    """Exact zero-skipping multiplies of a direct convolution (padding counts as zero activations).

    weight_kcrs: (K, C, R, S) bool; act_nchw: (N, C, H, W) bool. Returns an exact Python int.
    """
    weights_per_q = np.count_nonzero(weight_kcrs, axis=0).astype(np.int64).ravel()  # (C * R * S,)
    return int(weights_per_q @ spatial_activation_counts(act_nchw, weight_kcrs.shape[2], stride, padding))


def dense_multiplies(layer: LayerGeometry, domain: Domain, images: int, winograd_m: int = 2) -> int:
    """Closed-form multiplies with no skipping: K*C*R*S*Ho*Wo (spatial) or K*C*P*TH*TW (Winograd), x N."""
    positions, rows_per_image, columns_per_row = matrix_shape(layer, domain, winograd_m)
    return layer.out_channels * layer.in_channels * positions * rows_per_image * columns_per_row * images


@functools.cache
def transform_adds_per_tile(winograd_m: int, kernel: int) -> tuple[int, int]:
    """Adds of one tile's input transform (one input channel) and output transform (one output channel)."""
    transform = transform_for(winograd_m, kernel)
    return transform.input_cost().adds, transform.output_cost().adds


def count_operands(operands: LayerOperands) -> LayerCount:
    """The exact counts of a lowered layer: multiplies from its pair counts, transform adds per tile."""
    pairs = operands.pair_counts()
    input_adds = output_adds = 0
    if operands.domain == "winograd":
        per_input_tile, per_output_tile = transform_adds_per_tile(operands.winograd_m, operands.layer.kernel)
        input_adds = per_input_tile * operands.in_channels * operands.columns
        output_adds = per_output_tile * operands.out_channels * operands.columns
    return LayerCount(
        layer=operands.layer.name,
        layer_index=operands.layer_index,
        method=operands.method,
        variant=operands.variant,
        domain=operands.domain,
        images=operands.images,
        multiplies=pairs[(True, True)],
        algorithmic_multiplies=pairs[(False, False)],
        input_transform_adds=input_adds,
        output_transform_adds=output_adds,
    )


def count_layer(trace: Trace, layer_index: int, method: str, variant: Variant | None = None) -> LayerCount:
    """Exact counts of one layer under one method. Sparse methods need the variant that supplies masks."""
    return count_operands(lower_operands(trace, layer_index, method, variant))


def count_trace(trace: Trace) -> tuple[LayerCount, ...]:
    """Counts of every layer under every available (method, variant): layer order, then METHODS order,
    then the trace's variant order."""
    return tuple(count_layer(trace, index, method, variant) for index, method, variant in work_items(trace))
