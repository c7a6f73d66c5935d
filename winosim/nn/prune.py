"""Magnitude pruning of the Winograd-eligible layers, with cumulative masks (paper.md section 3).

Each prunable layer is pruned over its whole weight tensor ((16, C, K) in the Winograd domain, (K, C, 3, 3)
for the spatial baseline) to keep exactly round(density * size) weights: the largest magnitudes of the
effective weight (Q = weight * position_scale in the Winograd domain, `WinogradConv2d.effective_weight`)
among the weights still unmasked (ties broken by position, so the result is deterministic). Masks only
shrink. After pruning, the pruned weights and their optimiser state (momentum) are zeroed, so with the
forward pass using weight * mask they stay exactly zero through any number of SGD steps (with or without
weight decay).
"""

from __future__ import annotations

import torch
from torch import Tensor

from winosim.errors import ConfigError
from winosim.nn.layers import WinogradConv2d
from winosim.nn.models import WinoNet


def magnitude_mask(weight: Tensor, mask: Tensor, density: float) -> Tensor:
    """New mask (subset of `mask`) keeping the round(density * size) largest |weight| among unmasked entries."""
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"pruning density must be in (0, 1], got {density}")
    keep = round(density * weight.numel())
    score = torch.where(mask, weight.detach().abs().float(), torch.full_like(weight, -1.0, dtype=torch.float32))
    order = torch.sort(score.flatten(), descending=True, stable=True).indices
    flat = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
    flat[order[: min(keep, int(mask.sum()))]] = True
    return flat.view_as(mask) & mask


@torch.no_grad()
def apply_mask(layer: WinogradConv2d, mask: Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Install `mask` in `layer`, zero the pruned weights and their optimiser state."""
    layer.weight_mask.copy_(mask)
    layer.weight.mul_(mask)
    if optimizer is not None:
        for value in optimizer.state.get(layer.weight, {}).values():
            if isinstance(value, Tensor) and value.shape == mask.shape:
                value.mul_(mask)


def prune_network(model: WinoNet, density: float, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Prune every Winograd-eligible layer of `model` to `density` (cumulative with the existing masks)."""
    for _, layer in model.winograd_modules():
        apply_mask(layer, magnitude_mask(layer.effective_weight(), layer.weight_mask, density), optimizer)


def layer_densities(model: WinoNet) -> dict[str, float]:
    """Non-zero fraction of each prunable layer's effective (masked) weight."""
    return {
        geom.name: float(torch.count_nonzero(layer.masked_weight()).item()) / layer.weight.numel()
        for geom, layer in model.winograd_modules()
    }


def network_density(model: WinoNet) -> float:
    """Non-zero fraction over all prunable layers together."""
    nonzero = total = 0
    for _, layer in model.winograd_modules():
        nonzero += int(torch.count_nonzero(layer.masked_weight()).item())
        total += layer.weight.numel()
    return nonzero / total if total else 1.0
