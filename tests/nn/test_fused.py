"""The fused transform kernels (winosim/nn/fused.cpp) give the eager transforms' results bit for bit.

The oracle is the eager layer (`input_transform_forward`, `output_transform_forward`, `output_transform_backward`,
themselves checked against torch's conv2d and gradcheck in tests/nn/test_layers.py): both compute in float32
in the same order of additions and round once to the tensor's dtype (the layer's precision rule), so every
finite result has the same bits, NaNs stay NaNs, and a layer trains the same with or without them. Skipped
where the kernels cannot be built (no C++ compiler or ninja).
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
import torch
from torch import Tensor

from winosim.nn import fused
from winosim.nn.layers import (
    WinogradConv2d,
    _blocked_layer_kernels,
    _tiles_first,
    input_transform_backward,
    input_transform_forward,
    output_transform_backward,
    output_transform_forward,
    tile_grid,
)

kernels = fused.kernels()
pytestmark = pytest.mark.skipif(kernels is None, reason="the fused kernels could not be built here")

DTYPES = [torch.float32, torch.bfloat16]
SHAPES = [(2, 5, 7, 9), (3, 8, 8, 8), (1, 64, 6, 5), (2, 4, 1, 1), (2, 16, 2, 3)]  # N, C, H, W: odd sizes too


def _values(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> Tensor:
    """Random values with the awkward ones mixed in: signed zeros, infinities, NaN, subnormals, large and tiny."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator) * torch.exp2(torch.randint(-6, 7, shape, generator=generator))
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-39, -3e-40, 3e38, 1e-30])
    pick = torch.randint(0, 40, shape, generator=generator)
    x = torch.where(pick < len(special), special[pick.clamp(max=len(special) - 1)], x)
    return x.to(dtype)


def _bits(t: Tensor) -> Tensor:
    return t.contiguous().view(torch.int16 if t.dtype == torch.bfloat16 else torch.int32)


def assert_same(actual: Tensor, expected: Tensor) -> None:
    """Same shape and strides; NaN where the eager result is NaN; every other element the same bits."""
    assert actual.shape == expected.shape and actual.stride() == expected.stride()
    nan = expected.isnan()
    assert torch.equal(actual.isnan(), nan)
    assert torch.equal(_bits(actual)[~nan], _bits(expected)[~nan])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("relu", [False, True])
