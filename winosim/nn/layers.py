"""Winograd F(2x2,3x3) convolution layers with Winograd-domain pruning, in three modes.

A `WinogradConv2d` is a stride-1, padding-1 3x3 convolution that *includes the ReLU of its input*, because
where that ReLU sits is the whole point of Liu et al. (ICLR 2018):

- `spatial`: y = conv2d(ReLU(x), g). Weights g (K, C, 3, 3), prunable in the spatial domain.
- `native`: y = A^T [Prune(U) * (B^T ReLU(x) B)] A. Weights U (16, C, K) in the Winograd domain (U = G g G^T
  when converted from a spatial model); the transform fills in the zeros of ReLU(x).
- `winograd_relu`: y = A^T [Prune(Q) * ReLU(B^T x B)] A. Weights Q (16, C, K); the ReLU runs after the input
  transform, so the multiplied activations are sparse in the Winograd domain.

Winograd-domain weights are stored as (16, C, K), position index xi*4+nu, the layout of the paper's 16
batched matrix products. Pruning masks are boolean buffers of the weight's shape; the forward pass uses
weight * mask, so masked weights receive exactly zero gradient, and `winosim.nn.prune` zeroes them (and their
optimiser state) so they stay exactly zero.

Speed: the input transform B^T d B runs as 8 + 16 explicit additions on strided views of the padded map
(rows first, shared by vertically overlapping tiles, then columns), the element-wise stage as one batched
matrix product over the 16 positions, and the output transform A^T M A as 24 additions. The transforms'
backward passes are hand-written adjoints of the same additions (`torch.autograd.Function`, checked by
`gradcheck` in float64), so the gradients are eq. 5 of the paper; no pass writes over its own input (in bf16
such passes ran at half speed on an Intel CPU with AMX); all ops are autocast-safe (bfloat16 on CPU).

Precision: a transform of a bfloat16 or float16 tensor computes in float32 and rounds once, to the tensor's
dtype, as it stores its result (the ReLU of `winograd_relu` before that rounding), rather than after every
addition as a chain of reduced-precision tensor operations would: more accurate, and on an Intel CPU with AMX
the rounding after every addition cost the fused kernels (`winosim.nn.fused`) more than their memory traffic.
The eager functions below and the kernels follow the same rule, so they give the same bits. The 16 products
run in the tensors' dtype (bf16 under autocast, accumulating in float32 inside the GEMM).

Memory layout: the shapes below are logical; in memory every Winograd-domain tensor is *tiles-first*, channels
last (V is stored as (16, N, TH, TW, C), M as (16, N, TH, TW, K)), and the output map is channels-last. The
16 products then multiply (tiles x C) by (C x K), which runs about 3x faster than (K x C) by (C x tiles) for
C = 64 (benchmarks/bench_nn.py --products), and the transforms copy whole channel vectors; the values are the
same in any layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from winosim.nn.fused import kernels as fused_kernels
from winosim.nn.fused import layer_kernels
from winosim.nn.fused import usable as fused_usable
from winosim.winograd import f2x2_3x3
from winosim.winograd import tile_grid as winograd_tile_grid

Mode = Literal["spatial", "native", "winograd_relu"]
MODES: tuple[str, ...] = ("spatial", "native", "winograd_relu")
POSITIONS = 16  # F(2x2,3x3): 4x4 Winograd-domain positions per tile

# the paper's F(2x2,3x3) weight transform G, from winosim.winograd (B^T and A^T are written out as additions below)
_G = torch.from_numpy(f2x2_3x3().G.copy()).to(torch.float64)


def tile_grid(height: int, width: int) -> tuple[int, int]:
    """Output tiles (rows, columns) of F(2x2,3x3) covering an H x W 'same' output (`winosim.winograd.tile_grid`)."""
    return winograd_tile_grid(height, width, 2)


def _tiles_first(*shape: int, like: Tensor, zeros: bool = False) -> Tensor:
    """A new tensor of logical shape (P, C, N, TH, TW) or (2, 2, C, N, TH, TW) (any leading sizes, then C, N
    and the two tile dimensions) stored tiles-first, channels last: (..., N, TH, TW, C) in memory."""
    *lead, c, n, th, tw = shape
    storage = like.new_zeros((*lead, n, th, tw, c)) if zeros else like.new_empty((*lead, n, th, tw, c))
    k = len(lead)
    return storage.permute(*range(k), k + 3, k, k + 1, k + 2)


def _deinterleave(x: Tensor) -> Tensor:
    """Pad (N, C, H, W) for the tiles and split rows and columns by parity, as one copy:
    X[a, b, c, n, u, v] = padded[n, c, 2u + a, 2v + b], logical shape (2, 2, C, N, TH+1, TW+1), stored
    tiles-first (2, 2, N, TH+1, TW+1, C).

    Element (i, j) of tile (u, v) is then X[i % 2, j % 2, :, :, u + i // 2, v + j // 2], so every view the
    transform reads is a run of whole channel vectors (from a channels-last map the copy moves them whole too).
    """
    n, c, height, width = x.shape
    th, tw = tile_grid(height, width)
    xp = F.pad(x, (1, 2 * tw + 1 - width, 1, 2 * th + 1 - height))
    tiles = xp.permute(0, 2, 3, 1).reshape(n, th + 1, 2, tw + 1, 2, c).permute(2, 4, 0, 1, 3, 5).contiguous()
    return tiles.permute(0, 1, 5, 2, 3, 4)


_REDUCED = (torch.bfloat16, torch.float16)


def _widened(t: Tensor) -> Tensor:
    """t in the precision the transforms compute in (module docstring, Precision): float32 for a bfloat16 or
    float16 tensor, t itself otherwise."""
    return t.float() if t.dtype in _REDUCED else t


def input_transform_forward(x: Tensor, relu: bool = False) -> Tensor:
    """V = B^T d B for every 4x4 tile of a 'same'-padded map, by 32 explicit additions per tile; with `relu`,
    ReLU(B^T d B) (the ReLU before the rounding to x's dtype: module docstring, Precision).

    x: (N, C, H, W) -> V: (16, C, N, TH, TW), position index xi*4+nu, so that V.view(16, C, N*TH*TW) is the
    right operand of the 16 batched products. The row pass (B^T from the left, 4 additions per column) runs
    once per tile row on the whole de-interleaved map, shared by horizontally overlapping tiles; the column pass
    (B from the right) reads unit-stride views of its result.
    """
    dtype, x = x.dtype, _widened(x)
    n, c, height, width = x.shape
    th, tw = tile_grid(height, width)
    xd = _deinterleave(x)
    r = [xd[i % 2, ..., i // 2 : i // 2 + th, :] for i in range(4)]  # (2 col parities, C, N, TH, TW+1)
    rows = (r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3])
    v = _tiles_first(POSITIONS, c, n, th, tw, like=x)
    for i, t in enumerate(rows):
        col = [t[j % 2, ..., j // 2 : j // 2 + tw] for j in range(4)]  # (C, N, TH, TW)
        torch.sub(col[0], col[2], out=v[4 * i])
        torch.add(col[1], col[2], out=v[4 * i + 1])
        torch.sub(col[2], col[1], out=v[4 * i + 2])
        torch.sub(col[1], col[3], out=v[4 * i + 3])
    # out of place: in bf16 an in-place pass (relu_, or any op whose output is its input) ran at half the
    # speed of one writing a new tensor on an Intel CPU with AMX (docs/training.md, Performance)
    return (torch.relu(v) if relu else v).to(dtype)


def _overlap_add(a: Tensor, b: Tensor, out: Tensor, dim: int, *, subtract: bool = False) -> None:
    """out = a at offsets 0..T-1 plus (or minus) b at offsets 1..T along `dim`, where `out` has T+1 there.

    Written straight into `out` (its first slice a copy of a, its last b or -b, the overlap one addition), not
    accumulated into a zeroed buffer: the same values, bit for bit but for the sign of a zero (0 + a + b is
    a + b), in one pass instead of a fill and two read-modify-write passes."""
    t = a.shape[dim]
    out.narrow(dim, 0, 1).copy_(a.narrow(dim, 0, 1))
    inner = out.narrow(dim, 1, t - 1)
    if subtract:
        torch.sub(a.narrow(dim, 1, t - 1), b.narrow(dim, 0, t - 1), out=inner)
        torch.neg(b.narrow(dim, t - 1, 1), out=out.narrow(dim, t, 1))
    else:
        torch.add(a.narrow(dim, 1, t - 1), b.narrow(dim, 0, t - 1), out=inner)
        out.narrow(dim, t, 1).copy_(b.narrow(dim, t - 1, 1))


def _adjoint_b_pass(d: Sequence[Tensor], out: Tensor, dim: int) -> None:
    """Adjoint of one B^T pass over overlapping tiles: given the gradients d0..d3 of (x0-x2, x1+x2, x2-x1, x1-x3)
    at tile offsets 0..T-1 along `dim`, write the gradient of the de-interleaved input, (2 parities, ...,
    T+1 along `dim`): x_i is parity i % 2 at offset i // 2, and its gradient is d0, d1-d2+d3, d1+d2-d0, -d3."""
    d0, d1, d2, d3 = d
    _overlap_add(d0, d1 + d2 - d0, out[0], dim)  # x0 at offsets 0.., x2 at 1..
    _overlap_add(d1 - d2 + d3, d3, out[1], dim, subtract=True)  # x1 at 0.., x3 (gradient -d3) at 1..


def input_transform_backward(dv: Tensor, height: int, width: int) -> Tensor:
    """Adjoint of `input_transform_forward`: dV (16, C, N, TH, TW) -> dx (N, C, H, W), overlapping tiles summed
    (in float32 for a reduced-precision dV, rounded once to its dtype)."""
    dtype, dv = dv.dtype, _widened(dv)
    _, c, n, th, tw = dv.shape
    d_rows = []
    for i in range(4):  # column-pass adjoint -> gradient of row-pass output i, (2, C, N, TH, TW+1)
        dt = _tiles_first(2, c, n, th, tw + 1, like=dv)
        _adjoint_b_pass(dv[4 * i : 4 * i + 4].unbind(0), dt, dim=-1)
        d_rows.append(dt)
    # the row-pass adjoint writes the padded map in place: channels-last (N, 2TH+2, 2TW+2, C) in memory, seen
    # as the de-interleaved (a, b, C, N, TH+1, TW+1), so no further copy before the crop
    storage = dv.new_empty((n, th + 1, 2, tw + 1, 2, c))
    _adjoint_b_pass(d_rows, storage.permute(2, 4, 5, 0, 1, 3), dim=-2)
    dxp = storage.view(n, 2 * th + 2, 2 * tw + 2, c).permute(0, 3, 1, 2)
    # dense, so that the layers before (batch norm) take their fast channels-last kernels, not strided ones
    return dxp[:, :, 1 : 1 + height, 1 : 1 + width].contiguous(memory_format=torch.channels_last).to(dtype)


def output_transform_forward(m: Tensor, height: int, width: int) -> Tensor:
    """Y = A^T M A for every tile (24 additions per tile), reassembled into a map.

    m: (16, K, N, TH, TW) -> (N, K, H, W). The four output planes are written straight into their places of a
    channels-last map (stored (N, TH, 2, TW, 2, K)), so the map needs no further copy. In float32 for a
    reduced-precision M, rounded once to its dtype.
    """
    dtype, m = m.dtype, _widened(m)
    _, k, n, th, tw = m.shape
    s = [(m[j] + m[4 + j] + m[8 + j], m[4 + j] - m[8 + j] - m[12 + j]) for j in range(4)]  # A^T from the left
    storage = m.new_empty((n, th, 2, tw, 2, k))
    planes = storage.permute(2, 4, 5, 0, 1, 3)  # (2, 2, K, N, TH, TW)
    for a in range(2):
        torch.add(s[0][a] + s[1][a], s[2][a], out=planes[a, 0])
        torch.sub(s[1][a] - s[2][a], s[3][a], out=planes[a, 1])
    y = storage.to(dtype).view(n, 2 * th, 2 * tw, k).permute(0, 3, 1, 2)
    return y[:, :, :height, :width]


def output_transform_backward(dy: Tensor, th: int, tw: int) -> Tensor:
    """Adjoint of `output_transform_forward`: dY (N, K, H, W) -> dM (16, K, N, TH, TW) (in float32 for a
    reduced-precision dY, rounded once to its dtype)."""
    dtype, dy = dy.dtype, _widened(dy)
    n, k, height, width = dy.shape
    full = F.pad(dy, (0, 2 * tw - width, 0, 2 * th - height))
    tiles = full.permute(0, 2, 3, 1).reshape(n, th, 2, tw, 2, k).permute(2, 4, 0, 1, 3, 5).contiguous()
    planes = tiles.permute(0, 1, 5, 2, 3, 4)  # (2, 2, K, N, TH, TW), stored tiles-first
    dm = _tiles_first(POSITIONS, k, n, th, tw, like=dy)
    # A = [[1, 0], [1, 1], [1, -1], [0, -1]]: the gradient of position i (row) is A[i] . (dY_0, dY_1)
    rows = []
    for a in range(2):
        d0, d1 = planes[a, 0], planes[a, 1]
        rows.append((d0, d0 + d1, d0 - d1, -d1))  # gradient w.r.t. s[j][a], j = 0..3
    for j in range(4):
        r0, r1 = rows[0][j], rows[1][j]
        dm[j].copy_(r0)
        torch.add(r0, r1, out=dm[4 + j])
        torch.sub(r0, r1, out=dm[8 + j])
        torch.neg(r1, out=dm[12 + j])
    return dm.to(dtype)


def _input_transform(x: Tensor, relu: bool) -> Tensor:
    """V = B^T d B, or ReLU of it, by the fused kernel where it applies (a channels-last CPU map in float32 or
    bfloat16: `winosim.nn.fused`), else by `input_transform_forward`; the same values either way."""
    kernels = fused_kernels() if fused_usable(x) and x.is_contiguous(memory_format=torch.channels_last) else None
    if kernels is not None:
        return kernels.input_transform(x, relu).permute(0, 4, 1, 2, 3)
    return input_transform_forward(x, relu)


def _input_transform_adjoint(dv: Tensor, v: Tensor | None, height: int, width: int) -> Tensor:
    """dx from dV (first zeroed where V <= 0, when V is given: the Winograd-domain ReLU's backward) by the fused
    kernel where it applies (dV and V stored tiles-first on the CPU), else by threshold_backward and
    `input_transform_backward`."""
    storages = [t.permute(0, 2, 3, 4, 1) for t in (dv, v) if t is not None]
    apply = fused_usable(dv) and all(t.is_contiguous() and t.dtype == dv.dtype for t in storages)
    kernels = fused_kernels() if apply else None
    if kernels is not None:
        return kernels.input_transform_backward(storages[0], storages[1] if v is not None else None, height, width)
    if v is not None:
        # dv where v > 0, else 0: ReLU's own backward kernel (about 30x faster than masked_fill here)
        dv = torch.ops.aten.threshold_backward(dv, v, 0)
    return input_transform_backward(dv, height, width)


def _output_transform(m: Tensor, height: int, width: int) -> Tensor:
    """Y = A^T M A by the fused kernel where it applies (M stored tiles-first on the CPU, float32 or bfloat16),
    else by `output_transform_forward`."""
    _, k, n, th, tw = m.shape
    storage = m.permute(0, 2, 3, 4, 1)
    kernels = fused_kernels() if fused_usable(m) and storage.is_contiguous() else None
    if kernels is None:
        return output_transform_forward(m, height, width)
    y = kernels.output_transform(storage).view(n, 2 * th, 2 * tw, k).permute(0, 3, 1, 2)
    return y[:, :, :height, :width]


def _output_transform_adjoint(dy: Tensor, th: int, tw: int) -> Tensor:
    """dM from dY by the fused kernel where it applies (a channels-last CPU map), else by
    `output_transform_backward`."""
    mapped = dy.is_contiguous(memory_format=torch.channels_last) and tile_grid(dy.shape[-2], dy.shape[-1]) == (th, tw)
    kernels = fused_kernels() if fused_usable(dy) and mapped else None
    if kernels is None:
        return output_transform_backward(dy, th, tw)
    return kernels.output_transform_backward(dy).permute(0, 4, 1, 2, 3)


class _InputTransform(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.height, ctx.width = x.shape[-2], x.shape[-1]
        return _input_transform(x, relu=False)

    @staticmethod
    def backward(ctx: Any, dv: Tensor) -> Tensor:
        return _input_transform_adjoint(dv, None, ctx.height, ctx.width)


class _InputTransformReLU(torch.autograd.Function):
    """ReLU(B^T d B) in one node: only the rectified V is kept for the backward, which masks the gradient with
    it before the adjoint transform (no autograd node, and no saved copy, for the unrectified V)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.height, ctx.width = x.shape[-2], x.shape[-1]
        v = _input_transform(x, relu=True)
        ctx.save_for_backward(v)
        return v

    @staticmethod
    def backward(ctx: Any, dv: Tensor) -> Tensor:
        (v,) = ctx.saved_tensors
        return _input_transform_adjoint(dv, v, ctx.height, ctx.width)


class _OutputTransform(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, m: Tensor, height: int, width: int) -> Tensor:
        ctx.tiles = m.shape[-2], m.shape[-1]
        return _output_transform(m, height, width)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor, None, None]:
        th, tw = ctx.tiles
        return _output_transform_adjoint(dy, th, tw), None, None


def _blocked_layer_kernels(x: Tensor) -> Any | None:
    """The fused kernels where the whole layer runs blocked (`winosim.nn.fused.layer_kernels`): a channels-last
    CPU map in float32 or bfloat16 that is already in the products' dtype (bf16 under CPU bf16 autocast, else
    its own); None elsewhere (the layer then runs its transforms and one `bmm`)."""
    if not (fused_usable(x) and x.is_contiguous(memory_format=torch.channels_last)):
        return None
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    return layer_kernels() if dtype == x.dtype else None


class _BlockedLayer(torch.autograd.Function):
    """Y = A^T [W * V] A with V = ReLU(B^T x B) (relu), B^T ReLU(x) B (input_relu) or B^T x B, by the fused
    kernels a block of images at a time (`winograd_forward` / `winograd_backward` of `winosim.nn.fused`): nothing
    of the Winograd domain, nor ReLU(x), is kept for the backward pass but x and the weight in x's dtype; the
    gradient of the (float32) weight comes back in its dtype."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, relu: bool, input_relu: bool, kernels: Any) -> Tensor:
        w = weight.detach().to(x.dtype).contiguous()
        ctx.save_for_backward(x, w)
        ctx.relus, ctx.kernels, ctx.weight_dtype = (relu, input_relu), kernels, weight.dtype
        n, _, height, width = x.shape
        th, tw = tile_grid(height, width)
        y = kernels.winograd_forward(x, w, relu, input_relu)
        y = y.view(n, 2 * th, 2 * tw, w.shape[2]).permute(0, 3, 1, 2)
        return y[:, :, :height, :width]

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor, Tensor, None, None, None]:
        x, w = ctx.saved_tensors
        dy = dy.to(x.dtype).contiguous(memory_format=torch.channels_last)
        dx, dw = ctx.kernels.winograd_backward(x, w, dy, *ctx.relus)
        return dx, dw.to(ctx.weight_dtype), None, None, None


def input_transform(x: Tensor) -> Tensor:
    """Differentiable V = B^T d B: (N, C, H, W) -> (16, C, N, TH, TW) (see `input_transform_forward`)."""
    return _InputTransform.apply(x)


def input_transform_relu(x: Tensor) -> Tensor:
    """Differentiable ReLU(B^T d B): (N, C, H, W) -> (16, C, N, TH, TW)."""
    return _InputTransformReLU.apply(x)


def output_transform(m: Tensor, height: int, width: int) -> Tensor:
    """Differentiable Y = A^T M A: (16, K, N, TH, TW) -> (N, K, H, W) (see `output_transform_forward`)."""
    return _OutputTransform.apply(m, height, width)


def spatial_to_winograd(weight: Tensor) -> Tensor:
    """U = G g G^T for every kernel. weight (K, C, 3, 3) -> (16, C, K), computed in float64 then cast back."""
    g = _G.to(device=weight.device)
    u = torch.einsum("ar,kcrs,bs->abck", g, weight.detach().to(torch.float64), g)
    return u.reshape(POSITIONS, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


def winograd_init_std(in_channels: int) -> float:
    """Standard deviation of the paper's Winograd weight initialisation: variance scaling with factor 2*9/32
    on a fan-in of 16*C (TensorFlow's convention for a (16, C, K) tensor)."""
    return math.sqrt(2.0 * 9.0 / 32.0 / (POSITIONS * in_channels))


class WinogradConv2d(nn.Module):
    """3x3 stride-1 'same' convolution including its input ReLU, in one of the three modes (module docstring).

    Parameters: `weight` (K, C, 3, 3) for `spatial`, (16, C, K) for `native` and `winograd_relu`; no bias (a
    batch norm follows). Buffer `weight_mask` (bool, the weight's shape): False = pruned.

    Buffer `position_scale`, None unless set (Winograd modes only, `set_position_scale`): 16 positive factors;
    the layer then multiplies with Q = weight * position_scale (per position xi), so the trained parameter is Q
    in rescaled coordinates (`winosim.nn.precondition`) while the function, the pruning (by |Q|) and the
    extracted weights stay the paper's. A state dict carries the buffer only when it is set.
    """

    weight_mask: Tensor
    position_scale: Tensor | None

    def __init__(self, in_channels: int, out_channels: int, mode: Mode) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"WinogradConv2d: mode must be one of {MODES}, got {mode!r}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"WinogradConv2d: channels must be >= 1, got C={in_channels}, K={out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mode: Mode = mode
        if mode == "spatial":
            weight = torch.empty(out_channels, in_channels, 3, 3)
            nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")
        else:
            weight = torch.randn(POSITIONS, in_channels, out_channels) * winograd_init_std(in_channels)
        self.weight = nn.Parameter(weight)
        self.register_buffer("weight_mask", torch.ones_like(weight, dtype=torch.bool))
        self.register_buffer("position_scale", None)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, mode={self.mode}"

    def set_position_scale(self, scale: Tensor | None) -> None:
        """Install 16 positive per-position factors (or None: none). Changes the function unless the caller
        divides `weight` by the same factors (`winosim.nn.precondition` does)."""
        if scale is not None:
            if self.mode == "spatial":
                raise ValueError("WinogradConv2d: a spatial layer has no Winograd positions to scale")
            if scale.shape != (POSITIONS,) or not bool(torch.all(torch.isfinite(scale) & (scale > 0))):
                raise ValueError(f"WinogradConv2d: position_scale must be 16 finite positive factors, got {scale}")
            scale = scale.detach().to(device=self.weight.device, dtype=torch.float32).clone()
        self.position_scale = scale

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        has_scale = prefix + "position_scale" in state_dict
        if self.mode != "spatial":  # a spatial layer leaves the key unexpected: load_state_dict reports it
            self.set_position_scale(torch.ones(POSITIONS) if has_scale else None)  # the load fills it in
        super()._load_from_state_dict(state_dict, prefix, *args)
        scale = self.position_scale
        if scale is not None and not bool(torch.all(torch.isfinite(scale) & (scale > 0))):
            error_msgs = args[-1]
            error_msgs.append(f"{prefix}position_scale: must be 16 finite positive factors, got {scale.tolist()}")

    def effective_weight(self) -> Tensor:
        """The weight in the paper's coordinates, before masking: g (spatial), or Q = weight * position_scale."""
        if self.position_scale is None:
            return self.weight
        return self.weight * self.position_scale.to(self.weight.dtype).view(POSITIONS, 1, 1)

    def masked_weight(self) -> Tensor:
        """The weight the layer multiplies with: effective weight * mask (gradient flows only to unmasked
        entries)."""
        return self.effective_weight() * self.weight_mask

    def winograd_activation(self, x: Tensor) -> Tensor:
        """The activations the element-wise stage multiplies, (16, C, N, TH, TW): ReLU(B^T x B) for
        winograd_relu, B^T ReLU(x) B for native. Not defined for the spatial mode."""
        if self.mode == "winograd_relu":
            return input_transform_relu(x)
        if self.mode == "native":
            return input_transform(torch.relu(x))
        raise ValueError("WinogradConv2d: a spatial layer has no Winograd-domain activation")

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "spatial":
            return F.conv2d(torch.relu(x), self.masked_weight(), padding=1)
        if self.mode == "winograd_relu":
            return self.winograd_layer(x, relu=True)
        return self.winograd_layer(x, input_relu=True)

    def winograd_layer(self, x: Tensor, *, relu: bool = False, input_relu: bool = False) -> Tensor:
        """Y = A^T [masked weight * V] A with V = ReLU(B^T x B) (relu), B^T ReLU(x) B (input_relu) or B^T x B.
        Blocked in the fused kernels where they apply (`_blocked_layer_kernels`: CPU training maps), else the
        transforms and `winograd_forward`: the same computation, equal to rounding (the blocks' GEMMs have fewer
        rows, and the weight gradient sums one product per block)."""
        if relu and input_relu:
            raise ValueError("WinogradConv2d: a ReLU before or after the input transform, not both")
        kernels = _blocked_layer_kernels(x)
        if kernels is not None:
            return _BlockedLayer.apply(x, self.masked_weight(), relu, input_relu, kernels)
        v = input_transform_relu(x) if relu else input_transform(torch.relu(x) if input_relu else x)
        return self.winograd_forward(v, x.shape[-2], x.shape[-1])

    def winograd_forward(self, v: Tensor, height: int, width: int) -> Tensor:
        """The element-wise stage and the output transform: Y = A^T [masked weight * V] A, from the
        multiplied activations V (16, C, N, TH, TW) to the (N, K, H, W) map (channels-last in memory)."""
        p, c, n, th, tw = v.shape
        w = self.masked_weight()
        if not torch.is_autocast_enabled(v.device.type):
            w = w.to(v.dtype)
        # 16 batched GEMMs (tiles x C) @ (C x K); a view of a tiles-first V, a copy of any other
        m = torch.bmm(v.permute(0, 2, 3, 4, 1).reshape(p, n * th * tw, c), w)
        return output_transform(m.view(p, n, th, tw, self.out_channels).permute(0, 4, 1, 2, 3), height, width)
