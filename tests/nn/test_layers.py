"""The Winograd layer: what each mode computes, checked against torch's conv2d and a slow reference written
from the paper's equations (numpy, winosim.winograd), plus gradients and masking."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
import torch
import torch.nn.functional as F

from winosim.nn.layers import (
    Mode,
    WinogradConv2d,
    _overlap_add,
    input_transform,
    input_transform_backward,
    input_transform_forward,
    input_transform_relu,
    output_transform,
    output_transform_backward,
    output_transform_forward,
    spatial_to_winograd,
    tile_grid,
)
from winosim.winograd import f2x2_3x3, tile, untile

SIZES = [(8, 8), (7, 5), (1, 1), (4, 3), (6, 9)]


def _layer(mode: Mode, c: int, k: int, seed: int = 0) -> WinogradConv2d:
    torch.manual_seed(seed)
    return WinogradConv2d(c, k, mode).double()


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_native_with_transformed_kernel_equals_conv2d_of_relu(height: int, width: int) -> None:
    """native with U = G g G^T is conv2d(ReLU(x), g), edge tiles and odd sizes included."""
    torch.manual_seed(1)
    x = torch.randn(2, 5, height, width, dtype=torch.float64)
    g = torch.randn(6, 5, 3, 3, dtype=torch.float64)
    layer = _layer("native", 5, 6)
    with torch.no_grad():
        layer.weight.copy_(spatial_to_winograd(g))
    torch.testing.assert_close(layer(x), F.conv2d(torch.relu(x), g, padding=1), rtol=1e-12, atol=1e-12)


def test_spatial_mode_is_conv2d_of_relu() -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    layer = _layer("spatial", 4, 3)
    torch.testing.assert_close(layer(x), F.conv2d(torch.relu(x), layer.weight, padding=1))


def _reference_winograd_relu(x: np.ndarray, q_pck: np.ndarray) -> np.ndarray:
    """Y = A^T [ sum_c Q ⊙ ReLU(B^T d B) ] A per tile, straight from the equations (numpy float64)."""
    tr = f2x2_3x3()
    d = tile(x, tr)  # (N, C, TH, TW, 4, 4)
    v = np.maximum(tr.BT @ d @ tr.BT.T, 0.0)
    q = q_pck.reshape(4, 4, q_pck.shape[1], q_pck.shape[2])  # (xi, nu, C, K)
    m = np.einsum("abck,nctsab->nktsab", q, v)
    y = tr.AT @ m @ tr.AT.T  # (N, K, TH, TW, 2, 2)
    return untile(y, x.shape[2], x.shape[3])


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_winograd_relu_matches_reference_from_the_equations(height: int, width: int) -> None:
    torch.manual_seed(3)
    x = torch.randn(3, 4, height, width, dtype=torch.float64)
    layer = _layer("winograd_relu", 4, 5)
    expected = _reference_winograd_relu(x.numpy(), layer.weight.detach().numpy())
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_input_transform_layout_and_values() -> None:
    """V[xi*4+nu, c, n, th, tw] = (B^T d B)[xi, nu] of tile (th, tw) of channel c of image n."""
    torch.manual_seed(4)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    tr = f2x2_3x3()
    expected = tr.BT @ tile(x.numpy(), tr) @ tr.BT.T  # (N, C, TH, TW, 4, 4)
    v = input_transform(x).numpy()  # (16, C, N, TH, TW)
    np.testing.assert_allclose(v, expected.reshape(*expected.shape[:4], 16).transpose(4, 1, 0, 2, 3), atol=1e-12)


@pytest.mark.parametrize("mode", ["native", "winograd_relu", "spatial"])
def test_gradcheck_float64(mode: Mode) -> None:
    """Autograd through the hand-written transform adjoints equals finite differences (input and weight)."""
    torch.manual_seed(5)
    layer = _layer(mode, 3, 2)
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp, w: _with_weight(layer, w)(inp), (x, layer.weight))


def _with_weight(layer: WinogradConv2d, weight: torch.Tensor):
    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, {"weight": weight}, (x,))

    return run


def test_transform_adjoints_gradcheck() -> None:
    torch.manual_seed(6)
    x = torch.randn(1, 2, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(input_transform, (x,))
    assert torch.autograd.gradcheck(input_transform_relu, (x,))
    torch.testing.assert_close(input_transform_relu(x), torch.relu(input_transform(x)))
    m = torch.randn(16, 2, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: output_transform(t, 5, 7), (m,))


@pytest.mark.parametrize("tiles", [1, 2, 5])
@pytest.mark.parametrize("dim", [-1, -2])
@pytest.mark.parametrize("subtract", [False, True])
def test_overlap_add_is_the_zeroed_buffer_accumulation_bit_for_bit(tiles: int, dim: int, subtract: bool) -> None:
    # the adjoint writes each overlap as one addition instead of accumulating into zeros: the same bits in bf16
    # (operands without zeros; a zero's sign may differ: -0 written where 0 + -0 = +0 was)
    torch.manual_seed(tiles)
    shape = [3, 4, 4]
    shape[dim] = tiles
    a, b = (torch.randn(shape).to(torch.bfloat16) for _ in range(2))
    out_shape = list(shape)
    out_shape[dim] = tiles + 1
    expected = torch.zeros(out_shape, dtype=torch.bfloat16)
    expected.narrow(dim, 0, tiles).add_(a)
    expected.narrow(dim, 1, tiles).add_(-b if subtract else b)
    out = torch.full(out_shape, float("nan"), dtype=torch.bfloat16)  # every element must be written
    _overlap_add(a, b, out, dim, subtract=subtract)
    assert torch.equal(out.view(torch.int16), expected.view(torch.int16))


@pytest.mark.parametrize("mode", ["native", "winograd_relu", "spatial"])
def test_masked_weights_get_no_gradient(mode: Mode) -> None:
    layer = _layer(mode, 4, 3)
    mask = torch.rand(layer.weight.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    layer.weight_mask.copy_(mask)
    layer(torch.randn(2, 4, 6, 6, dtype=torch.float64)).square().sum().backward()
    assert layer.weight.grad is not None
    assert torch.all(layer.weight.grad[~mask] == 0)
    assert torch.count_nonzero(layer.weight.grad[mask]) > 0


@pytest.mark.parametrize("mode", ["native", "winograd_relu"])
def test_bfloat16_autocast_is_close_to_float32(mode: Mode) -> None:
    torch.manual_seed(7)
    layer = WinogradConv2d(16, 8, mode)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        exact = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            approx = layer(x)
    assert approx.shape == exact.shape
    assert float((approx.float() - exact).norm() / exact.norm()) < 0.05
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x.requires_grad_()).float().sum().backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


def _bf16_values(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """bfloat16 values of magnitude 2^-4..2^4: any sum of 16 of them is exact in float32 (24-bit significand)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator).clamp(-1.9, 1.9)
    return (x * torch.exp2(torch.randint(-4, 4, shape, generator=generator).float())).to(torch.bfloat16)


