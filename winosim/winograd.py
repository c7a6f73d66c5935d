"""Winograd minimal-filtering math: transform matrices, tiling and transform costs.

A Winograd algorithm F(m x m, r x r) computes an m x m output tile of a stride-1 correlation with an
r x r kernel from a p x p input tile (p = m + r - 1) using p*p element-wise multiplies instead of
m*m*r*r:

    V = B^T d B      (input transform, p x p)
    U = G g G^T      (weight transform, p x p, done offline)
    Y = A^T (U * V) A  (output transform, m x m)

`f2x2_3x3()` returns exactly the matrices of Liu et al. (ICLR 2018) / Lavin & Gray (2016).
`cook_toom(m, r)` builds any F(m, r) from interpolation points (0, 1, -1, 2, -2, 1/2, -1/2, ...), with
exact rational arithmetic. All functions here are pure numpy and need no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import numpy as np
from numpy.typing import NDArray

from winosim.errors import ConfigError
from winosim.integers import ceil_div

FloatArray = NDArray[np.float64]

_POINTS: tuple[Fraction, ...] = (
    Fraction(0),
    Fraction(1),
    Fraction(-1),
    Fraction(2),
    Fraction(-2),
    Fraction(1, 2),
    Fraction(-1, 2),
    Fraction(3),
    Fraction(-3),
    Fraction(1, 3),
    Fraction(-1, 3),
    Fraction(4),
    Fraction(-4),
)


@dataclass(frozen=True)
class TransformCost:
    """Operations of one application of a separable transform to one tile (one channel).

    `adds` counts additions/subtractions; `constant_multiplies` counts multiplications by a constant that
    is neither 0 nor +-1 (shift-and-add in hardware). Multiplications by +-1 are free.
    """

    adds: int
    constant_multiplies: int

    def __post_init__(self) -> None:
        if self.adds < 0 or self.constant_multiplies < 0:
            raise ConfigError(f"TransformCost: counts must be >= 0, got {self}")


@dataclass(frozen=True)
class WinogradTransform:
    """The three matrices of F(m x m, r x r) and the derived sizes.

    Shapes: BT (p, p), G (p, r), AT (m, p), with p = m + r - 1. Arrays are read-only float64.
    """

    m: int
    r: int
    BT: FloatArray
    G: FloatArray
    AT: FloatArray

    def __post_init__(self) -> None:
        if self.m < 1 or self.r < 1:
            raise ConfigError(f"WinogradTransform: m and r must be >= 1, got m={self.m}, r={self.r}")
        p = self.p
        for name, arr, shape in (("BT", self.BT, (p, p)), ("G", self.G, (p, self.r)), ("AT", self.AT, (self.m, p))):
            if arr.shape != shape:
                raise ConfigError(f"WinogradTransform: {name} must have shape {shape}, got {arr.shape}")
            arr.setflags(write=False)

    @property
    def p(self) -> int:
        """Input tile side, m + r - 1."""
        return self.m + self.r - 1

    @property
    def positions(self) -> int:
        """Number of Winograd-domain positions (element-wise multiplies per tile), p*p."""
        return self.p * self.p

    @property
    def name(self) -> str:
        return f"F({self.m}x{self.m},{self.r}x{self.r})"

    def input_cost(self) -> TransformCost:
        """Cost of B^T d B for one p x p tile: B^T applied to p columns, then to p rows."""
        return _separable_cost(self.BT, 2 * self.p)

    def output_cost(self) -> TransformCost:
        """Cost of A^T M A for one tile: A^T applied to p columns (m x p result), then to m rows."""
        return _separable_cost(self.AT, self.p + self.m)

    def weight_cost(self) -> TransformCost:
        """Cost of G g G^T for one kernel (offline): G applied to r columns, then to p rows."""
        return _separable_cost(self.G, self.r + self.p)


def _separable_cost(matrix: FloatArray, applications: int) -> TransformCost:
    """Cost of `applications` matrix-vector products with a constant matrix, with common-term reuse ignored."""
    nonzero = matrix != 0
    adds_per_vector = int(np.maximum(nonzero.sum(axis=1) - 1, 0).sum())
    nontrivial = nonzero & (np.abs(matrix) != 1)
    return TransformCost(adds=adds_per_vector * applications, constant_multiplies=int(nontrivial.sum()) * applications)


def f2x2_3x3() -> WinogradTransform:
    """F(2x2, 3x3) with exactly the matrices printed in Liu et al. 2018 (and Lavin & Gray 2016)."""
    bt = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
    at = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)
    return WinogradTransform(m=2, r=3, BT=bt, G=g, AT=at)


@cache
def _cook_toom_exact(m: int, r: int) -> tuple[tuple[tuple[Fraction, ...], ...], ...]:
    n = m + r - 1
    if n - 1 > len(_POINTS):
        raise ConfigError(f"cook_toom: F({m},{r}) needs {n - 1} points, at most {len(_POINTS)} are defined")
    points = _POINTS[: n - 1]

    def poly_from_roots(roots: tuple[Fraction, ...]) -> list[Fraction]:
        coeffs = [Fraction(1)]  # lowest power first
        for root in roots:
            shifted = [Fraction(0), *coeffs]
            scaled = [-root * c for c in coeffs] + [Fraction(0)]
            coeffs = [a + b for a, b in zip(shifted, scaled, strict=True)]
        return coeffs

    bt: list[list[Fraction]] = []
    g: list[list[Fraction]] = []
    at_cols: list[list[Fraction]] = []
    for i, a in enumerate(points):
        others = tuple(p for k, p in enumerate(points) if k != i)
        denominator = Fraction(1)
        for other in others:
            denominator *= a - other
        numerator = poly_from_roots(others)
        bt.append(numerator + [Fraction(0)] * (n - len(numerator)))
        g.append([a**j / denominator for j in range(r)])
        at_cols.append([a**j for j in range(m)])
    bt.append(poly_from_roots(points))
    g.append([Fraction(0)] * (r - 1) + [Fraction(1)])
    at_cols.append([Fraction(0)] * (m - 1) + [Fraction(1)])
    at = [[at_cols[j][i] for j in range(n)] for i in range(m)]
    return tuple(map(tuple, bt)), tuple(map(tuple, g)), tuple(map(tuple, at))


def cook_toom(m: int, r: int) -> WinogradTransform:
    """General F(m x m, r x r) by the Cook-Toom construction (Lavin & Gray 2016, section 4).

    Points 0, 1, -1, 2, -2, 1/2, ... and infinity; computed in exact rationals, returned as float64.
    The matrices for F(2x2, 3x3) equal `f2x2_3x3()` up to the sign of two rows/columns.
    """
    if m < 1 or r < 1:
        raise ConfigError(f"cook_toom: m and r must be >= 1, got m={m}, r={r}")
    bt, g, at = _cook_toom_exact(m, r)
    return WinogradTransform(
        m=m,
        r=r,
        BT=np.array(bt, dtype=np.float64),
        G=np.array(g, dtype=np.float64),
        AT=np.array(at, dtype=np.float64),
    )


def transform_for(m: int, r: int) -> WinogradTransform:
    """The paper's matrices for F(2x2,3x3), Cook-Toom matrices otherwise."""
    return f2x2_3x3() if (m, r) == (2, 3) else cook_toom(m, r)


