"""Per-position preconditioning (winosim.nn.precondition): the function, the pruning and the checkpoints stay
the paper's; only the coordinates SGD works in change, by exactly the scale the docstring states."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

pytest.importorskip("torch")
import torch

from winosim.errors import ConfigError
from winosim.nn.data import load_dataset
from winosim.nn.layers import POSITIONS, WinogradConv2d
from winosim.nn.models import WinoNet, build_model
from winosim.nn.precondition import calibrate_position_scales, position_rms, scales_from_rms
from winosim.nn.prune import prune_network
from winosim.nn.train import (
    CheckpointError,
    TrainConfig,
    load_model_state,
)


def _images(data: Path, count: int = 16) -> torch.Tensor:
    images, _ = load_dataset(data, "train").take(range(count))
    return images


def _calibrated(data: Path, mode: str = "winograd_relu") -> tuple[WinoNet, WinoNet, torch.Tensor]:
    torch.manual_seed(0)
    plain = build_model("vgg_nagadomi", mode, dropout=False)
    scaled = copy.deepcopy(plain)
    x = _images(data)
    calibrate_position_scales(scaled, x)
    return plain, scaled, x


def _scale(layer: WinogradConv2d) -> torch.Tensor:
    assert layer.position_scale is not None
    return layer.position_scale


def test_scales_are_powers_of_two_near_geomean_over_rms_and_dead_positions_keep_one() -> None:
    rms = torch.tensor([1.0, 4.0, 3.0] + [2.0] * 12 + [0.0], dtype=torch.float64)
    scale = scales_from_rms(rms)
    geomean = torch.exp(torch.log(rms[:15]).mean())
    exact = geomean / rms[:15]
    assert torch.equal(torch.exp2(torch.round(torch.log2(scale))), scale)  # powers of two
    assert bool(torch.all((scale[:15] / exact >= 2**-0.5) & (scale[:15] / exact <= 2**0.5)))  # the nearest ones
    assert scale[15] == 1.0
    assert torch.equal(scales_from_rms(torch.zeros(POSITIONS, dtype=torch.float64)), torch.ones(POSITIONS).double())


def test_calibration_keeps_the_function_and_the_batch_norm_statistics(cifar_data: Path) -> None:
    plain, scaled, x = _calibrated(cifar_data)
    for name, value in plain.state_dict().items():
        if "running" in name or "num_batches" in name:
            assert torch.equal(value, scaled.state_dict()[name]), name
    plain.eval(), scaled.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), scaled(x))  # bit for bit: the scales are powers of two
    for (_, a), (_, b) in zip(plain.winograd_modules(), scaled.winograd_modules(), strict=True):
        assert a.position_scale is None and b.position_scale is not None
        assert torch.equal(a.effective_weight(), b.effective_weight())


def test_scaled_activations_have_one_rms_per_layer(cifar_data: Path) -> None:
    """After calibration r_p * s_p is the same at every position (the geometric mean of r) within the rounding
    of s_p to a power of two, per layer."""
    _, scaled, x = _calibrated(cifar_data)
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        layer.register_forward_hook(
            lambda m, i, o, name=geom.name: seen.__setitem__(name, position_rms(m.winograd_activation(i[0])))
        )
        for geom, layer in scaled.winograd_modules()
    ]
    scaled.train()
    with torch.no_grad():
        scaled(x)
    for handle in hooks:
        handle.remove()
    for geom, layer in scaled.winograd_modules():
        balanced = seen[geom.name] * _scale(layer).double()
        geomean = torch.exp(torch.log(seen[geom.name]).mean())
        assert bool(torch.all((balanced / geomean - 1).abs() <= 2**0.5 - 1 + 1e-9)), geom.name
    # at initialisation only the first Winograd layer sees the image's own correlations: unequal r there
    (_, first), *_ = scaled.winograd_modules()
    assert float(_scale(first).max() / _scale(first).min()) >= 2


def test_sgd_on_the_stored_weight_is_sgd_on_q_scaled_by_s_squared(cifar_data: Path) -> None:
    """dL/dweight = s * dL/dQ, so one SGD step changes Q by s^2 times the plain step."""
    plain, scaled, x = _calibrated(cifar_data)
    y = torch.arange(x.shape[0]) % 10
    for model in (plain, scaled):
        model.train()
        torch.nn.functional.cross_entropy(model(x), y).backward()
    for (_, a), (_, b) in zip(plain.winograd_modules(), scaled.winograd_modules(), strict=True):
        s = _scale(b).view(POSITIONS, 1, 1)
        assert a.weight.grad is not None and b.weight.grad is not None
        assert torch.equal(b.weight.grad, s * a.weight.grad)  # exact: multiplying by a power of two


def test_recalibration_moves_the_momentum_with_the_weight(cifar_data: Path) -> None:
    _, scaled, x = _calibrated(cifar_data)
    (_, layer), *_ = scaled.winograd_modules()
    optimizer = torch.optim.SGD(scaled.parameters(), lr=0.1, momentum=0.9)
    y = torch.arange(x.shape[0]) % 10
    torch.nn.functional.cross_entropy(scaled(x), y).backward()
    optimizer.step()
    old = _scale(layer).clone()
    layer.weight.data.mul_(old.view(POSITIONS, 1, 1))  # back to scale 1, Q unchanged
    layer.set_position_scale(None)
    velocity = optimizer.state[layer.weight]["momentum_buffer"].clone()
    q = layer.effective_weight().detach().clone()
    calibrate_position_scales(scaled, x, optimizer)
    new = _scale(layer).view(POSITIONS, 1, 1)
    assert torch.equal(layer.effective_weight(), q)
    assert torch.equal(optimizer.state[layer.weight]["momentum_buffer"], velocity / new)


def test_pruning_keeps_the_largest_q_not_the_largest_stored_weight() -> None:
    model = build_model("vgg_nagadomi", "winograd_relu", dropout=False)
    (_, layer), *_ = model.winograd_modules()
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.weight[0].fill_(2.0)  # stored weight largest at position 0 ...
        layer.set_position_scale(torch.tensor([0.1] + [1.0] * 15))  # ... but its Q is the smallest
    prune_network(model, 0.5)
    assert not bool(layer.weight_mask[0].any())
    assert int(layer.weight_mask.sum()) == layer.weight.numel() // 2


def test_scales_travel_in_the_state_dict_and_bad_ones_are_refused(cifar_data: Path) -> None:
    plain, scaled, _ = _calibrated(cifar_data)
    fresh = build_model("vgg_nagadomi", "winograd_relu", dropout=False)
    fresh.load_state_dict(scaled.state_dict())
    for (_, a), (_, b) in zip(scaled.winograd_modules(), fresh.winograd_modules(), strict=True):
        assert torch.equal(_scale(a), _scale(b))
    fresh.load_state_dict(plain.state_dict())  # a checkpoint without scales: none
    assert all(layer.position_scale is None for _, layer in fresh.winograd_modules())
    bad = scaled.state_dict()
    bad["conv2.position_scale"] = -bad["conv2.position_scale"]
    with pytest.raises(CheckpointError, match="position_scale: must be 16 finite positive factors"):
        load_model_state(fresh, bad, "bad.pt")
    with pytest.raises(CheckpointError, match="position_scale"):
        load_model_state(build_model("vgg_nagadomi", "spatial", dropout=False), scaled.state_dict(), "wrong.pt")
    with pytest.raises(ValueError, match="spatial layer"):
        WinogradConv2d(4, 4, "spatial").set_position_scale(torch.ones(POSITIONS))


def test_config_refuses_preconditioning_a_spatial_network_or_an_unknown_kind(tmp_path: Path) -> None:
    out = str(tmp_path)
    with pytest.raises(ConfigError, match="not for mode 'spatial'"):
        TrainConfig(network="vgg_nagadomi", mode="spatial", data="d", out=out, precondition="position_rms")
    with pytest.raises(ConfigError, match="precondition must be one of"):
        TrainConfig(network="vgg_nagadomi", mode="winograd_relu", data="d", out=out, precondition="adam")