@pytest.mark.parametrize("relu", [False, True])
def test_reduced_precision_transforms_round_once(relu: bool) -> None:
    """The precision rule (module docstring of winosim.nn.layers): a bf16 transform and each adjoint is the exact
    (float64) result rounded once to bf16, not a chain of bf16 additions each rounded (which differs here)."""
    n, c, height, width = 2, 5, 7, 6
    th, tw = tile_grid(height, width)
    x = _bf16_values((n, c, height, width), seed=0)
    exact = input_transform_forward(x.double(), relu)
    assert torch.equal(input_transform_forward(x, relu), exact.to(torch.bfloat16))
    m = _bf16_values((16, c, n, th, tw), seed=1)
    assert torch.equal(
        output_transform_forward(m, height, width),
        output_transform_forward(m.double(), height, width).to(torch.bfloat16),
    )
    dv = _bf16_values((16, c, n, th, tw), seed=2)
    assert torch.equal(
        input_transform_backward(dv, height, width),
        input_transform_backward(dv.double(), height, width).to(torch.bfloat16),
    )
    dy = _bf16_values((n, c, height, width), seed=3)
    assert torch.equal(
        output_transform_backward(dy, th, tw), output_transform_backward(dy.double(), th, tw).to(torch.bfloat16)
    )
    # the rule matters: rounding after each addition, as bf16 tensor arithmetic does, gives other values
    chained = (x[:, :, 0] - x[:, :, 2]) - (x[:, :, 1] + x[:, :, 2])
    assert not torch.equal(
        chained, ((x[:, :, 0].double() - x[:, :, 2]) - (x[:, :, 1].double() + x[:, :, 2])).to(torch.bfloat16)
    )


def test_winograd_weight_shape_and_init_scale() -> None:
    layer = WinogradConv2d(64, 32, "winograd_relu")
    assert layer.weight.shape == (16, 64, 32)
    assert layer.weight_mask.dtype == torch.bool and bool(layer.weight_mask.all())
    assert float(layer.weight.detach().std()) == pytest.approx((2 * 9 / 32 / (16 * 64)) ** 0.5, rel=0.05)