def tile_grid(height: int, width: int, m: int) -> tuple[int, int]:
    """Number of output tiles (rows, columns) covering an H x W 'same' output: ceil(H/m), ceil(W/m)."""
    if height < 1 or width < 1:
        raise ConfigError(f"tile_grid: height and width must be >= 1, got {height}x{width}")
    return ceil_div(height, m), ceil_div(width, m)


def tile(x: NDArray[np.floating], transform: WinogradTransform) -> NDArray[np.floating]:
    """Cut a 'same'-padded map into overlapping p x p input tiles with stride m.

    x: (..., H, W). Returns a copy of shape (..., TH, TW, p, p) where TH, TW = tile_grid(H, W, m). The map
    is zero-padded by (r-1)//2 on the top/left and as far as the last tile needs on the bottom/right, so
    odd H or W give partially padded edge tiles.
    """
    m, r, p = transform.m, transform.r, transform.p
    height, width = x.shape[-2], x.shape[-1]
    th, tw = tile_grid(height, width, m)
    pad = (r - 1) // 2
    padded_h, padded_w = th * m + r - 1, tw * m + r - 1
    padded = np.zeros((*x.shape[:-2], padded_h, padded_w), dtype=x.dtype)
    padded[..., pad : pad + height, pad : pad + width] = x
    windows = np.lib.stride_tricks.sliding_window_view(padded, (p, p), axis=(-2, -1))
    return windows[..., ::m, ::m, :, :][..., :th, :tw, :, :].copy()