def test_input_transform_is_the_eager_one(dtype: torch.dtype, shape: tuple[int, ...], relu: bool) -> None:
    x = _values(shape, dtype, seed=sum(shape)).contiguous(memory_format=torch.channels_last)
    expected = input_transform_forward(x, relu)
    assert kernels is not None
    assert_same(kernels.input_transform(x, relu).permute(0, 4, 1, 2, 3), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_output_transform_and_its_adjoint_are_the_eager_ones(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    n, k, height, width = shape
    th, tw = tile_grid(height, width)
    m = _tiles_first(16, k, n, th, tw, like=torch.empty(0, dtype=dtype))
    m.copy_(_values(tuple(m.shape), dtype, seed=1 + sum(shape)))
    assert kernels is not None
    y = kernels.output_transform(m.permute(0, 2, 3, 4, 1)).view(n, 2 * th, 2 * tw, k).permute(0, 3, 1, 2)
    assert_same(y[:, :, :height, :width], output_transform_forward(m, height, width))
    dy = _values(shape, dtype, seed=2 + sum(shape)).contiguous(memory_format=torch.channels_last)
    assert_same(kernels.output_transform_backward(dy).permute(0, 4, 1, 2, 3), output_transform_backward(dy, th, tw))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [*SHAPES, (2, 8, 3, 1)])
@pytest.mark.parametrize("mask", [False, True])
def test_input_transform_adjoint_is_the_eager_one(dtype: torch.dtype, shape: tuple[int, ...], mask: bool) -> None:
    """The adjoint with its overlaps of neighbouring tiles, and (mask) the Winograd-domain ReLU's backward
    before it: threshold_backward then `input_transform_backward`."""
    n, c, height, width = shape
    th, tw = tile_grid(height, width)
    dv, v = (_tiles_first(16, c, n, th, tw, like=torch.empty(0, dtype=dtype)) for _ in range(2))
    dv.copy_(_values(tuple(dv.shape), dtype, seed=3 + sum(shape)))
    v.copy_(_values(tuple(v.shape), dtype, seed=4 + sum(shape)))
    expected = input_transform_backward(torch.ops.aten.threshold_backward(dv, v, 0) if mask else dv, height, width)
    assert kernels is not None
    stored = v.permute(0, 2, 3, 4, 1) if mask else None
    assert_same(kernels.input_transform_backward(dv.permute(0, 2, 3, 4, 1), stored, height, width), expected)


@pytest.mark.parametrize("mode", ["native", "winograd_relu"])
def test_a_layer_trains_the_same_with_and_without_the_kernels(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward and backward of a layer under bf16 autocast, as in training, with the transform kernels (the layer
    unblocked) and without any: the same output and gradients."""
    results = []
    for setting in ("transforms", "0"):
        monkeypatch.setenv(fused.ENV, setting)
        torch.manual_seed(0)
        layer = WinogradConv2d(16, 8, mode)  # type: ignore[arg-type]
        x = torch.randn(4, 16, 9, 10).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        x.requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(x)
        y.backward(torch.randn_like(y).contiguous(memory_format=torch.channels_last))
        assert layer.weight.grad is not None and x.grad is not None
        results.append((y.detach(), x.grad, layer.weight.grad))
    for with_kernels, eager in zip(*results, strict=True):
        assert torch.equal(with_kernels, eager)


def _layer_and_input(mode: str, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[WinogradConv2d, Tensor]:
    torch.manual_seed(0)
    layer = WinogradConv2d(shape[1], 24, mode)  # type: ignore[arg-type]
    return layer, (torch.randn(shape) * 2).to(dtype)


def _output_gradient(shape: torch.Size, dtype: torch.dtype) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype)


def _layer_run(
    mode: str, shape: tuple[int, ...], dtype: torch.dtype, setting: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Tensor, Tensor, Tensor]:
    """Output, dx and dW of one forward + backward of the seeded layer on a channels-last map in `dtype` (under
    bf16 autocast for bf16, as in training), with WINOSIM_FUSED=`setting`."""
    monkeypatch.setenv(fused.ENV, setting)
    layer, x = _layer_and_input(mode, shape, dtype)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        y = layer(x)
    y.backward(_output_gradient(y.shape, dtype).contiguous(memory_format=torch.channels_last))
    assert layer.weight.grad is not None and x.grad is not None
    return y.detach(), x.grad, layer.weight.grad


@pytest.mark.parametrize("mode", ["native", "winograd_relu"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(20, 64, 32, 32), (5, 16, 7, 9), (3, 8, 1, 2)])
def test_the_blocked_layer_is_the_unblocked_one(
    mode: str, dtype: torch.dtype, shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole layer a block of images at a time (WINOSIM_FUSED=1; on two threads, 20 images of 64 channels at
    32x32 in bf16 are three blocks, one thread taking two) computes what the unblocked layer does: its output,
    dx and dW are as close to the float64 layer's (on the same rounded inputs) as the unblocked layer's. Not bit
    for bit: a block's products are a GEMM of fewer rows, for which the library may pick another kernel (fp32
    outputs of 3 x 1 x 2 maps differ in the last bit), and dW sums one product per block."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        blocked = _layer_run(mode, shape, dtype, "1", monkeypatch)
        unblocked = _layer_run(mode, shape, dtype, "transforms", monkeypatch)
    finally:
        torch.set_num_threads(before)
    layer, x = _layer_and_input(mode, shape, dtype)
    layer.double()
    x = x.double().requires_grad_()
    y = layer(x)
    y.backward(_output_gradient(y.shape, dtype).double())
    assert layer.weight.grad is not None and x.grad is not None
    slack = 1e-6 if dtype == torch.float32 else 1e-3
    for got, reference, exact in zip(blocked, unblocked, (y.detach(), x.grad, layer.weight.grad), strict=True):
        scale = exact.abs().max()
        error = float((got.double() - exact).abs().max() / scale)
        assert error <= 2 * float((reference.double() - exact).abs().max() / scale) + slack


def test_a_relu_before_and_after_the_transform_is_refused() -> None:
    layer = WinogradConv2d(8, 8, "native")
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="not both"):
        layer.winograd_layer(x, relu=True, input_relu=True)
    assert kernels is not None
    with pytest.raises(RuntimeError, match="not both"):
        kernels.winograd_forward(x, torch.zeros(16, 8, 8), True, True)


def test_only_training_maps_take_the_blocked_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A channels-last CPU map in the products' dtype runs blocked; a float32 map under bf16 autocast (its
    transforms would round differently), a contiguous map, float64 and WINOSIM_FUSED=transforms do not."""
    bf16 = torch.randn(2, 8, 6, 6).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    fp32 = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    assert _blocked_layer_kernels(fp32) is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _blocked_layer_kernels(bf16) is not None
        assert _blocked_layer_kernels(fp32) is None
    assert _blocked_layer_kernels(fp32.contiguous()) is None
    assert _blocked_layer_kernels(fp32.double()) is None
    monkeypatch.setenv(fused.ENV, "transforms")
    assert _blocked_layer_kernels(fp32) is None
    assert fused.kernels() is not None


def test_other_tensors_take_the_eager_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A map that is not channels-last, or float64 (gradcheck): the eager transforms, the same values."""
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    assert not fused.usable(x)
    monkeypatch.setenv(fused.ENV, "0")
    assert fused.kernels() is None
