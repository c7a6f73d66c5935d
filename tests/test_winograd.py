"""Winograd minimal filtering: F(m x m, r x r) computes a 'same' correlation exactly, with fewer multiplies.

The transforms are checked the way the field checks them (tinygrad's test_winograd): against direct
convolution on random data, odd sizes and edge tiles included, and against torch when it is installed.
The F(2x2,3x3) matrices are those printed in Liu et al. (ICLR 2018) and Lavin & Gray (CVPR 2016); the
F(4x4,3x3) matrices are Lavin & Gray's, section 4.2.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from winosim.errors import ConfigError
from winosim.winograd import (
    cook_toom,
    direct_conv2d,
    f2x2_3x3,
    input_transform,
    output_transform,
    tile,
    tile_grid,
    transform_for,
    untile,
    weight_transform,
    winograd_conv2d,
)

# paper.md section 1, verbatim
PAPER_BT = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
PAPER_G = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
PAPER_AT = [[1, 1, 1, 0], [0, 1, -1, -1]]

# Lavin & Gray 2016, F(4x4, 3x3)
LAVIN_F4_BT = [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
]
LAVIN_F4_G: list[list[Fraction | int]] = [
    [Fraction(1, 4), 0, 0],
    [Fraction(-1, 6), Fraction(-1, 6), Fraction(-1, 6)],
    [Fraction(-1, 6), Fraction(1, 6), Fraction(-1, 6)],
    [Fraction(1, 24), Fraction(1, 12), Fraction(1, 6)],
    [Fraction(1, 24), Fraction(-1, 12), Fraction(1, 6)],
    [0, 0, 1],
]
LAVIN_F4_AT = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]

RNG_SEED = 20180215


def _random(shape: tuple[int, ...], seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# --------------------------------------------------------------------------- the matrices


def test_f2x2_3x3_has_exactly_the_paper_matrices():
    transform = f2x2_3x3()
    assert (transform.m, transform.r, transform.p, transform.positions) == (2, 3, 4, 16)
    np.testing.assert_array_equal(transform.BT, np.array(PAPER_BT, dtype=np.float64))
    np.testing.assert_array_equal(transform.G, np.array(PAPER_G, dtype=np.float64))
    np.testing.assert_array_equal(transform.AT, np.array(PAPER_AT, dtype=np.float64))
    assert transform.name == "F(2x2,3x3)"


def test_transform_matrices_are_read_only():
    transform = f2x2_3x3()
    with pytest.raises(ValueError):
        transform.BT[0, 0] = 7.0


def test_cook_toom_f4x4_3x3_equals_lavin_and_gray():
    transform = cook_toom(4, 3)
    np.testing.assert_array_equal(transform.BT, np.array(LAVIN_F4_BT, dtype=np.float64))
    np.testing.assert_array_equal(transform.G, np.array([[float(v) for v in row] for row in LAVIN_F4_G]))
    np.testing.assert_array_equal(transform.AT, np.array(LAVIN_F4_AT, dtype=np.float64))


def test_transform_for_picks_the_paper_matrices_for_f2x2():
    np.testing.assert_array_equal(transform_for(2, 3).BT, f2x2_3x3().BT)
    assert transform_for(4, 3).p == 6


@pytest.mark.parametrize(("m", "r"), [(0, 3), (2, 0), (-1, -1)])
def test_cook_toom_rejects_non_positive_sizes(m, r):
    with pytest.raises(ConfigError, match="m and r must be >= 1"):
        cook_toom(m, r)


def test_cook_toom_rejects_sizes_beyond_its_points():
    with pytest.raises(ConfigError, match="points"):
        cook_toom(12, 5)


# --------------------------------------------------------------------------- transform costs


def test_f2x2_3x3_transform_adds_are_32_and_24_with_no_constant_multiplies():
    """paper.md section 1: input 32 adds per 4x4 tile per channel, output 24 per tile per channel."""
    transform = f2x2_3x3()
    assert transform.input_cost().adds == 32
    assert transform.output_cost().adds == 24
    assert transform.input_cost().constant_multiplies == 0
    assert transform.output_cost().constant_multiplies == 0


def test_f4x4_3x3_transform_costs_from_lavin_gray_matrices():
    """Counted by hand from Lavin & Gray's F(4x4,3x3): B^T rows have 3,4,4,4,4,3 non-zeros (16 adds per
    vector, 12 vectors: 192); A^T rows 5,4,4,5 (14 adds, 6 + 4 vectors: 140) with 6 entries not +-1."""
    transform = cook_toom(4, 3)
    assert transform.input_cost().adds == 192
    assert transform.output_cost().adds == 140
    assert transform.output_cost().constant_multiplies == 60


@pytest.mark.parametrize(("m", "r"), [(2, 3), (3, 3), (4, 3), (6, 3), (2, 5), (4, 5)])
def test_separable_cost_closed_form(m, r):
    """A separable transform applies its matrix to every column, then to every row: input cost is
    2p x (nnz(B^T) - p) adds, output cost (p + m) x (nnz(A^T) - m), when no row of the matrix is empty."""
    transform = cook_toom(m, r)
    p = transform.p
    assert (np.count_nonzero(transform.BT, axis=1) > 0).all()
    assert transform.input_cost().adds == 2 * p * (np.count_nonzero(transform.BT) - p)
    assert transform.output_cost().adds == (p + m) * (np.count_nonzero(transform.AT) - m)
    assert transform.weight_cost().adds == (r + p) * (np.count_nonzero(transform.G) - p)


def test_winograd_multiplies_fewer_by_r_squared_m_squared_over_p_squared():
    """Dense multiplies per output pixel: spatial r*r = 9, F(2x2,3x3) 16/4 = 4 (2.25x), F(4x4,3x3) 36/16."""
    for transform, ratio in ((f2x2_3x3(), 2.25), (cook_toom(4, 3), 4.0)):
        spatial_per_pixel = transform.r**2
        winograd_per_pixel = transform.positions / transform.m**2
        assert spatial_per_pixel / winograd_per_pixel == ratio


# --------------------------------------------------------------------------- tiling


@pytest.mark.parametrize(("height", "width"), [(4, 4), (5, 7), (1, 1), (1, 6), (9, 2)])
def test_tile_cuts_overlapping_padded_windows(height, width):
    transform = f2x2_3x3()
    x = _random((2, 3, height, width))
    tiles = tile(x, transform)
    th, tw = tile_grid(height, width, 2)
    assert tiles.shape == (2, 3, th, tw, 4, 4)
    padded = np.zeros((2, 3, 2 * th + 2, 2 * tw + 2))
    padded[:, :, 1 : 1 + height, 1 : 1 + width] = x
    for i in range(th):
        for j in range(tw):
            np.testing.assert_array_equal(tiles[:, :, i, j], padded[:, :, 2 * i : 2 * i + 4, 2 * j : 2 * j + 4])


def test_tile_grid_is_ceil_of_half():
    assert tile_grid(5, 7, 2) == (3, 4)
    assert tile_grid(56, 56, 2) == (28, 28)
    assert tile_grid(7, 7, 4) == (2, 2)


def test_tile_grid_rejects_empty_maps():
    with pytest.raises(ConfigError, match="height and width must be >= 1"):
        tile_grid(0, 3, 2)


def test_untile_inverts_the_output_tiling_and_crops_the_edge():
    x = _random((2, 5, 7))
    th, tw = tile_grid(5, 7, 2)
    padded = np.zeros((2, 2 * th, 2 * tw))
    padded[:, :5, :7] = x
    blocks = padded.reshape(2, th, 2, tw, 2).transpose(0, 1, 3, 2, 4)  # (.., TH, TW, m, m)
    np.testing.assert_array_equal(untile(blocks, 5, 7), x)


# --------------------------------------------------------------------------- convolution oracles


def test_one_tile_equals_the_valid_correlation():
    """Y = A^T [(G g G^T) . (B^T d B)] A is the 2x2 valid correlation of a 4x4 tile d with a 3x3 kernel g."""
    transform = f2x2_3x3()
    d, g = _random((4, 4)), _random((3, 3), seed=1)
    y = output_transform(weight_transform(g, transform) * input_transform(d, transform), transform)
    expected = np.array([[np.sum(d[i : i + 3, j : j + 3] * g) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("n", "c", "k", "height", "width"),
    [(1, 1, 1, 4, 4), (2, 3, 4, 8, 8), (1, 4, 2, 5, 7), (2, 2, 3, 7, 5), (1, 3, 2, 1, 1), (1, 2, 2, 3, 1)],
)
@pytest.mark.parametrize("transform", [f2x2_3x3(), cook_toom(4, 3), cook_toom(3, 3)], ids=lambda t: t.name)
def test_winograd_conv2d_equals_direct_convolution(n, c, k, height, width, transform):
    x, w = _random((n, c, height, width)), _random((k, c, 3, 3), seed=7)
    np.testing.assert_allclose(winograd_conv2d(x, w, transform), direct_conv2d(x, w), rtol=1e-10, atol=1e-10)


def test_cook_toom_f2x2_computes_the_same_convolution_as_the_paper_matrices():
    x, w = _random((1, 3, 6, 5)), _random((2, 3, 3, 3), seed=3)
    np.testing.assert_allclose(winograd_conv2d(x, w, cook_toom(2, 3)), winograd_conv2d(x, w), rtol=1e-12, atol=1e-12)


def test_winograd_conv2d_5x5_kernels_with_f2x2_5x5():
    x, w = _random((1, 2, 7, 6)), _random((3, 2, 5, 5), seed=5)
    np.testing.assert_allclose(winograd_conv2d(x, w, cook_toom(2, 5)), direct_conv2d(x, w), rtol=1e-9, atol=1e-9)


def test_winograd_conv2d_rejects_a_kernel_of_the_wrong_size():
    with pytest.raises(ConfigError, match="kernel must be 3x3"):
        winograd_conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 5, 5)))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    k=st.integers(1, 3),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_winograd_equals_direct_for_any_shape(n, c, k, height, width, seed):
    x, w = _random((n, c, height, width), seed), _random((k, c, 3, 3), seed + 1)
    np.testing.assert_allclose(winograd_conv2d(x, w), direct_conv2d(x, w), rtol=1e-10, atol=1e-10)


@pytest.mark.torch
@pytest.mark.parametrize(("height", "width"), [(8, 8), (7, 5), (1, 3)])
@pytest.mark.parametrize("transform", [f2x2_3x3(), cook_toom(4, 3)], ids=lambda t: t.name)
def test_winograd_and_direct_equal_torch_conv2d(height, width, transform):
    torch = pytest.importorskip("torch")
    x, w = _random((2, 3, height, width)), _random((4, 3, 3, 3), seed=11)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    np.testing.assert_allclose(direct_conv2d(x, w), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(winograd_conv2d(x, w, transform), expected, rtol=1e-10, atol=1e-10)