def untile(y: NDArray[np.floating], height: int, width: int) -> NDArray[np.floating]:
    """Inverse of the output tiling: (..., TH, TW, m, m) -> (..., H, W), cropping the padded edge."""
    th, tw, m = y.shape[-4], y.shape[-3], y.shape[-1]
    moved = np.moveaxis(y, -2, -3)  # (..., TH, m, TW, m)
    full = moved.reshape(*y.shape[:-4], th * m, tw * m)
    return full[..., :height, :width]


def input_transform(tiles: NDArray[np.floating], transform: WinogradTransform) -> NDArray[np.floating]:
    """V = B^T d B for every tile. tiles: (..., p, p) -> (..., p, p)."""
    return transform.BT @ tiles @ transform.BT.T


def weight_transform(kernels: NDArray[np.floating], transform: WinogradTransform) -> NDArray[np.floating]:
    """U = G g G^T for every kernel. kernels: (..., r, r) -> (..., p, p)."""
    return transform.G @ kernels @ transform.G.T


def output_transform(products: NDArray[np.floating], transform: WinogradTransform) -> NDArray[np.floating]:
    """Y = A^T M A for every tile. products: (..., p, p) -> (..., m, m)."""
    return transform.AT @ products @ transform.AT.T


def winograd_conv2d(
    x: NDArray[np.floating], weight: NDArray[np.floating], transform: WinogradTransform | None = None
) -> NDArray[np.float64]:
    """Stride-1 'same' correlation (what conv2d computes) by Winograd, for testing and reference.

    x: (N, C, H, W); weight: (K, C, r, r). Returns (N, K, H, W) float64.
    """
    tr = transform if transform is not None else f2x2_3x3()
    if weight.shape[-1] != tr.r or weight.shape[-2] != tr.r:
        raise ConfigError(f"winograd_conv2d: kernel must be {tr.r}x{tr.r}, got {weight.shape[-2:]}")
    height, width = x.shape[-2], x.shape[-1]
    v = input_transform(tile(x.astype(np.float64), tr), tr)  # (N, C, TH, TW, p, p)
    u = weight_transform(weight.astype(np.float64), tr)  # (K, C, p, p)
    m_products = np.einsum("kcab,nctsab->nktsab", u, v)
    return np.asarray(untile(output_transform(m_products, tr), height, width), dtype=np.float64)


def direct_conv2d(x: NDArray[np.floating], weight: NDArray[np.floating]) -> NDArray[np.float64]:
    """Stride-1 'same' correlation by direct summation (the oracle). x: (N,C,H,W); weight: (K,C,R,R)."""
    r = weight.shape[-1]
    pad = (r - 1) // 2
    height, width = x.shape[-2], x.shape[-1]
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, r - 1 - pad), (pad, r - 1 - pad)))
    out = np.zeros((x.shape[0], weight.shape[0], height, width), dtype=np.float64)
    for dy in range(r):
        for dx in range(r):
            window = padded[:, :, dy : dy + height, dx : dx + width]
            out += np.einsum("nchw,kc->nkhw", window, weight[:, :, dy, dx].astype(np.float64))
    return out
