"""Exact multiply counts: what a machine that skips every zero operand issues, counted from the masks.

The oracle is the definition itself, written as plain Python loops over every multiply of a layer
(paper.md section 2: sum over tiles, channels and positions of 1[V != 0] * nnz_k(U); for a direct
convolution, every (k, output pixel, c, r, s) whose weight and shifted input are both non-zero, zero padding
being a zero activation). The dense methods are checked against their closed forms.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from winosim.counts import (
    LayerCount,
    count_layer,
    count_trace,
    dense_multiplies,
    spatial_multiplies,
    winograd_multiplies,
)
from winosim.errors import ConfigError
from winosim.geometry import LayerGeometry
from winosim.methods import METHODS, available
from winosim.trace import LayerMasks, Provenance, Trace, Variant, mask_shapes

LAYERS = (
    LayerGeometry("stem", "spatial", "conv", 3, 4, 7, 5, kernel=3, stride=1, padding=1),
    LayerGeometry("wino_odd", "winograd", "conv", 4, 5, 7, 5, kernel=3, stride=1, padding=1),
    LayerGeometry("down", "spatial", "conv", 5, 6, 7, 5, kernel=3, stride=2, padding=1),
    LayerGeometry("wino_even", "winograd", "conv", 6, 3, 4, 3, kernel=3, stride=1, padding=1),
    LayerGeometry("unpadded", "spatial", "conv", 3, 2, 4, 3, kernel=3, stride=1, padding=0),
    LayerGeometry("shortcut", "spatial", "conv", 2, 4, 2, 1, kernel=1, stride=2, padding=0),
    LayerGeometry("pad2", "spatial", "conv", 4, 2, 3, 3, kernel=5, stride=1, padding=2),
    LayerGeometry("fc", "spatial", "fc", 4, 3, 1, 1, kernel=1),
)
IMAGES = 3


def _masks(method: str, seed: int, weight_density: float, act_density: float) -> tuple[LayerMasks, ...]:
    rng = np.random.default_rng(seed)
    out = []
    for layer in LAYERS:
        weight_shape, act_shape = mask_shapes(method, layer, IMAGES)
        out.append(
            LayerMasks(weight=rng.random(weight_shape) < weight_density, activation=rng.random(act_shape) < act_density)
        )
    return tuple(out)


def _trace(methods: tuple[str, ...] = ("spatial", "native", "winograd_relu"), seed: int = 0) -> Trace:
    variants = tuple(
        Variant(name=f"{method}_{i}", method=method, masks=_masks(method, seed + i, 0.4, 0.6))  # type: ignore[arg-type]
        for i, method in enumerate(methods)
    )
    provenance = Provenance("test", IMAGES, seed, "0.1.0", "pytest", synthetic=True)
    return Trace("tiny", 7, 5, LAYERS, variants, provenance)


# --------------------------------------------------------------------------- brute-force oracles


def brute_winograd(weight_kcp: np.ndarray, act_nctp: np.ndarray) -> int:
    """One multiply per (image, tile, c, position, k) where the activation and the weight are non-zero."""
    k_count, c_count, positions = weight_kcp.shape
    n_count, _, th, tw, _ = act_nctp.shape
    total = 0
    for n, c, i, j, p in itertools.product(range(n_count), range(c_count), range(th), range(tw), range(positions)):
        if act_nctp[n, c, i, j, p]:
            for k in range(k_count):
                if weight_kcp[k, c, p]:
                    total += 1
    return total


def brute_spatial(weight_kcrs: np.ndarray, act_nchw: np.ndarray, stride: int, padding: int) -> int:
    """One multiply per (image, k, output pixel, c, r, s) with a non-zero weight and an in-bounds non-zero input."""
    k_count, c_count, kernel_h, kernel_w = weight_kcrs.shape
    n_count, _, height, width = act_nchw.shape
    out_h = (height + 2 * padding - kernel_h) // stride + 1
    out_w = (width + 2 * padding - kernel_w) // stride + 1
    total = 0
    for n, k, y, x, c, r, s in itertools.product(
        range(n_count), range(k_count), range(out_h), range(out_w), range(c_count), range(kernel_h), range(kernel_w)
    ):
        iy, ix = y * stride - padding + r, x * stride - padding + s
        if 0 <= iy < height and 0 <= ix < width and weight_kcrs[k, c, r, s] and act_nchw[n, c, iy, ix]:
            total += 1
    return total


def closed_form_dense(layer: LayerGeometry, method: str) -> int:
    if method == "dense_winograd" and layer.kind == "winograd":
        return (
            IMAGES * 16 * -(-layer.out_height // 2) * -(-layer.out_width // 2) * layer.in_channels * layer.out_channels
        )
    return IMAGES * layer.out_channels * layer.in_channels * layer.kernel**2 * layer.out_height * layer.out_width


# --------------------------------------------------------------------------- invariants


def test_count_trace_rows_in_layer_then_method_order():
    trace = _trace()
    rows = count_trace(trace)
    assert len(rows) == len(LAYERS) * len(METHODS)
    assert [(r.layer_index, r.method) for r in rows] == [(i, m) for i in range(len(LAYERS)) for m in METHODS]
    assert all(isinstance(r, LayerCount) and isinstance(r.multiplies, int) for r in rows)
    assert all(r.images == IMAGES for r in rows)


def test_issued_never_exceeds_algorithmic_and_dense_methods_skip_nothing():
    for row in count_trace(_trace()):
        assert 0 <= row.multiplies <= row.algorithmic_multiplies
        if row.method.startswith("dense_"):
            assert row.variant is None
            assert row.multiplies == row.algorithmic_multiplies


def test_spatial_layers_count_spatially_in_every_method():
    trace = _trace()
    for row in count_trace(trace):
        layer = LAYERS[row.layer_index]
        if layer.kind == "spatial" or row.method in ("dense_spatial", "pruned_spatial"):
            assert row.domain == "spatial"
            assert row.input_transform_adds == row.output_transform_adds == 0
        else:
            assert row.domain == "winograd"


def test_all_ones_masks_count_the_dense_winograd_cost():
    layer = LAYERS[1]
    weight_shape, act_shape = mask_shapes("winograd_relu", layer, IMAGES)
    count = winograd_multiplies(np.ones(weight_shape, dtype=bool), np.ones(act_shape, dtype=bool))
    assert count == closed_form_dense(layer, "dense_winograd")


def test_all_ones_spatial_masks_count_dense_minus_the_padding():
    """Zero padding is a zero activation: a dense map under a padded kernel issues fewer than K*C*R*S*Ho*Wo."""
    layer = LAYERS[0]
    weight_shape, act_shape = mask_shapes("spatial", layer, IMAGES)
    ones_w, ones_a = np.ones(weight_shape, dtype=bool), np.ones(act_shape, dtype=bool)
    count = spatial_multiplies(ones_w, ones_a, layer.stride, layer.padding)
    assert count == brute_spatial(ones_w, ones_a, layer.stride, layer.padding)
    assert count < closed_form_dense(layer, "dense_spatial")
    unpadded = LAYERS[4]
    weight_shape, act_shape = mask_shapes("spatial", unpadded, IMAGES)
    ones_w, ones_a = np.ones(weight_shape, dtype=bool), np.ones(act_shape, dtype=bool)
    assert spatial_multiplies(ones_w, ones_a, 1, 0) == closed_form_dense(unpadded, "dense_spatial")


def test_empty_masks_count_zero():
    layer = LAYERS[1]
    weight_shape, act_shape = mask_shapes("native", layer, IMAGES)
    assert winograd_multiplies(np.zeros(weight_shape, dtype=bool), np.ones(act_shape, dtype=bool)) == 0
    assert spatial_multiplies(np.ones((2, 3, 3, 3), dtype=bool), np.zeros((1, 3, 4, 4), dtype=bool), 1, 1) == 0


# --------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_sparse_count_equals_brute_force(seed):
    trace = _trace(seed=seed)
    for row in count_trace(trace):
        if row.variant is None:
            continue
        layer = LAYERS[row.layer_index]
        masks = trace.variant(row.variant).masks[row.layer_index]
        if row.domain == "winograd":
            expected = brute_winograd(masks.weight, masks.activation)
        else:
            expected = brute_spatial(masks.weight, masks.activation, layer.stride, layer.padding)
        assert row.multiplies == expected, (row.layer, row.method)


@pytest.mark.parametrize(
    ("stride", "padding", "kernel", "height", "width"),
    [(1, 1, 3, 5, 7), (2, 1, 3, 7, 5), (2, 0, 1, 5, 5), (3, 2, 5, 8, 6), (1, 0, 3, 3, 3), (2, 1, 3, 2, 2)],
)
def test_spatial_multiplies_equals_brute_force_for_strides_and_paddings(stride, padding, kernel, height, width):
    rng = np.random.default_rng(stride * 100 + padding * 10 + kernel)
    weight = rng.random((3, 2, kernel, kernel)) < 0.5
    act = rng.random((2, 2, height, width)) < 0.5
    assert spatial_multiplies(weight, act, stride, padding) == brute_spatial(weight, act, stride, padding)


def test_winograd_count_is_not_the_product_of_average_densities():
    """Counting exactly matters: correlated masks (weights and activations non-zero at the same positions)
    issue far more multiplies than density x density x dense predicts."""
    weight = np.zeros((4, 2, 16), dtype=bool)
    act = np.zeros((1, 2, 3, 3, 16), dtype=bool)
    weight[:, :, :4] = True
    act[..., :4] = True
    exact = winograd_multiplies(weight, act)
    assert exact == brute_winograd(weight, act) == 4 * 2 * 9 * 4
    estimate = weight.mean() * act.mean() * 4 * 2 * 9 * 16
    assert exact == 4 * estimate


@pytest.mark.parametrize("method", ["dense_spatial", "dense_winograd"])
def test_dense_methods_equal_their_closed_forms(method):
    trace = _trace()
    rows = [r for r in count_trace(trace) if r.method == method]
    assert [r.multiplies for r in rows] == [closed_form_dense(layer, method) for layer in LAYERS]


def test_dense_multiplies_of_resnet_layer_is_2_25x_fewer_in_winograd():
    layer = LayerGeometry("l", "winograd", "conv", 64, 64, 56, 56, kernel=3, stride=1, padding=1)
    assert dense_multiplies(layer, "spatial", 1) == 64 * 64 * 9 * 56 * 56
    assert dense_multiplies(layer, "winograd", 1) * 9 == dense_multiplies(layer, "spatial", 1) * 4


def test_transform_adds_closed_form():
    """32 adds per input tile and input channel, 24 per output tile and output channel (F(2x2,3x3))."""
    trace = _trace()
    for row in count_trace(trace):
        layer = LAYERS[row.layer_index]
        if row.domain != "winograd":
            continue
        tiles = IMAGES * -(-layer.out_height // 2) * -(-layer.out_width // 2)
        assert row.input_transform_adds == 32 * layer.in_channels * tiles
        assert row.output_transform_adds == 24 * layer.out_channels * tiles


# --------------------------------------------------------------------------- availability


def test_a_method_without_a_variant_is_unavailable_not_estimated():
    trace = _trace(("winograd_relu",))
    sources = available(trace)
    assert sources == {
        "dense_spatial": (None,),
        "pruned_spatial": (),
        "dense_winograd": (None,),
        "native_winograd": (),
        "winograd_relu": ("winograd_relu_0",),
    }
    methods = {r.method for r in count_trace(trace)}
    assert methods == {"dense_spatial", "dense_winograd", "winograd_relu"}


def test_several_variants_of_one_method_each_get_rows():
    trace = _trace(("winograd_relu", "winograd_relu"))
    assert available(trace)["winograd_relu"] == ("winograd_relu_0", "winograd_relu_1")
    rows = [r for r in count_trace(trace) if r.layer_index == 1 and r.method == "winograd_relu"]
    assert [r.variant for r in rows] == ["winograd_relu_0", "winograd_relu_1"]


def test_count_layer_needs_a_matching_variant():
    trace = _trace(("spatial",))
    with pytest.raises(ConfigError, match="needs a variant of method 'native'"):
        count_layer(trace, 1, "native_winograd", trace.variants[0])
    with pytest.raises(ConfigError, match="unknown method 'magic'"):
        count_layer(trace, 1, "magic")
