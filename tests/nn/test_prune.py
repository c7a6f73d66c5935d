"""Pruning: exact per-layer density, cumulative masks, and pruned weights that stay exactly zero."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
import torch

from winosim.nn.models import build_model
from winosim.nn.prune import layer_densities, magnitude_mask, network_density, prune_network


@pytest.mark.parametrize("mode", ["spatial", "native", "winograd_relu"])
def test_pruning_hits_the_target_density_of_every_layer_exactly(mode: str) -> None:
    torch.manual_seed(0)
    model = build_model("vgg_nagadomi", mode)
    for density in (0.7, 0.6, 0.35):
        prune_network(model, density)
        for (geom, layer), (name, measured) in zip(
            model.winograd_modules(), layer_densities(model).items(), strict=True
        ):
            assert name == geom.name
            assert int(layer.weight_mask.sum()) == round(density * layer.weight.numel())
            assert measured == round(density * layer.weight.numel()) / layer.weight.numel()
    assert network_density(model) == pytest.approx(0.35, abs=1e-4)


def test_masks_are_cumulative_and_keep_the_largest_magnitudes() -> None:
    torch.manual_seed(1)
    weight = torch.randn(16, 8, 4)
    first = magnitude_mask(weight, torch.ones_like(weight, dtype=torch.bool), 0.5)
    shuffled = weight.clone()
    shuffled[~first] = 100.0  # huge values that are already pruned must stay pruned
    second = magnitude_mask(shuffled, first, 0.25)
    assert bool((second & ~first).sum() == 0)
    assert int(second.sum()) == round(0.25 * weight.numel())
    kept = weight[second].abs()
    dropped = weight[first & ~second].abs()
    assert float(kept.min()) >= float(dropped.max())


@pytest.mark.parametrize("mode", ["native", "winograd_relu", "spatial"])
def test_pruned_weights_stay_zero_through_sgd_with_momentum_and_weight_decay(mode: str) -> None:
    torch.manual_seed(2)
    model = build_model("vgg_nagadomi", mode, dropout=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()  # momentum buffers now hold non-zero values everywhere
    prune_network(model, 0.4, optimizer)
    for _ in range(2):
        step()
    for _, layer in model.winograd_modules():
        assert torch.all(layer.weight[~layer.weight_mask] == 0)
        assert torch.count_nonzero(layer.weight[layer.weight_mask]) == int(layer.weight_mask.sum())
